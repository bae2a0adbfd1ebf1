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

// componentList is a list of covered components compiled for building
// signature bases: every identifier checked (RFC 9421 §2.1 and §2.2),
// serialized once, and resolved to where its value comes from. Nothing in
// it depends on a request, so a compiled list that listCache remembers
// builds the base of any later request that covers it.
type componentList struct {
	items []sfv.Item  // the covered components, as parsed; never modified
	ids   []byte      // each identifier serialized and followed by ": ", end to end
	comps []component // items[i], compiled
}

// component is one compiled covered component.
type component struct {
	idStart, idEnd int // its identifier and ": " are ids[idStart:idEnd]
	kind           componentKind
	name           string // the field name; for @query-param, the parameter's decoded name
	canon          string // the canonical field name, for r.Header
	key            string // the dictionary member of ;key, "" without one
	sf, bs         bool   // the ;sf and ;bs flags
}

type componentKind uint8

const (
	fieldComponent componentKind = iota // an HTTP field (§2.1)
	methodComponent
	schemeComponent
	authorityComponent
	targetURIComponent
	requestTargetComponent
	pathComponent
	queryComponent
	queryParamComponent
)

// derivedComponents are the derived components (RFC 9421 §2.2) a request
// can cover here.
var derivedComponents = map[string]componentKind{
	"@method":         methodComponent,
	"@scheme":         schemeComponent,
	"@authority":      authorityComponent,
	"@target-uri":     targetURIComponent,
	"@request-target": requestTargetComponent,
	"@path":           pathComponent,
	"@query":          queryComponent,
	"@query-param":    queryParamComponent,
}

// compile checks items and compiles them into l, reusing l's storage. A
// list that does not compile has no signature base (ErrMalformed).
func (l *componentList) compile(items []sfv.Item) error {
	l.items, l.ids, l.comps = items, l.ids[:0], l.comps[:0]
	for i := range items {
		start := len(l.ids)
		var err error
		if l.ids, err = sfv.AppendItem(l.ids, &items[i]); err != nil {
			return fmt.Errorf("%w: component identifier", ErrMalformed)
		}
		// The serialization is canonical: two identifiers are the same
		// (the same name and parameters, in the same order) when their
		// serializations are.
		id := l.ids[start:]
		for _, c := range l.comps {
			if bytes.Equal(l.ids[c.idStart:c.idEnd-2], id) {
				return fmt.Errorf("%w: component %s covered twice", ErrMalformed, id)
			}
		}
		c, err := compileComponent(&items[i])
		if err != nil {
			return err
		}
		l.ids = append(l.ids, ": "...)
		c.idStart, c.idEnd = start, len(l.ids)
		l.comps = append(l.comps, c)
	}
	return nil
}

// compileComponent compiles one component identifier.
func compileComponent(it *sfv.Item) (component, error) {
	if it.Value.Kind != sfv.String || it.Value.Str == "" {
		return component{}, fmt.Errorf("%w: component identifier is not a string", ErrMalformed)
	}
	name := it.Value.Str
	if name[0] == '@' {
		for i := range it.Params { // by index: a Param is large to copy
			if p := &it.Params[i]; !(name == "@query-param" && p.Key == "name") {
				return component{}, fmt.Errorf("%w: parameter %q on %s", ErrMalformed, p.Key, name)
			}
		}
		kind, ok := derivedComponents[name]
		if !ok {
			return component{}, fmt.Errorf("%w: unsupported derived component %q", ErrMalformed, name)
		}
		c := component{kind: kind}
		if kind == queryParamComponent {
			v, _ := it.Params.Get("name")
			if v.Kind != sfv.String {
				return component{}, fmt.Errorf("%w: @query-param without a name", ErrMalformed)
			}
			// The name in the identifier is percent-encoded (§2.2.8).
			decoded, err := url.QueryUnescape(v.Str)
			if err != nil {
				return component{}, fmt.Errorf("%w: @query-param name", ErrMalformed)
			}
			c.name = decoded
		}
		return c, nil
	}
	c := component{kind: fieldComponent, name: name, canon: commonFields[name]}
	if c.canon == "" {
		for i := 0; i < len(name); i++ {
			if 'A' <= name[i] && name[i] <= 'Z' {
				return component{}, fmt.Errorf("%w: field name %q is not lower case", ErrMalformed, name)
			}
		}
		c.canon = http.CanonicalHeaderKey(name)
	}
	for i := range it.Params {
		p := &it.Params[i]
		switch {
		case p.Key == "sf" && p.Value.Kind == sfv.Boolean:
			c.sf = p.Value.Bool
		case p.Key == "bs" && p.Value.Kind == sfv.Boolean:
			c.bs = p.Value.Bool
		case p.Key == "key" && p.Value.Kind == sfv.String:
			c.key = p.Value.Str
		default: // req, tr, name, or a wrong type: not supported on requests here
			return component{}, fmt.Errorf("%w: unsupported component parameter %q", ErrMalformed, p.Key)
		}
	}
	if c.bs && (c.sf || c.key != "") {
		return component{}, fmt.Errorf("%w: bs with sf or key", ErrMalformed)
	}
	return c, nil
}

// commonFields are the canonical forms of the field names most often
// covered: a list that is not remembered is compiled on every request,
// and http.CanonicalHeaderKey allocates the canonical form of a lower-case
// name each time.
var commonFields = map[string]string{
	"authorization":  "Authorization",
	"content-digest": "Content-Digest",
	"content-length": "Content-Length",
	"content-type":   "Content-Type",
	"date":           "Date",
	"host":           "Host",
}

// signatureBase builds the signature base (RFC 9421 §2.5) of r for the
// components of l and the signature's parameters, appending to dst. raw,
// when not empty, is the serialization of the inner list of l's items and
// params, as the parser found it (sfv.Member.Raw).
func signatureBase(dst []byte, r *http.Request, t target, l *componentList, params sfv.Params, raw string) ([]byte, error) {
	var q baseCache
	begin := len(dst)
	for i := range l.comps {
		c := &l.comps[i]
		dst = append(dst, l.ids[c.idStart:c.idEnd]...)
		var err error
		if dst, err = c.appendValue(dst, r, t, &q); err != nil {
			return nil, err
		}
		dst = append(dst, '\n')
	}
	// A value that holds CR or LF would add a line, so that one component
	// could pose as several. The lines so far hold one LF each, at their
	// ends (an identifier is a String, which holds neither): one search of
	// them all instead of two of each value.
	if lines := dst[begin:]; bytes.Count(lines, newline) != len(l.comps) || bytes.IndexByte(lines, '\r') >= 0 {
		return nil, lineBreakError(r, t, l)
	}
	dst = append(dst, `"@signature-params": `...)
	if raw != "" {
		return append(dst, raw...), nil
	}
	dst, err := sfv.AppendInnerList(dst, l.items, params)
	if err != nil {
		return nil, fmt.Errorf("%w: signature parameters", ErrMalformed)
	}
	return dst, nil
}

// compileBase compiles items and builds their signature base: for a list
// built from once, as a Signer's is.
func compileBase(dst []byte, r *http.Request, t target, items []sfv.Item, params sfv.Params, raw string) ([]byte, error) {
	var l componentList
	if err := l.compile(items); err != nil {
		return nil, err
	}
	return signatureBase(dst, r, t, &l, params, raw)
}

var newline = []byte{'\n'}

// appendValue appends the value of c (RFC 9421 §2.1 and §2.2) in r.
func (c *component) appendValue(dst []byte, r *http.Request, t target, q *baseCache) ([]byte, error) {
	switch c.kind {
	case methodComponent:
		return append(dst, r.Method...), nil
	case schemeComponent:
		return append(dst, t.scheme...), nil
	case authorityComponent:
		return append(dst, t.authority...), nil
	case targetURIComponent:
		dst = append(dst, t.scheme...)
		dst = append(dst, "://"...)
		dst = append(dst, t.authority...)
		return appendRequestTarget(dst, r), nil
	case requestTargetComponent:
		return appendRequestTarget(dst, r), nil
	case pathComponent:
		p := r.URL.EscapedPath()
		if p == "" {
			p = "/"
		}
		return append(dst, p...), nil
	case queryComponent:
		dst = append(dst, '?')
		return append(dst, r.URL.RawQuery...), nil
	case queryParamComponent:
		query, err := q.parseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("%w: query does not parse", ErrMalformed)
		}
		vals := query[c.name]
		if len(vals) != 1 {
			return nil, fmt.Errorf("%w: query parameter %q occurs %d times", ErrMalformed, c.name, len(vals))
		}
		return appendPercentEncoded(dst, vals[0]), nil
	}
	lines := r.Header[c.canon]
	if c.name == "host" && len(lines) == 0 && r.Host != "" {
		lines = []string{r.Host}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: covered field %q is absent", ErrMalformed, c.name)
	}
	switch {
	case c.bs:
		for i, l := range lines {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = append(dst, ':')
			dst = base64.StdEncoding.AppendEncode(dst, []byte(trimOWS(l)))
			dst = append(dst, ':')
		}
		return dst, nil
	case c.key != "":
		d, err := q.dictionary(c.name, lines)
		if err != nil {
			return nil, fmt.Errorf("%w: field %q is not a dictionary", ErrMalformed, c.name)
		}
		m := d.Get(c.key)
		if m == nil {
			return nil, fmt.Errorf("%w: dictionary %q has no member %q", ErrMalformed, c.name, c.key)
		}
		if dst, err = sfv.AppendMember(dst, *m); err != nil {
			return nil, fmt.Errorf("%w: dictionary member", ErrMalformed)
		}
		return dst, nil
	case c.sf:
		return appendReserialized(dst, c.name, lines)
	}
	for i, l := range lines {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, trimOWS(l)...)
	}
	return dst, nil
}

// lineBreakError is the error of a signature base in which a component
// value holds CR or LF, naming the first such component: the values are
// built again, one at a time, to find it.
func lineBreakError(r *http.Request, t target, l *componentList) error {
	var q baseCache
	var v []byte
	for i := range l.comps {
		c := &l.comps[i]
		var err error
		if v, err = c.appendValue(v[:0], r, t, &q); err == nil && (bytes.IndexByte(v, '\n') >= 0 || bytes.IndexByte(v, '\r') >= 0) {
			return fmt.Errorf("%w: component %s has a line break", ErrMalformed, l.ids[c.idStart:c.idEnd-2])
		}
	}
	return fmt.Errorf("%w: a component has a line break", ErrMalformed)
}
