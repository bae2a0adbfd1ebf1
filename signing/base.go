package signing

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/dunglas/httpsfv"
)

// target is how the verifier sees the request's URI: the scheme and
// authority clients signed, which a proxy in front may have changed.
type target struct {
	scheme    string
	authority string
}

// componentValue returns the value of one covered component (RFC 9421
// §2.1 and §2.2) of r.
func componentValue(r *http.Request, t target, c httpsfv.Item) (string, error) {
	name, ok := c.Value.(string)
	if !ok || name == "" {
		return "", fmt.Errorf("%w: component identifier is not a string", ErrMalformed)
	}
	params := c.Params
	if strings.HasPrefix(name, "@") {
		for _, p := range params.Names() {
			if !(name == "@query-param" && p == "name") {
				return "", fmt.Errorf("%w: parameter %q on %s", ErrMalformed, p, name)
			}
		}
		return derivedValue(r, t, name, params)
	}
	if name != strings.ToLower(name) {
		return "", fmt.Errorf("%w: field name %q is not lower case", ErrMalformed, name)
	}
	var sf, bs bool
	var key string
	for _, p := range params.Names() {
		v, _ := params.Get(p)
		switch p {
		case "sf":
			sf = v == true
		case "bs":
			bs = v == true
		case "key":
			s, ok := v.(string)
			if !ok {
				return "", fmt.Errorf("%w: key parameter is not a string", ErrMalformed)
			}
			key = s
		default: // req, tr, name: not supported on requests here
			return "", fmt.Errorf("%w: unsupported component parameter %q", ErrMalformed, p)
		}
	}
	lines := r.Header.Values(name)
	if name == "host" && len(lines) == 0 && r.Host != "" {
		lines = []string{r.Host}
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("%w: covered field %q is absent", ErrMalformed, name)
	}
	switch {
	case bs && (sf || key != ""):
		return "", fmt.Errorf("%w: bs with sf or key", ErrMalformed)
	case bs:
		enc := make([]string, len(lines))
		for i, l := range lines {
			enc[i] = ":" + base64.StdEncoding.EncodeToString([]byte(strings.Trim(l, " \t"))) + ":"
		}
		return strings.Join(enc, ", "), nil
	case key != "":
		d, err := httpsfv.UnmarshalDictionary(lines)
		if err != nil {
			return "", fmt.Errorf("%w: field %q is not a dictionary", ErrMalformed, name)
		}
		m, ok := d.Get(key)
		if !ok {
			return "", fmt.Errorf("%w: dictionary %q has no member %q", ErrMalformed, name, key)
		}
		return marshalMember(m)
	case sf:
		return reserialize(name, lines)
	}
	vals := make([]string, len(lines))
	for i, l := range lines {
		vals[i] = strings.Trim(l, " \t")
	}
	return strings.Join(vals, ", "), nil
}

// dictionaryFields are the structured fields of known dictionary type.
var dictionaryFields = map[string]bool{"content-digest": true, "repr-digest": true, "signature": true, "signature-input": true, "want-content-digest": true}

// reserialize returns the canonical serialization of a structured field.
func reserialize(name string, lines []string) (string, error) {
	var v httpsfv.StructuredFieldValue
	var err error
	if dictionaryFields[name] {
		v, err = httpsfv.UnmarshalDictionary(lines)
	} else if l, lerr := httpsfv.UnmarshalList(lines); lerr == nil {
		v = l
	} else if d, derr := httpsfv.UnmarshalDictionary(lines); derr == nil {
		v = d
	} else {
		v, err = httpsfv.UnmarshalItem(lines)
	}
	if err != nil {
		return "", fmt.Errorf("%w: field %q is not a structured field", ErrMalformed, name)
	}
	s, err := httpsfv.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("%w: field %q: %v", ErrMalformed, name, err)
	}
	return s, nil
}

func marshalMember(m httpsfv.Member) (string, error) {
	var s string
	var err error
	switch v := m.(type) {
	case httpsfv.Item:
		s, err = httpsfv.Marshal(v)
	case httpsfv.InnerList:
		s, err = httpsfv.Marshal(httpsfv.List{v})
	}
	if err != nil || s == "" {
		return "", fmt.Errorf("%w: dictionary member", ErrMalformed)
	}
	return s, nil
}

// derivedValue returns a derived component (RFC 9421 §2.2).
func derivedValue(r *http.Request, t target, name string, params *httpsfv.Params) (string, error) {
	switch name {
	case "@method":
		return r.Method, nil
	case "@scheme":
		return t.scheme, nil
	case "@authority":
		return t.authority, nil
	case "@target-uri":
		return t.scheme + "://" + t.authority + requestTarget(r), nil
	case "@request-target":
		return requestTarget(r), nil
	case "@path":
		p := r.URL.EscapedPath()
		if p == "" {
			p = "/"
		}
		return p, nil
	case "@query":
		return "?" + r.URL.RawQuery, nil
	case "@query-param":
		v, _ := params.Get("name")
		qn, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: @query-param without a name", ErrMalformed)
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return "", fmt.Errorf("%w: query does not parse", ErrMalformed)
		}
		// The name in the identifier is percent-encoded (§2.2.8).
		decoded, err := url.QueryUnescape(qn)
		if err != nil {
			return "", fmt.Errorf("%w: @query-param name", ErrMalformed)
		}
		vals := q[decoded]
		if len(vals) != 1 {
			return "", fmt.Errorf("%w: query parameter %q occurs %d times", ErrMalformed, qn, len(vals))
		}
		return percentEncode(vals[0]), nil
	}
	return "", fmt.Errorf("%w: unsupported derived component %q", ErrMalformed, name)
}

func requestTarget(r *http.Request) string {
	p := r.URL.EscapedPath()
	if p == "" {
		p = "/"
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		p += "?" + r.URL.RawQuery
	}
	return p
}

// percentEncode encodes every byte outside the unreserved set of the
// application/x-www-form-urlencoded percent-encode set as %XX.
func percentEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '*' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// signatureBase builds the signature base (RFC 9421 §2.5) of r for the
// covered components and parameters of one signature.
func signatureBase(r *http.Request, t target, sig httpsfv.InnerList) ([]byte, error) {
	var b strings.Builder
	seen := make(map[string]bool, len(sig.Items))
	for _, it := range sig.Items {
		id, err := httpsfv.Marshal(httpsfv.List{it})
		if err != nil {
			return nil, fmt.Errorf("%w: component identifier", ErrMalformed)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: component %s covered twice", ErrMalformed, id)
		}
		seen[id] = true
		val, err := componentValue(r, t, it)
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(val, "\n\r") {
			return nil, fmt.Errorf("%w: component %s has a line break", ErrMalformed, id)
		}
		b.WriteString(id)
		b.WriteString(": ")
		b.WriteString(val)
		b.WriteByte('\n')
	}
	params, err := httpsfv.Marshal(httpsfv.List{sig})
	if err != nil {
		return nil, fmt.Errorf("%w: signature parameters", ErrMalformed)
	}
	b.WriteString(`"@signature-params": `)
	b.WriteString(params)
	return []byte(b.String()), nil
}
