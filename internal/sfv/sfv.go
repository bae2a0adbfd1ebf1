// Package sfv parses and serializes HTTP Structured Field Values (RFC 9651:
// RFC 8941 with the Date and Display String types), the syntax of
// Signature-Input, Signature, Accept-Signature, Content-Digest and the
// RateLimit fields.
//
// The parser is one function per parsing algorithm of RFC 9651 §4.2, in
// the RFC's order and with its step order, and is tested against an
// independent implementation (github.com/dunglas/httpsfv) by differential
// fuzzing. It exists, rather than that library being used on the request
// path, because signature verification with httpsfv costs about 5 times
// the SHA-256 and HMAC it cannot skip, against a budget of 2 (its values
// are maps and interfaces, about 50 allocations a request); here a parsed
// value is a few flat slices, in a reusable [Scratch], whose strings point
// into the input.
package sfv

import (
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the type of a bare item.
type Kind uint8

// Bare item types.
const (
	Integer Kind = iota + 1
	Decimal
	String
	Token
	ByteSequence
	Boolean
	Date
	DisplayString
)

// BareItem is one bare item. Int holds Integer and Date, Dec holds Decimal,
// Str holds String, Token and DisplayString, Bytes holds ByteSequence and
// Bool holds Boolean.
type BareItem struct {
	Kind  Kind
	Bool  bool
	Int   int64
	Dec   float64
	Str   string
	Bytes []byte
}

// Param is one parameter.
type Param struct {
	Key   string
	Value BareItem
}

// Params are the parameters of an item or inner list, in order.
type Params []Param

// Get returns the value of key.
func (ps Params) Get(key string) (BareItem, bool) {
	for i := range ps {
		if ps[i].Key == key {
			return ps[i].Value, true
		}
	}
	return BareItem{}, false
}

// Item is a bare item with parameters.
type Item struct {
	Value  BareItem
	Params Params
}

// Member is a list or dictionary member: an item, or an inner list of
// items with the list's own parameters.
type Member struct {
	IsInnerList bool
	Item        Item   // when !IsInnerList
	Items       []Item // when IsInnerList
	Params      Params // the inner list's parameters, when IsInnerList
	// Raw, set by the parser on the members of lists and dictionaries, is
	// the member's text when that text is its canonical serialization
	// (what AppendMember writes), so that a caller who needs the
	// serialization can use it as it is; "" when the text is not
	// canonical (extra spaces, ;a=?1, a repeated parameter, a number with
	// leading zeros, a decimal, a byte sequence or a display string). It
	// is never set on a value built by hand.
	Raw string
}

// List is a structured-field list.
type List []Member

// DictMember is one dictionary member.
type DictMember struct {
	Key string
	Member
}

// Dictionary is a structured-field dictionary, in order.
type Dictionary struct {
	Members []DictMember
	// Repeated reports that a key appeared more than once; as RFC 9651
	// §4.2.2 asks, the later value replaced the earlier one.
	Repeated bool
}

// Get returns the member of key, nil when there is none. It points into
// d.
func (d *Dictionary) Get(key string) *Member {
	for i := range d.Members {
		if d.Members[i].Key == key {
			return &d.Members[i].Member
		}
	}
	return nil
}

// ErrSyntax is the error of text that is not a valid structured field,
// and of a value that cannot be serialized.
var ErrSyntax = errors.New("sfv: invalid structured field")

// Scratch is reusable storage for parsed values: the items, parameters,
// dictionary members and decoded byte sequences of every value parsed
// with it are appended to its arenas, so that once they are large enough
// a parse allocates nothing. A value parsed with a Scratch is valid until
// the Scratch's next Reset. A Scratch is not safe for concurrent use. The
// zero value is ready to use.
type Scratch struct {
	items   []Item
	params  []Param
	members []DictMember
	bytes   []byte
}

// Reset forgets every value parsed with s, keeping its storage.
func (s *Scratch) Reset() {
	clear(s.items) // drop references into old input
	clear(s.params)
	clear(s.members)
	s.items, s.params, s.members, s.bytes = s.items[:0], s.params[:0], s.members[:0], s.bytes[:0]
}

// ParseList parses field lines as a List.
func ParseList(lines []string) (List, error) {
	p := newParser(lines, new(Scratch))
	return parseAll(&p, p.list)
}

// ParseDictionary parses field lines as a Dictionary.
func ParseDictionary(lines []string) (Dictionary, error) {
	return new(Scratch).ParseDictionary(lines)
}

// ParseDictionary parses field lines as a Dictionary, in s's storage.
func (s *Scratch) ParseDictionary(lines []string) (Dictionary, error) {
	p := newParser(lines, s)
	return parseAll(&p, p.dictionary)
}

// ParseItem parses field lines as an Item.
func ParseItem(lines []string) (Item, error) {
	p := newParser(lines, new(Scratch))
	return parseAll(&p, func() (it Item, err error) { return it, p.item(&it) })
}

// ParseParams parses the parameters (RFC 9651 §4.2.3.2) that text starts
// with, in s's storage: the text that follows an inner list or an item,
// for a caller that has the list or item already (see signing's cache of
// parsed inner lists). It returns them, the length of text they take,
// and whether that text is their canonical serialization; text that
// starts with anything but ';' has none.
func (s *Scratch) ParseParams(text string) (ps Params, n int, canonical bool, err error) {
	p := parser{s: text, a: s, canonical: true}
	if ps, err = p.parameters(); err != nil {
		return nil, 0, false, err
	}
	return ps, p.off, p.canonical, nil
}

// parser holds the input of one parse: the text still to parse is
// s[off:].
type parser struct {
	s   string
	off int
	a   *Scratch
	// canonical is false once the text of the member being parsed is
	// not its canonical serialization (see Member.Raw).
	canonical bool
}

// newParser is RFC 9651 §4.2 steps 1 and 2: the field lines combined
// with ", " (RFC 9110 §5.3), and leading SP discarded. Trailing SP is
// discarded too, which is what steps 6 and 7 allow after the value.
func newParser(lines []string, a *Scratch) parser {
	s := strings.Join(lines, ", ")
	return parser{s: strings.Trim(s, " "), a: a}
}

// parseAll is RFC 9651 §4.2 steps 3 to 7: parse the value as its type,
// then fail unless the input is empty.
func parseAll[T any](p *parser, parse func() (T, error)) (T, error) {
	v, err := parse()
	if err == nil && !p.empty() {
		err = ErrSyntax
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

func (p *parser) empty() bool { return p.off >= len(p.s) }

// peek returns the first character of the input, 0 when it is empty.
func (p *parser) peek() byte {
	if p.empty() {
		return 0
	}
	return p.s[p.off]
}

// discardSP discards leading SP and returns how many there were.
func (p *parser) discardSP() int {
	begin := p.off
	for p.peek() == ' ' {
		p.off++
	}
	return p.off - begin
}

// discardOWS discards leading SP and HTAB.
func (p *parser) discardOWS() {
	for c := p.peek(); c == ' ' || c == '\t'; c = p.peek() {
		p.off++
	}
}

// The steps below that parse an item or a bare item fill in a value the
// caller holds (a zero one, in a Scratch arena or on its stack) instead of
// returning it: these values are large, and the request path parses many.

// list is RFC 9651 §4.2.1, Parsing a List.
func (p *parser) list() (List, error) {
	var members List
	for !p.empty() {
		members = append(members, Member{})
		if err := p.itemOrInnerList(&members[len(members)-1]); err != nil {
			return nil, err
		}
		p.discardOWS()
		if p.empty() {
			return members, nil
		}
		if p.s[p.off] != ',' {
			return nil, ErrSyntax
		}
		p.off++
		p.discardOWS()
		if p.empty() {
			return nil, ErrSyntax // a trailing comma
		}
	}
	return members, nil
}

// itemOrInnerList is RFC 9651 §4.2.1.1, Parsing an Item or Inner List,
// into the zero Member m. It sets m.Raw when the member's text is
// canonical.
func (p *parser) itemOrInnerList(m *Member) error {
	begin := p.off
	p.canonical = true
	var err error
	if p.peek() == '(' {
		m.IsInnerList = true
		m.Items, m.Params, err = p.innerList()
	} else {
		err = p.item(&m.Item)
	}
	if err == nil && p.canonical {
		m.Raw = p.s[begin:p.off]
	}
	return err
}

// innerList is RFC 9651 §4.2.1.2, Parsing an Inner List. Its items are
// contiguous in the Scratch: no item holds an inner list.
func (p *parser) innerList() ([]Item, Params, error) {
	p.off++ // '('
	a := p.a
	first := len(a.items)
	for !p.empty() {
		// Canonical text has one SP between items, none after '(' or
		// before ')'.
		if n := p.discardSP(); n != 0 && (len(a.items) == first || n != 1 || p.peek() == ')') {
			p.canonical = false
		}
		if p.peek() == ')' {
			p.off++
			items := a.items[first:len(a.items):len(a.items)]
			params, err := p.parameters()
			return items, params, err
		}
		a.items = append(a.items, Item{})
		if err := p.item(&a.items[len(a.items)-1]); err != nil {
			return nil, nil, err
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return nil, nil, ErrSyntax
		}
	}
	return nil, nil, ErrSyntax // no ')'
}

// dictionary is RFC 9651 §4.2.2, Parsing a Dictionary. A repeated key
// keeps its first place and takes the later value, and sets Repeated.
func (p *parser) dictionary() (Dictionary, error) {
	a := p.a
	first := len(a.members)
	var d Dictionary
	var seen keyIndex
	for !p.empty() {
		key, err := p.key()
		if err != nil {
			return Dictionary{}, err
		}
		// The member is parsed in a new element at the end; a repeated
		// key then moves it to the earlier member's place.
		a.members = append(a.members, DictMember{Key: key})
		m := &a.members[len(a.members)-1].Member
		if p.peek() == '=' {
			p.off++
			err = p.itemOrInnerList(m)
		} else {
			m.Item.Value.Kind, m.Item.Value.Bool = Boolean, true
			m.Item.Params, err = p.parameters()
		}
		if err != nil {
			return Dictionary{}, err
		}
		members := a.members[first : len(a.members)-1]
		if i := seen.index(key, len(members), func(i int) string { return members[i].Key }); i >= 0 {
			members[i].Member = *m
			a.members = a.members[:len(a.members)-1]
			d.Repeated = true
		}
		p.discardOWS()
		if p.empty() {
			break
		}
		if p.s[p.off] != ',' {
			return Dictionary{}, ErrSyntax
		}
		p.off++
		p.discardOWS()
		if p.empty() {
			return Dictionary{}, ErrSyntax // a trailing comma
		}
	}
	if len(a.members) > first {
		d.Members = a.members[first:len(a.members):len(a.members)]
	}
	return d, nil
}

// item is RFC 9651 §4.2.3, Parsing an Item, into the zero Item it.
func (p *parser) item(it *Item) error {
	if err := p.bareItem(&it.Value); err != nil {
		return err
	}
	var err error
	it.Params, err = p.parameters()
	return err
}

// bareItem is RFC 9651 §4.2.3.1, Parsing a Bare Item, into the zero
// BareItem v.
func (p *parser) bareItem(v *BareItem) error {
	var err error
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		v.Kind, v.Int, v.Dec, err = p.integerOrDecimal()
	case c == '"':
		v.Kind = String
		v.Str, err = p.string()
	case c == '*' || isAlpha(c):
		v.Kind, v.Str = Token, p.token()
	case c == ':':
		p.canonical = false // padding and trailing bits are not checked
		v.Kind = ByteSequence
		v.Bytes, err = p.byteSequence()
	case c == '?':
		v.Kind = Boolean
		v.Bool, err = p.boolean()
	case c == '@':
		v.Kind = Date
		v.Int, err = p.date()
	case c == '%':
		p.canonical = false // escapes are not checked
		v.Kind = DisplayString
		v.Str, err = p.displayString()
	default:
		err = ErrSyntax
	}
	return err
}

// parameters is RFC 9651 §4.2.3.2, Parsing Parameters. A repeated key
// keeps its first place and takes the later value.
func (p *parser) parameters() (Params, error) {
	a := p.a
	first := len(a.params)
	var seen keyIndex
	for p.peek() == ';' {
		p.off++
		if p.discardSP() != 0 {
			p.canonical = false
		}
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		// The value goes into a new Param, or over that of an earlier one
		// of the same key, which keeps its place.
		params := a.params[first:]
		var v *BareItem
		if i := seen.index(key, len(params), func(i int) string { return params[i].Key }); i >= 0 {
			p.canonical = false
			v = &params[i].Value
			*v = BareItem{}
		} else {
			a.params = append(a.params, Param{Key: key})
			v = &a.params[len(a.params)-1].Value
		}
		if p.peek() != '=' {
			v.Kind, v.Bool = Boolean, true
			continue
		}
		p.off++
		if err := p.bareItem(v); err != nil {
			return nil, err
		}
		if v.Kind == Boolean && v.Bool {
			p.canonical = false // serialized as the bare key
		}
	}
	if len(a.params) == first {
		return nil, nil
	}
	return a.params[first:len(a.params):len(a.params)], nil
}

// keyIndex finds an earlier occurrence of a key in a dictionary or a
// parameter list. Up to linearKeys keys (every real field) it compares
// them one by one; past that it keeps a map, so that a field of many
// distinct keys parses in linear time, not quadratic.
type keyIndex struct {
	m map[string]int
}

// linearKeys is the number of keys up to which keyIndex compares keys one
// by one.
const linearKeys = 16

// index returns the position of key among the n keys that keyAt returns,
// or -1 when it is not one of them; the caller then adds it at n.
func (x *keyIndex) index(key string, n int, keyAt func(int) string) int {
	if x.m == nil && n <= linearKeys {
		for i := range n {
			if keyAt(i) == key {
				return i
			}
		}
		return -1
	}
	if x.m == nil {
		x.m = make(map[string]int, 2*n)
		for i := range n {
			x.m[keyAt(i)] = i
		}
	}
	if i, ok := x.m[key]; ok {
		return i
	}
	x.m[key] = n
	return -1
}

// key is RFC 9651 §4.2.3.3, Parsing a Key.
func (p *parser) key() (string, error) {
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return "", ErrSyntax
	}
	s, i := p.s, p.off+1
	for i < len(s) && isKeyChar(s[i]) {
		i++
	}
	k := s[p.off:i]
	p.off = i
	return k, nil
}

// integerOrDecimal is RFC 9651 §4.2.4, Parsing an Integer or Decimal: an
// Integer (its value in n) or a Decimal (in f).
func (p *parser) integerOrDecimal() (kind Kind, n int64, f float64, err error) {
	s, i := p.s, p.off
	neg := s[i] == '-'
	if neg {
		i++
	}
	if i == len(s) || !isDigit(s[i]) {
		return 0, 0, 0, ErrSyntax
	}
	begin, dot := i, -1
	for ; i < len(s); i++ {
		if c := s[i]; c == '.' && dot < 0 {
			if i-begin > 12 {
				return 0, 0, 0, ErrSyntax
			}
			dot = i
		} else if isDigit(c) {
			n = n*10 + int64(c-'0') // the integer's value; past 18 digits it wraps, and is then refused
		} else {
			break
		}
	}
	p.off = i
	num := s[begin:i]
	if dot < 0 {
		if len(num) > 15 {
			return 0, 0, 0, ErrSyntax
		}
		if len(num) > 1 && num[0] == '0' || neg && n == 0 {
			p.canonical = false // leading zeros, or -0
		}
		if neg {
			n = -n
		}
		return Integer, n, 0, nil
	}
	if frac := i - dot - 1; frac < 1 || frac > 3 {
		return 0, 0, 0, ErrSyntax
	}
	p.canonical = false                // the serialization of a decimal is not checked
	f, _ = strconv.ParseFloat(num, 64) // at most 16 digits: no error
	if neg {
		f = -f
	}
	return Decimal, 0, f, nil
}

// string is RFC 9651 §4.2.5, Parsing a String. A String without escapes
// is the input's text, not a copy.
func (p *parser) string() (string, error) {
	s := p.s
	begin := p.off + 1 // past '"'
	i := begin
	for i < len(s) && isStringChar(s[i]) {
		i++
	}
	if i < len(s) && s[i] == '"' {
		p.off = i + 1
		return s[begin:i], nil
	}
	// An escape, or an error: the rest character by character.
	b := []byte(s[begin:i])
	for i < len(s) {
		c := s[i]
		i++
		switch {
		case c == '\\':
			if i == len(s) || s[i] != '"' && s[i] != '\\' {
				return "", ErrSyntax
			}
			b = append(b, s[i])
			i++
		case c == '"':
			p.off = i
			return string(b), nil
		case !isStringChar(c):
			return "", ErrSyntax
		default:
			b = append(b, c)
		}
	}
	return "", ErrSyntax // no closing '"'
}

// token is RFC 9651 §4.2.6, Parsing a Token; the caller has checked its
// first character.
func (p *parser) token() string {
	s, i := p.s, p.off+1
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	t := s[p.off:i]
	p.off = i
	return t
}

// byteSequence is RFC 9651 §4.2.7, Parsing a Byte Sequence. Padding may
// be absent, as the RFC asks parsers to allow; wrong padding is an error.
// The bytes are decoded into the Scratch.
func (p *parser) byteSequence() ([]byte, error) {
	p.off++ // ':'
	end := strings.IndexByte(p.s[p.off:], ':')
	if end < 0 {
		return nil, ErrSyntax
	}
	enc := p.s[p.off : p.off+end]
	p.off += end + 1
	// The decoder refuses every character outside base64 and '=', but
	// for CR and LF, which it skips.
	if strings.IndexByte(enc, '\r') >= 0 || strings.IndexByte(enc, '\n') >= 0 {
		return nil, ErrSyntax
	}
	dec := base64.StdEncoding
	if len(enc)%4 != 0 {
		dec = base64.RawStdEncoding
	}
	a := p.a
	first := len(a.bytes)
	var err error
	if a.bytes, err = dec.AppendDecode(a.bytes, []byte(enc)); err != nil {
		a.bytes = a.bytes[:first]
		return nil, ErrSyntax
	}
	return a.bytes[first:len(a.bytes):len(a.bytes)], nil
}

// boolean is RFC 9651 §4.2.8, Parsing a Boolean.
func (p *parser) boolean() (bool, error) {
	p.off++ // '?'
	switch p.peek() {
	case '1':
		p.off++
		return true, nil
	case '0':
		p.off++
		return false, nil
	}
	return false, ErrSyntax
}

// date is RFC 9651 §4.2.9, Parsing a Date.
func (p *parser) date() (int64, error) {
	p.off++ // '@'
	if p.empty() {
		return 0, ErrSyntax
	}
	kind, n, _, err := p.integerOrDecimal()
	if err != nil || kind != Integer {
		return 0, ErrSyntax
	}
	return n, nil
}

// displayString is RFC 9651 §4.2.10, Parsing a Display String.
func (p *parser) displayString() (string, error) {
	if !strings.HasPrefix(p.s[p.off:], `%"`) {
		return "", ErrSyntax
	}
	p.off += 2
	var b []byte
	for !p.empty() {
		c := p.s[p.off]
		p.off++
		switch {
		case c <= 0x1f || c >= 0x7f:
			return "", ErrSyntax
		case c == '%':
			if p.off+2 > len(p.s) {
				return "", ErrSyntax
			}
			h, ok1 := lowerHex(p.s[p.off])
			l, ok2 := lowerHex(p.s[p.off+1])
			if !ok1 || !ok2 {
				return "", ErrSyntax
			}
			b = append(b, h<<4|l)
			p.off += 2
		case c == '"':
			if !utf8.Valid(b) {
				return "", ErrSyntax
			}
			return string(b), nil
		default:
			b = append(b, c)
		}
	}
	return "", ErrSyntax
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool   { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }

// isKeyChar reports the characters of a key after its first.
func isKeyChar(c byte) bool { return charClass[c]&keyChar != 0 }

// isTokenChar reports the characters of a Token after its first: tchar
// (RFC 9110 §5.6.2), ':' and '/'.
func isTokenChar(c byte) bool { return charClass[c]&tokenChar != 0 }

// isStringChar reports the characters a String holds unescaped: visible
// ASCII and SP, but for '"' and '\'.
func isStringChar(c byte) bool { return charClass[c]&stringChar != 0 }

const (
	keyChar = 1 << iota
	tokenChar
	stringChar
)

// charClass holds the classes of each byte, for the scanning loops.
var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if isLCAlpha(b) || isDigit(b) || strings.IndexByte("_-.*", b) >= 0 {
			t[c] |= keyChar
		}
		if isAlpha(b) || isDigit(b) || strings.IndexByte("!#$%&'*+-.^_`|~:/", b) >= 0 {
			t[c] |= tokenChar
		}
		if 0x20 <= b && b <= 0x7e && b != '"' && b != '\\' {
			t[c] |= stringChar
		}
	}
	return t
}()

// Serialization (RFC 9651 §4.1). Append* functions append the
// serialization to dst and return ErrSyntax for a value that cannot be
// serialized.

// AppendList appends a List.
func AppendList(dst []byte, l List) ([]byte, error) {
	var err error
	for i, m := range l {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		if dst, err = AppendMember(dst, m); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// AppendDictionary appends a Dictionary.
func AppendDictionary(dst []byte, d Dictionary) ([]byte, error) {
	var err error
	for i, m := range d.Members {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		if dst, err = appendKey(dst, m.Key); err != nil {
			return nil, err
		}
		if !m.IsInnerList && m.Item.Value.Kind == Boolean && m.Item.Value.Bool {
			if dst, err = AppendParams(dst, m.Item.Params); err != nil {
				return nil, err
			}
			continue
		}
		dst = append(dst, '=')
		if dst, err = AppendMember(dst, m.Member); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// AppendMember appends an item or an inner list.
func AppendMember(dst []byte, m Member) ([]byte, error) {
	if m.IsInnerList {
		return AppendInnerList(dst, m.Items, m.Params)
	}
	return AppendItem(dst, &m.Item)
}

// AppendInnerList appends an inner list with its parameters.
func AppendInnerList(dst []byte, items []Item, params Params) ([]byte, error) {
	var err error
	dst = append(dst, '(')
	for i := range items {
		if i > 0 {
			dst = append(dst, ' ')
		}
		if dst, err = AppendItem(dst, &items[i]); err != nil {
			return nil, err
		}
	}
	dst = append(dst, ')')
	return AppendParams(dst, params)
}

// AppendItem appends an item with its parameters.
func AppendItem(dst []byte, it *Item) ([]byte, error) {
	dst, err := appendBareItem(dst, &it.Value)
	if err != nil {
		return nil, err
	}
	return AppendParams(dst, it.Params)
}

// AppendParams appends parameters.
func AppendParams(dst []byte, ps Params) ([]byte, error) {
	var err error
	for i := range ps {
		p := &ps[i]
		dst = append(dst, ';')
		if dst, err = appendKey(dst, p.Key); err != nil {
			return nil, err
		}
		if p.Value.Kind == Boolean && p.Value.Bool {
			continue
		}
		dst = append(dst, '=')
		if dst, err = appendBareItem(dst, &p.Value); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

func appendKey(dst []byte, k string) ([]byte, error) {
	if k == "" || !isLCAlpha(k[0]) && k[0] != '*' {
		return nil, ErrSyntax
	}
	for i := 1; i < len(k); i++ {
		if !isKeyChar(k[i]) {
			return nil, ErrSyntax
		}
	}
	return append(dst, k...), nil
}

// AppendBareItem appends a bare item.
func AppendBareItem(dst []byte, v BareItem) ([]byte, error) { return appendBareItem(dst, &v) }

func appendBareItem(dst []byte, v *BareItem) ([]byte, error) {
	switch v.Kind {
	case Integer:
		if v.Int > 999_999_999_999_999 || v.Int < -999_999_999_999_999 {
			return nil, ErrSyntax
		}
		return strconv.AppendInt(dst, v.Int, 10), nil
	case Decimal:
		return appendDecimal(dst, v.Dec)
	case String:
		dst = append(dst, '"')
		for i := 0; i < len(v.Str); i++ {
			switch c := v.Str[i]; {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case isStringChar(c):
				dst = append(dst, c)
			default:
				return nil, ErrSyntax
			}
		}
		return append(dst, '"'), nil
	case Token:
		if v.Str == "" || !isAlpha(v.Str[0]) && v.Str[0] != '*' {
			return nil, ErrSyntax
		}
		for i := 0; i < len(v.Str); i++ {
			if !isTokenChar(v.Str[i]) {
				return nil, ErrSyntax
			}
		}
		return append(dst, v.Str...), nil
	case ByteSequence:
		dst = append(dst, ':')
		dst = base64.StdEncoding.AppendEncode(dst, v.Bytes)
		return append(dst, ':'), nil
	case Boolean:
		if v.Bool {
			return append(dst, "?1"...), nil
		}
		return append(dst, "?0"...), nil
	case Date:
		if v.Int > 999_999_999_999_999 || v.Int < -999_999_999_999_999 {
			return nil, ErrSyntax
		}
		return strconv.AppendInt(append(dst, '@'), v.Int, 10), nil
	case DisplayString:
		if !utf8.ValidString(v.Str) {
			return nil, ErrSyntax
		}
		const hexDigits = "0123456789abcdef"
		dst = append(dst, '%', '"')
		for i := 0; i < len(v.Str); i++ {
			c := v.Str[i]
			if c == '%' || c == '"' || c <= 0x1f || c >= 0x7f {
				dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
			} else {
				dst = append(dst, c)
			}
		}
		return append(dst, '"'), nil
	}
	return nil, ErrSyntax
}

// appendDecimal is RFC 9651 §4.1.5: round to three fractional digits
// (half to even), at least one fractional digit, at most twelve integer
// digits.
func appendDecimal(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, ErrSyntax
	}
	r := math.RoundToEven(f*1000) / 1000
	if math.Abs(r) >= 1e12 {
		return nil, ErrSyntax
	}
	s := strconv.FormatFloat(r, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return append(dst, s...), nil
}
