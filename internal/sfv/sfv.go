// Package sfv parses and serializes HTTP Structured Field Values (RFC 8941,
// with the Date and Display String types of RFC 9651), the syntax of
// Signature-Input, Signature, Accept-Signature, Content-Digest and the
// RateLimit fields.
//
// It follows the parsing and serialization algorithms of RFC 9651 §4
// step by step, and is tested against an independent implementation
// (github.com/dunglas/httpsfv) by differential fuzzing. It exists, rather
// than that library being used on the request path, because the request
// path of a signature check cannot afford its allocations: a parsed value
// here is a few flat slices, and strings point into the input.
package sfv

import (
	"encoding/base64"
	"errors"
	"math"
	"math/bits"
	"slices"
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
	Kind Kind
	Bool bool // beside Kind, in the same word
	// verbatim marks a String the parser read without escapes: its
	// serialization is Str between quotes, with no check to repeat.
	verbatim bool
	Int      int64
	Dec      float64
	Str      string
	Bytes    []byte
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
	for i := range ps { // by index: a Param is large to copy
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
// d: a Member is large to copy.
func (d *Dictionary) Get(key string) *Member {
	for i := range d.Members {
		if d.Members[i].Key == key {
			return &d.Members[i].Member
		}
	}
	return nil
}

// Errors.
var (
	ErrSyntax = errors.New("sfv: invalid structured field")
)

// Scratch is reusable storage for parsed values: the items, parameters,
// dictionary members and decoded byte sequences of every value parsed
// with it are appended to its arenas, so that a parse after [Scratch.Reset]
// allocates nothing once the arenas are large enough. A value parsed with a
// Scratch is valid until the Scratch's next Reset. A Scratch is not safe
// for concurrent use. The zero value is ready to use.
type Scratch struct {
	items   []Item
	params  []Param
	members []DictMember
	bytes   []byte
}

// The arenas keep one invariant: every element past an arena's length is
// zero. Reset clears what was used, growth allocates zeroed memory, and
// nothing shortens an arena without clearing what it drops. Taking the
// next element then needs no zeroing, and the parser writes a value into
// it field by field: copying a whole struct into the heap would go
// through the garbage collector's bulk write barrier while it marks.

// extend returns arena a one element longer (the zero value, by the
// invariant); a full arena grows by at least atLeast elements.
func extend[T any](a []T, atLeast int) []T {
	n := len(a)
	if n == cap(a) {
		a = slices.Grow(a, max(atLeast, n))
	}
	return a[:n+1]
}

// nextItem, nextParam and nextMember return a new zero element at the
// end of their arena.
func (s *Scratch) nextItem() *Item {
	s.items = extend(s.items, 8)
	return &s.items[len(s.items)-1]
}

func (s *Scratch) nextParam() *Param {
	s.params = extend(s.params, 4)
	return &s.params[len(s.params)-1]
}

func (s *Scratch) nextMember() *DictMember {
	s.members = extend(s.members, 2)
	return &s.members[len(s.members)-1]
}

// Reset forgets every value parsed with s, keeping its storage.
func (s *Scratch) Reset() {
	clear(s.items) // drop references into old input
	clear(s.params)
	clear(s.members)
	s.items, s.params, s.members, s.bytes = s.items[:0], s.params[:0], s.members[:0], s.bytes[:0]
}

type parser struct {
	s   string
	off int
	a   *Scratch
	// nc is set when the member being parsed has text that is not its
	// canonical serialization (see Member.Raw).
	nc bool
}

func (p *parser) eof() bool { return p.off >= len(p.s) }
func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.off]
}

func (p *parser) skipOWS() {
	for !p.eof() && (p.s[p.off] == ' ' || p.s[p.off] == '\t') {
		p.off++
	}
}

func join(lines []string) string {
	if len(lines) == 1 {
		return lines[0]
	}
	return strings.Join(lines, ", ")
}

// start trims leading and trailing SP (RFC 9651 §4.2 steps 2).
func start(lines []string, a *Scratch) parser {
	s := join(lines)
	i, j := 0, len(s)
	for i < j && s[i] == ' ' {
		i++
	}
	for j > i && s[j-1] == ' ' {
		j--
	}
	return parser{s: s[i:j], a: a}
}

// ParseList parses field lines as a List.
func ParseList(lines []string) (List, error) {
	ps := start(lines, new(Scratch))
	p := &ps
	var l List
	for !p.eof() {
		l = append(l, Member{})
		if err := p.memberInto(&l[len(l)-1]); err != nil {
			return nil, err
		}
		p.skipOWS()
		if p.eof() {
			return l, nil
		}
		if p.s[p.off] != ',' {
			return nil, ErrSyntax
		}
		p.off++
		p.skipOWS()
		if p.eof() {
			return nil, ErrSyntax
		}
	}
	return l, nil
}

// ParseDictionary parses field lines as a Dictionary.
func ParseDictionary(lines []string) (Dictionary, error) {
	return new(Scratch).ParseDictionary(lines)
}

// ParseDictionary parses field lines as a Dictionary, in s's storage.
func (s *Scratch) ParseDictionary(lines []string) (Dictionary, error) {
	if len(lines) == 1 {
		if d, ok := s.byteSequenceMember(lines[0]); ok {
			return d, nil
		}
	}
	ps := start(lines, s)
	p := &ps
	var d Dictionary
	var seen keyIndex
	first := len(s.members)
	for !p.eof() {
		key, err := p.key()
		if err != nil {
			return Dictionary{}, err
		}
		// Parse in place at the end; a repeated key then moves the value
		// to the earlier member's position.
		dm := s.nextMember()
		dm.Key = key
		last := len(s.members) - 1
		m := &dm.Member
		if p.peek() == '=' {
			p.off++
			if err := p.memberInto(m); err != nil {
				return Dictionary{}, err
			}
		} else {
			m.Item.Value.Kind, m.Item.Value.Bool = Boolean, true
			if m.Item.Params, err = p.params(); err != nil {
				return Dictionary{}, err
			}
		}
		i := -1
		if seen.m == nil && last-first < linearKeys {
			for j := first; j < last; j++ {
				if s.members[j].Key == key {
					i = j - first
					break
				}
			}
		} else {
			i = seen.index(key, last-first, func(j int) string { return s.members[first+j].Key })
		}
		if i >= 0 {
			s.members[first+i].Member = *m
			s.members[last] = DictMember{}
			s.members = s.members[:last]
			d.Repeated = true
		}
		p.skipOWS()
		if p.eof() {
			d.Members = s.members[first:len(s.members):len(s.members)]
			return d, nil
		}
		if p.s[p.off] != ',' {
			return Dictionary{}, ErrSyntax
		}
		p.off++
		p.skipOWS()
		if p.eof() {
			return Dictionary{}, ErrSyntax
		}
	}
	return d, nil
}

// ParseParams parses the parameters (RFC 9651 §4.2.3.2) that text starts
// with, in s's storage: the text that follows an inner list or an item,
// for a caller that has the list or item already (see signing's cache of
// parsed inner lists). It returns them, the length of text they take,
// and whether that text is their canonical serialization; text that
// starts with anything but ';' has none.
func (s *Scratch) ParseParams(text string) (ps Params, n int, canonical bool, err error) {
	p := parser{s: text, a: s}
	if ps, err = p.params(); err != nil {
		return nil, 0, false, err
	}
	return ps, p.off, !p.nc, nil
}

// byteSequenceMember parses line when it is a dictionary of one member
// whose value is a byte sequence without parameters, such as a Signature
// or Content-Digest field (`sig1=:…:`), with the parser's own steps but
// none of the general case's bookkeeping. It reports false for any other
// line, which the general case then parses (or refuses) instead.
func (s *Scratch) byteSequenceMember(line string) (Dictionary, bool) {
	p := parser{s: line, a: s}
	key, err := p.key()
	if err != nil || p.peek() != '=' {
		return Dictionary{}, false
	}
	p.off++
	if p.peek() != ':' {
		return Dictionary{}, false
	}
	mark := len(s.bytes)
	b, err := p.byteSequence()
	if err != nil || !p.eof() {
		s.bytes = s.bytes[:mark]
		return Dictionary{}, false
	}
	first := len(s.members)
	m := s.nextMember()
	m.Key, m.Item.Value.Kind, m.Item.Value.Bytes = key, ByteSequence, b
	return Dictionary{Members: s.members[first:len(s.members):len(s.members)]}, true
}

// ParseItem parses field lines as an Item.
func ParseItem(lines []string) (Item, error) {
	ps := start(lines, new(Scratch))
	p := &ps
	var it Item
	if err := p.itemInto(&it); err != nil {
		return Item{}, err
	}
	if !p.eof() {
		return Item{}, ErrSyntax
	}
	return it, nil
}

// The parse functions below fill values in place, through pointers into
// the Scratch's arenas: a value is written once, not copied up the call
// chain. A pointer into one arena stays valid while they run, because
// each only appends to the arenas of the values nested inside it.

// memberInto parses an item or an inner list into the zero Member m,
// and sets m.Raw when its text is canonical.
func (p *parser) memberInto(m *Member) error {
	begin := p.off
	p.nc = false
	var err error
	if p.peek() == '(' {
		m.IsInnerList = true
		err = p.innerListInto(m)
	} else {
		err = p.itemInto(&m.Item)
	}
	if err == nil && !p.nc {
		m.Raw = p.s[begin:p.off]
	}
	return err
}

func (p *parser) innerListInto(m *Member) error {
	// Scanned with locals, as number is, and with a path of its own for
	// the usual item, a String without escapes (a component name): the
	// general item parser, through p.off, takes the rest.
	a := p.a
	first := len(a.items)
	s, i := p.s, p.off+1 // past '('
	for i < len(s) {
		// Canonical: no space after '(' or before ')', one between items.
		j := i
		for j < len(s) && s[j] == ' ' {
			j++
		}
		if n := j - i; n != 0 && (len(a.items) == first || n != 1 || j < len(s) && s[j] == ')') {
			p.nc = true
		}
		if i = j; i == len(s) {
			break
		}
		if s[i] == ')' {
			p.off = i + 1
			m.Items = a.items[first:len(a.items):len(a.items)]
			var err error
			m.Params, err = p.params()
			return err
		}
		if k := i + 1; s[i] == '"' {
			k += plainRun(s[k:])
			if k < len(s) && s[k] == '"' {
				it := a.nextItem()
				it.Value.Kind, it.Value.verbatim, it.Value.Str = String, true, s[i+1:k]
				i = k + 1
				if i < len(s) && s[i] == ';' {
					p.off = i
					var err error
					if it.Params, err = p.params(); err != nil {
						return err
					}
					i = p.off
				}
				if i == len(s) || s[i] != ' ' && s[i] != ')' {
					return ErrSyntax
				}
				continue
			}
		}
		p.off = i
		if err := p.itemInto(a.nextItem()); err != nil {
			return err
		}
		if i = p.off; i == len(s) || s[i] != ' ' && s[i] != ')' {
			return ErrSyntax
		}
	}
	return ErrSyntax
}

// itemInto parses an item into the zero Item it.
func (p *parser) itemInto(it *Item) error {
	if err := p.bareItemInto(&it.Value); err != nil {
		return err
	}
	var err error
	it.Params, err = p.params()
	return err
}

func (p *parser) params() (Params, error) {
	// Scanned with locals, with a path of its own for the usual value, a
	// String without escapes or an Integer: the general bare item parser,
	// through p.off, takes the rest.
	s, i := p.s, p.off
	if i == len(s) || s[i] != ';' {
		return nil, nil
	}
	a := p.a
	first := len(a.params)
	var seen keyIndex
	var heard uint64 // bits of the keys so far (see below)
	for i < len(s) && s[i] == ';' {
		i++
		j := i
		for j < len(s) && s[j] == ' ' {
			j++
		}
		if j != i {
			p.nc = true
		}
		// The key (see key).
		if i = j; i == len(s) || !isLCAlpha(s[i]) && s[i] != '*' {
			return nil, ErrSyntax
		}
		for j++; j < len(s) && keyChars[s[j]]; j++ {
		}
		key := s[i:j]
		i = j
		// The value goes into a new Param, or replaces that of an
		// earlier one of the same key, which keeps its place.
		n, at := len(a.params)-first, -1
		// A key's length and first byte pick one bit of heard: a key
		// whose bit is clear is new, and the search is skipped.
		bit := uint64(1) << ((uint(len(key))*31 + uint(key[0])) & 63)
		switch {
		case seen.m == nil && n < linearKeys && heard&bit == 0:
			heard |= bit
		case seen.m == nil && n < linearKeys:
			for j := first; j < len(a.params); j++ {
				if a.params[j].Key == key {
					at = j - first
					break
				}
			}
		default:
			at = seen.index(key, n, func(j int) string { return a.params[first+j].Key })
		}
		var v *BareItem
		if at < 0 {
			prm := a.nextParam()
			prm.Key, v = key, &prm.Value
		} else {
			p.nc = true
			v = &a.params[first+at].Value
			*v = BareItem{}
		}
		switch {
		case i == len(s) || s[i] != '=':
			v.Kind, v.Bool = Boolean, true
		case i+1 < len(s) && s[i+1] == '"':
			k := i + 2
			if k += plainRun(s[k:]); k < len(s) && s[k] == '"' {
				v.Kind, v.verbatim, v.Str = String, true, s[i+2:k]
				i = k + 1
				break
			}
			fallthrough
		default:
			p.off = i + 1
			if err := p.bareItemInto(v); err != nil {
				return nil, err
			}
			if v.Kind == Boolean && v.Bool {
				p.nc = true // serialized as the bare key
			}
			i = p.off
		}
	}
	p.off = i
	return a.params[first:len(a.params):len(a.params)], nil
}

// keyIndex finds an earlier occurrence of a key in a long dictionary or
// parameter list. Short lists (under linearKeys, all real ones) are
// scanned in place by the parser; past that a map takes over, so that a
// field of many distinct keys parses in linear time, not quadratic.
type keyIndex struct {
	m map[string]int
}

// linearKeys is the list length up to which the parser scans for a
// repeated key instead of using a keyIndex.
const linearKeys = 16

// index returns the position of key among keys 0..n-1 (keyAt returns
// them), or -1, recording key at position n when it is new.
func (x *keyIndex) index(key string, n int, keyAt func(int) string) int {
	if x.m == nil {
		x.m = make(map[string]int, 2*n)
		for i := 0; i < n; i++ {
			x.m[keyAt(i)] = i
		}
	}
	if i, ok := x.m[key]; ok {
		return i
	}
	x.m[key] = n
	return -1
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool   { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }

func (p *parser) key() (string, error) {
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return "", ErrSyntax
	}
	s, i := p.s, p.off+1
	for i < len(s) && keyChars[s[i]] {
		i++
	}
	k := s[p.off:i]
	p.off = i
	return k, nil
}

// keyChars marks the characters of a key after its first.
var keyChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'], t['-'], t['.'], t['*'] = true, true, true, true
	return t
}()

// bareItemInto parses a bare item into the zero BareItem v.
func (p *parser) bareItemInto(v *BareItem) error {
	var err error
	c := p.peek()
	switch {
	case c == '-' || isDigit(c):
		v.Kind, v.Int, v.Dec, err = p.number()
	case c == '"':
		start := p.off
		v.Kind = String
		v.Str, err = p.str()
		v.verbatim = err == nil && p.off-start == len(v.Str)+2
	case c == '*' || isAlpha(c):
		v.Kind, v.Str = Token, p.token()
	case c == ':':
		v.Kind = ByteSequence
		v.Bytes, err = p.byteSequence()
		p.nc = true // padding and trailing bits: not worth checking
	case c == '?':
		v.Kind = Boolean
		v.Bool, err = p.boolean()
	case c == '@':
		p.off++
		kind, n, _, nerr := p.number()
		if nerr != nil || kind != Integer {
			return ErrSyntax
		}
		v.Kind, v.Int = Date, n
	case c == '%':
		v.Kind = DisplayString
		v.Str, err = p.displayString()
		p.nc = true
	default:
		err = ErrSyntax
	}
	return err
}

// number is RFC 9651 §4.2.4: an Integer (its value in n) or a Decimal
// (in f).
func (p *parser) number() (kind Kind, n int64, f float64, err error) {
	// Scanned with locals: the loops keep their index in a register.
	s, i := p.s, p.off
	neg := i < len(s) && s[i] == '-'
	if neg {
		i++
	}
	begin := i
	// The value is read as the digits are scanned: past 15 digits it
	// wraps, but the number is then refused below.
	for i < len(s) && isDigit(s[i]) {
		n = n*10 + int64(s[i]-'0')
		i++
	}
	whole := i - begin
	dot := i < len(s) && s[i] == '.'
	switch {
	case whole == 0, !dot && whole > 15, dot && whole > 12:
		return 0, 0, 0, ErrSyntax
	}
	if !dot {
		p.off = i
		num := s[begin:i]
		if len(num) > 1 && num[0] == '0' || neg && num == "0" {
			p.nc = true // leading zeros, or -0
		}
		if neg {
			n = -n
		}
		return Integer, n, 0, nil
	}
	i++ // '.'
	fracBegin := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if frac := i - fracBegin; frac < 1 || frac > 3 {
		return 0, 0, 0, ErrSyntax
	}
	p.off = i
	p.nc = true // a decimal
	f, err = strconv.ParseFloat(s[begin:i], 64)
	if err != nil {
		return 0, 0, 0, ErrSyntax
	}
	if neg {
		f = -f
	}
	return Decimal, 0, f, nil
}

// str is RFC 9651 §4.2.5. Without escapes the result points into the
// input.
func (p *parser) str() (string, error) {
	s, i := p.s, p.off+1 // past '"'
	begin := i
	i += plainRun(s[i:])
	if i < len(s) {
		switch s[i] {
		case '"':
			p.off = i + 1
			return s[begin:i], nil
		case '\\':
			return p.strEscaped(begin, i)
		}
	}
	return "", ErrSyntax
}

// plainRun returns the length of the run of strPlain characters that s
// starts with. It tests eight bytes at a time while it can (a String
// holds a key ID, a nonce, a component name: tens of bytes), with the
// exact tests for "has a byte below n" and "has a zero byte" on a word
// (a borrow or carry across bytes only starts at a byte that matches, so
// the lowest byte flagged is the first that stops the run), and finishes
// byte by byte.
func plainRun(s string) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		quote, backslash := x^('"'*ones), x^('\\'*ones)
		below := (x - 0x20*ones) &^ x                  // a byte below 0x20
		above := (x + ones) | x                        // a byte above 0x7e
		isQuote := (quote - ones) &^ quote             // a '"'
		isBackslash := (backslash - ones) &^ backslash // a '\\'
		if m := (below | above | isQuote | isBackslash) & high; m != 0 {
			return i + bits.TrailingZeros64(m)/8 // the lowest match is exact
		}
	}
	for i < len(s) && strPlain[s[i]] {
		i++
	}
	return i
}

// strPlain marks the characters a String holds as they are: visible ASCII
// and space, but for the quote and the backslash.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// strEscaped continues str from the first backslash, at i.
func (p *parser) strEscaped(begin, i int) (string, error) {
	s := p.s
	var b strings.Builder
	b.WriteString(s[begin:i])
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i == len(s) || s[i] != '"' && s[i] != '\\' {
				return "", ErrSyntax
			}
			b.WriteByte(s[i])
		case c == '"':
			p.off = i + 1
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", ErrSyntax
		default:
			b.WriteByte(c)
		}
		i++
	}
	return "", ErrSyntax
}

func isTChar(c byte) bool { return tchar[c] }

// tchar marks tchar (RFC 9110 §5.6.2).
var tchar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = isAlpha(b) || isDigit(b) || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
	}
	return t
}()

// tokenChars marks the characters of a Token after its first.
var tokenChars = func() (t [256]bool) {
	t = tchar
	t[':'], t['/'] = true, true
	return t
}()

// token is RFC 9651 §4.2.6.
func (p *parser) token() string {
	s, i := p.s, p.off+1
	for i < len(s) && tokenChars[s[i]] {
		i++
	}
	t := s[p.off:i]
	p.off = i
	return t
}

// byteSequence is RFC 9651 §4.2.7. Padding may be absent, as the RFC
// asks parsers to allow; wrong padding is an error.
func (p *parser) byteSequence() ([]byte, error) {
	p.off++ // ':'
	// The content runs to the next ':'. The decoder refuses any character
	// in it outside the alphabet and padding, but for CR and LF, which it
	// skips: those are refused here.
	if end := strings.IndexByte(p.s[p.off:], ':'); end >= 0 {
		if enc := p.s[p.off : p.off+end]; strings.IndexByte(enc, '\n') < 0 && strings.IndexByte(enc, '\r') < 0 {
			p.off += end + 1
			dec := base64.StdEncoding
			if len(enc)%4 != 0 {
				dec = base64.RawStdEncoding
			}
			a := p.a
			first, n := len(a.bytes), dec.DecodedLen(len(enc))
			a.bytes = append(a.bytes, make([]byte, n)...)[:first]
			m, err := dec.Decode(a.bytes[first:first+n], []byte(enc))
			if err != nil {
				a.bytes = a.bytes[:first]
				return nil, ErrSyntax
			}
			a.bytes = a.bytes[:first+m]
			return a.bytes[first : first+m : first+m], nil
		}
	}
	return nil, ErrSyntax
}

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

// displayString is RFC 9651 §4.2.10.
func (p *parser) displayString() (string, error) {
	if !strings.HasPrefix(p.s[p.off:], `%"`) {
		return "", ErrSyntax
	}
	p.off += 2
	var b []byte
	for !p.eof() {
		c := p.s[p.off]
		switch {
		case c <= 0x1f || c >= 0x7f:
			return "", ErrSyntax
		case c == '%':
			if p.off+2 >= len(p.s) {
				return "", ErrSyntax
			}
			h, ok1 := lowerHex(p.s[p.off+1])
			l, ok2 := lowerHex(p.s[p.off+2])
			if !ok1 || !ok2 {
				return "", ErrSyntax
			}
			b = append(b, h<<4|l)
			p.off += 3
		case c == '"':
			p.off++
			if !utf8.Valid(b) {
				return "", ErrSyntax
			}
			return string(b), nil
		default:
			b = append(b, c)
			p.off++
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

// AppendItem appends an item with its parameters. It takes a pointer, as
// the other append functions do inside: an Item is large, and the request
// path serializes many.
func AppendItem(dst []byte, it *Item) ([]byte, error) {
	if it.Value.Kind == String && it.Value.verbatim && len(it.Params) == 0 {
		// A String the parser read without escapes, such as a component
		// identifier: its text as it came.
		dst = append(dst, '"')
		dst = append(dst, it.Value.Str...)
		return append(dst, '"'), nil
	}
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
		if !keyChars[k[i]] {
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
		if v.verbatim {
			dst = append(dst, v.Str...)
			return append(dst, '"'), nil
		}
		for s := v.Str; ; {
			i := 0
			for i < len(s) && strPlain[s[i]] {
				i++
			}
			dst = append(dst, s[:i]...)
			if i == len(s) {
				return append(dst, '"'), nil
			}
			if c := s[i]; c != '"' && c != '\\' {
				return nil, ErrSyntax
			}
			dst = append(dst, '\\', s[i])
			s = s[i+1:]
		}
	case Token:
		if v.Str == "" || !isAlpha(v.Str[0]) && v.Str[0] != '*' {
			return nil, ErrSyntax
		}
		for i := 0; i < len(v.Str); i++ {
			if c := v.Str[i]; !isTChar(c) && c != ':' && c != '/' {
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
