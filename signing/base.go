package signing

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/apiguard/apiguard/internal/sfv"
)

// target is how the verifier sees the request's URI: the scheme and
// authority clients signed, which a proxy in front may have changed.
type target struct {
	scheme    string
	authority string
}

// normalizeAuthority returns the @authority value (RFC 9421 §2.2.3) of
// host under scheme: lower case, and without the scheme's default port
// (RFC 9110 §4.2.3), which a client normalizes away when it signs.
func normalizeAuthority(scheme, host string) string {
	host = lowerASCII(host)
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return host[:len(host)-4]
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return host[:len(host)-3]
	}
	return host
}

// parseDictionary parses a structured-field dictionary and refuses one
// that repeats a key: RFC 8941 keeps the last value of a repeated key,
// which would let a second Signature-Input member silently replace the
// first, so for signatures a repeated label is an attack.
func parseDictionary(sc *sfv.Scratch, lines []string) (sfv.Dictionary, error) {
	d, err := sc.ParseDictionary(lines)
	if err != nil {
		return d, err
	}
	if d.Repeated {
		return d, fmt.Errorf("repeated label")
	}
	return d, nil
}

// appendComponentValue appends the value of one covered component (RFC
// 9421 §2.1 and §2.2) of r.
func appendComponentValue(dst []byte, r *http.Request, t target, c *sfv.Item, q *baseCache) ([]byte, error) {
	if c.Value.Kind != sfv.String || c.Value.Str == "" {
		return nil, fmt.Errorf("%w: component identifier is not a string", ErrMalformed)
	}
	name := c.Value.Str
	if name[0] == '@' {
		for i := range c.Params { // by index: a Param is large to copy
			if p := &c.Params[i]; !(name == "@query-param" && p.Key == "name") {
				return nil, fmt.Errorf("%w: parameter %q on %s", ErrMalformed, p.Key, name)
			}
		}
		return appendDerived(dst, r, t, name, c.Params, q)
	}
	canon := knownFieldName(name)
	if canon == "" {
		for i := 0; i < len(name); i++ {
			if 'A' <= name[i] && name[i] <= 'Z' {
				return nil, fmt.Errorf("%w: field name %q is not lower case", ErrMalformed, name)
			}
		}
		canon = http.CanonicalHeaderKey(name)
	}
	var sf, bs bool
	var key string
	for i := range c.Params {
		p := &c.Params[i]
		switch {
		case p.Key == "sf" && p.Value.Kind == sfv.Boolean:
			sf = p.Value.Bool
		case p.Key == "bs" && p.Value.Kind == sfv.Boolean:
			bs = p.Value.Bool
		case p.Key == "key" && p.Value.Kind == sfv.String:
			key = p.Value.Str
		default: // req, tr, name, or a wrong type: not supported on requests here
			return nil, fmt.Errorf("%w: unsupported component parameter %q", ErrMalformed, p.Key)
		}
	}
	lines := r.Header[canon]
	if name == "host" && len(lines) == 0 && r.Host != "" {
		lines = []string{r.Host}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: covered field %q is absent", ErrMalformed, name)
	}
	switch {
	case bs && (sf || key != ""):
		return nil, fmt.Errorf("%w: bs with sf or key", ErrMalformed)
	case bs:
		for i, l := range lines {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = append(dst, ':')
			dst = base64.StdEncoding.AppendEncode(dst, []byte(trimOWS(l)))
			dst = append(dst, ':')
		}
		return dst, nil
	case key != "":
		d, err := q.dictionary(name, lines)
		if err != nil {
			return nil, fmt.Errorf("%w: field %q is not a dictionary", ErrMalformed, name)
		}
		m := d.Get(key)
		if m == nil {
			return nil, fmt.Errorf("%w: dictionary %q has no member %q", ErrMalformed, name, key)
		}
		if dst, err = sfv.AppendMember(dst, *m); err != nil {
			return nil, fmt.Errorf("%w: dictionary member", ErrMalformed)
		}
		return dst, nil
	case sf:
		return appendReserialized(dst, name, lines)
	}
	for i, l := range lines {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, trimOWS(l)...)
	}
	return dst, nil
}

// trimOWS trims leading and trailing spaces and tabs (RFC 9421 §2.1), as
// strings.Trim(s, " \t") does without building a character set per call.
func trimOWS(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	return s[i:j]
}

// knownFieldName returns the canonical form of the lower-case field
// names most often covered, "" for any other name (a switch, so that the
// request path spends neither a map lookup, nor a canonicalisation, nor a
// check for upper case on them).
func knownFieldName(name string) string {
	switch name {
	case "content-digest":
		return "Content-Digest"
	case "authorization":
		return "Authorization"
	case "content-type":
		return "Content-Type"
	case "content-length":
		return "Content-Length"
	case "date":
		return "Date"
	case "host":
		return "Host"
	case "x-device-id":
		return "X-Device-Id"
	}
	return ""
}

// dictionaryFields are the structured fields of known dictionary type.
var dictionaryFields = map[string]bool{"content-digest": true, "repr-digest": true, "signature": true, "signature-input": true, "want-content-digest": true}

// appendReserialized appends the canonical serialization of a structured
// field: a known dictionary as one, otherwise a list, dictionary or item,
// whichever parses first.
func appendReserialized(dst []byte, name string, lines []string) ([]byte, error) {
	out, err := func() ([]byte, error) {
		if dictionaryFields[name] {
			d, err := sfv.ParseDictionary(lines)
			if err != nil {
				return nil, err
			}
			return sfv.AppendDictionary(dst, d)
		}
		if l, err := sfv.ParseList(lines); err == nil {
			return sfv.AppendList(dst, l)
		}
		if d, err := sfv.ParseDictionary(lines); err == nil {
			return sfv.AppendDictionary(dst, d)
		}
		it, err := sfv.ParseItem(lines)
		if err != nil {
			return nil, err
		}
		return sfv.AppendItem(dst, &it)
	}()
	if err != nil {
		return nil, fmt.Errorf("%w: field %q is not a structured field", ErrMalformed, name)
	}
	return out, nil
}

// appendDerived appends a derived component (RFC 9421 §2.2).
func appendDerived(dst []byte, r *http.Request, t target, name string, params sfv.Params, q *baseCache) ([]byte, error) {
	switch name {
	case "@method":
		return append(dst, r.Method...), nil
	case "@scheme":
		return append(dst, t.scheme...), nil
	case "@authority":
		return append(dst, t.authority...), nil
	case "@target-uri":
		dst = append(dst, t.scheme...)
		dst = append(dst, "://"...)
		dst = append(dst, t.authority...)
		return appendRequestTarget(dst, r), nil
	case "@request-target":
		return appendRequestTarget(dst, r), nil
	case "@path":
		p := r.URL.EscapedPath()
		if p == "" {
			p = "/"
		}
		return append(dst, p...), nil
	case "@query":
		dst = append(dst, '?')
		return append(dst, r.URL.RawQuery...), nil
	case "@query-param":
		v, _ := params.Get("name")
		if v.Kind != sfv.String {
			return nil, fmt.Errorf("%w: @query-param without a name", ErrMalformed)
		}
		query, err := q.parseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("%w: query does not parse", ErrMalformed)
		}
		// The name in the identifier is percent-encoded (§2.2.8).
		decoded, err := url.QueryUnescape(v.Str)
		if err != nil {
			return nil, fmt.Errorf("%w: @query-param name", ErrMalformed)
		}
		vals := query[decoded]
		if len(vals) != 1 {
			return nil, fmt.Errorf("%w: query parameter %q occurs %d times", ErrMalformed, v.Str, len(vals))
		}
		return appendPercentEncoded(dst, vals[0]), nil
	}
	return nil, fmt.Errorf("%w: unsupported derived component %q", ErrMalformed, name)
}

// baseCache holds what the components of one signature base parse from
// the request, so that each is parsed once however many components use
// it: the query (for @query-param) and dictionary fields (for ;key).
type baseCache struct {
	query     url.Values
	queryErr  error
	queryDone bool
	dicts     []parsedDict
}

type parsedDict struct {
	name string
	d    sfv.Dictionary
	err  error
}

func (q *baseCache) parseQuery(raw string) (url.Values, error) {
	if !q.queryDone {
		q.query, q.queryErr = url.ParseQuery(raw)
		q.queryDone = true
	}
	return q.query, q.queryErr
}

// dictionary returns field name's lines parsed as a dictionary.
func (q *baseCache) dictionary(name string, lines []string) (sfv.Dictionary, error) {
	for _, p := range q.dicts {
		if p.name == name {
			return p.d, p.err
		}
	}
	d, err := sfv.ParseDictionary(lines)
	q.dicts = append(q.dicts, parsedDict{name: name, d: d, err: err})
	return d, err
}

func appendRequestTarget(dst []byte, r *http.Request) []byte {
	p := r.URL.EscapedPath()
	if p == "" {
		p = "/"
	}
	dst = append(dst, p...)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		dst = append(dst, '?')
		dst = append(dst, r.URL.RawQuery...)
	}
	return dst
}

// appendPercentEncoded encodes every byte outside the unreserved set of
// the application/x-www-form-urlencoded percent-encode set as %XX.
func appendPercentEncoded(dst []byte, s string) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '*' || c == '-' || c == '.' || c == '_' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return dst
}

// signatureBase builds the signature base (RFC 9421 §2.5) of r for the
// covered components and parameters of one signature, appending to dst.
// raw, when not empty, is the serialization of the inner list of items
// and params, as the parser found it (sfv.Member.Raw).
func signatureBase(dst []byte, r *http.Request, t target, items []sfv.Item, params sfv.Params, raw string) ([]byte, error) {
	var err error
	var q baseCache
	begin := len(dst)
	for i := range items {
		it := &items[i]
		mark := len(dst)
		if dst, err = sfv.AppendItem(dst, it); err != nil {
			return nil, fmt.Errorf("%w: component identifier", ErrMalformed)
		}
		for j := 0; j < i; j++ {
			if items[j].Value.Str == it.Value.Str && sameIdentifier(&items[j], it) {
				return nil, fmt.Errorf("%w: component %s covered twice", ErrMalformed, dst[mark:])
			}
		}
		dst = append(dst, ": "...)
		if dst, err = appendComponentValue(dst, r, t, it, &q); err != nil {
			return nil, err
		}
		dst = append(dst, '\n')
	}
	return finishBase(dst, begin, r, t, items, params, raw)
}

// finishBase checks the component lines of a signature base, dst[begin:],
// and appends its last line, @signature-params: raw when not empty, the
// serialization of items and params otherwise.
func finishBase(dst []byte, begin int, r *http.Request, t target, items []sfv.Item, params sfv.Params, raw string) ([]byte, error) {
	// A value that holds CR or LF would add a line, so that one component
	// could pose as several. The lines so far hold one LF each, at their
	// ends (an identifier is a String, which holds neither): one search of
	// them all, with the vectorised Count and IndexByte, instead of two
	// of each value.
	if lines := dst[begin:]; bytes.Count(lines, newline) != len(items) || bytes.IndexByte(lines, '\r') >= 0 {
		return nil, lineBreakError(r, t, items)
	}
	dst = append(dst, `"@signature-params": `...)
	if raw != "" {
		return append(dst, raw...), nil
	}
	dst, err := sfv.AppendInnerList(dst, items, params)
	if err != nil {
		return nil, fmt.Errorf("%w: signature parameters", ErrMalformed)
	}
	return dst, nil
}

var newline = []byte{'\n'}

// lineBreakError is the error of a signature base in which a component
// value holds CR or LF, naming the first such component: the values are
// built again, one at a time, to find it.
func lineBreakError(r *http.Request, t target, items []sfv.Item) error {
	var q baseCache
	var v []byte
	for i := range items {
		var err error
		if v, err = appendComponentValue(v[:0], r, t, &items[i], &q); err == nil && hasLineBreak(v) {
			id, _ := sfv.AppendItem(nil, &items[i])
			return fmt.Errorf("%w: component %s has a line break", ErrMalformed, id)
		}
	}
	return fmt.Errorf("%w: a component has a line break", ErrMalformed)
}

// hasLineBreak reports whether v holds CR or LF.
func hasLineBreak(v []byte) bool {
	return bytes.IndexByte(v, '\n') >= 0 || bytes.IndexByte(v, '\r') >= 0
}

// sameIdentifier reports whether two component identifiers are equal:
// the same name and the same parameters in the same order.
func sameIdentifier(a, b *sfv.Item) bool {
	if a.Value.Str != b.Value.Str || len(a.Params) != len(b.Params) {
		return false
	}
	for i := range a.Params {
		if a.Params[i].Key != b.Params[i].Key || a.Params[i].Value.Str != b.Params[i].Value.Str ||
			a.Params[i].Value.Kind != b.Params[i].Value.Kind || a.Params[i].Value.Bool != b.Params[i].Value.Bool {
			return false
		}
	}
	return true
}

// component is a covered component compiled for building signature
// bases: its line's start, and how to find its value. A list is
// compiled once, when listCache remembers it, after a signature base was
// built from it: its identifiers are then known valid and distinct.
type component struct {
	id    string        // the serialized identifier and ": "
	kind  componentKind // how the value is found
	canon string        // the canonical field name, for fieldComponent
}

type componentKind uint8

const (
	otherComponent     componentKind = iota // any other: appendComponentValue
	methodComponent                         // @method
	targetURIComponent                      // @target-uri
	authorityComponent                      // @authority
	fieldComponent                          // a field without parameters (not host)
)

// compileComponents compiles items, whose identifiers are valid and
// distinct (a signature base was built from them).
func compileComponents(items []sfv.Item) []component {
	out := make([]component, len(items))
	for i := range items {
		it := &items[i]
		id, err := sfv.AppendItem(nil, it)
		if err != nil {
			return nil
		}
		c := component{id: string(append(id, ": "...))}
		name := it.Value.Str
		switch {
		case len(it.Params) != 0:
		case name == "@method":
			c.kind = methodComponent
		case name == "@target-uri":
			c.kind = targetURIComponent
		case name == "@authority":
			c.kind = authorityComponent
		case name != "" && name[0] != '@' && name != "host" && strings.ToLower(name) == name:
			c.kind, c.canon = fieldComponent, http.CanonicalHeaderKey(name)
		}
		out[i] = c
	}
	return out
}

// signatureBaseCompiled is signatureBase for items compiled as comps: the
// same bytes, with the identifiers' checks and serialization done once.
func signatureBaseCompiled(dst []byte, r *http.Request, t target, items []sfv.Item, comps []component, params sfv.Params, raw string) ([]byte, error) {
	var err error
	var q baseCache
	begin := len(dst)
	for i := range comps {
		c := &comps[i]
		dst = append(dst, c.id...)
		switch c.kind {
		case methodComponent:
			dst = append(dst, r.Method...)
		case targetURIComponent:
			dst = append(dst, t.scheme...)
			dst = append(dst, "://"...)
			dst = append(dst, t.authority...)
			dst = appendRequestTarget(dst, r)
		case authorityComponent:
			dst = append(dst, t.authority...)
		case fieldComponent:
			lines := r.Header[c.canon]
			if len(lines) == 0 {
				return nil, fmt.Errorf("%w: covered field %q is absent", ErrMalformed, items[i].Value.Str)
			}
			for j, l := range lines {
				if j > 0 {
					dst = append(dst, ", "...)
				}
				dst = append(dst, trimOWS(l)...)
			}
		default:
			if dst, err = appendComponentValue(dst, r, t, &items[i], &q); err != nil {
				return nil, err
			}
		}
		dst = append(dst, '\n')
	}
	return finishBase(dst, begin, r, t, items, params, raw)
}
