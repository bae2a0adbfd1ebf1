package signing

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/internal/sfv"
	"github.com/stretchr/testify/require"
)

// referenceBase is the signature base of RFC 9421 §2.5, written plainly
// and slowly from the RFC, for FuzzSignatureBase to hold signatureBase
// against: it shares no code with the builder but sfv, which parses and
// serializes structured fields (and is itself fuzzed against httpsfv).
// It supports what the verifier supports (no req, tr or name on fields,
// no @status) and fails where the verifier refuses.
func referenceBase(r *http.Request, t target, items []sfv.Item, params sfv.Params) (string, error) {
	var out strings.Builder
	var seen []string
	for i := range items {
		// "If the component identifier has already been added to the
		// signature base, produce an error."
		id, err := sfv.AppendItem(nil, &items[i])
		if err != nil {
			return "", err
		}
		for _, s := range seen {
			if s == string(id) {
				return "", errors.New("component covered twice")
			}
		}
		seen = append(seen, string(id))
		value, err := referenceValue(r, t, &items[i])
		if err != nil {
			return "", err
		}
		// A value holding a line break would pose as further lines.
		if strings.ContainsAny(value, "\r\n") {
			return "", errors.New("line break")
		}
		out.WriteString(string(id) + ": " + value + "\n")
	}
	sp, err := sfv.AppendInnerList(nil, items, params)
	if err != nil {
		return "", err
	}
	out.WriteString(`"@signature-params": ` + string(sp))
	return out.String(), nil
}

// referenceValue is the value of one component (RFC 9421 §2.1, §2.2).
func referenceValue(r *http.Request, t target, it *sfv.Item) (string, error) {
	if it.Value.Kind != sfv.String || it.Value.Str == "" {
		return "", errors.New("identifier is not a string")
	}
	name := it.Value.Str
	if strings.HasPrefix(name, "@") {
		if len(it.Params) > 0 && !(name == "@query-param" && len(it.Params) == 1 && it.Params[0].Key == "name") {
			return "", errors.New("parameter on a derived component")
		}
		path := r.URL.EscapedPath()
		if path == "" {
			path = "/"
		}
		requestTarget := path
		if r.URL.RawQuery != "" || r.URL.ForceQuery {
			requestTarget += "?" + r.URL.RawQuery
		}
		switch name {
		case "@method":
			return r.Method, nil
		case "@scheme":
			return t.scheme, nil
		case "@authority":
			return t.authority, nil
		case "@target-uri":
			return t.scheme + "://" + t.authority + requestTarget, nil
		case "@request-target":
			return requestTarget, nil
		case "@path":
			return path, nil
		case "@query":
			return "?" + r.URL.RawQuery, nil
		case "@query-param":
			if len(it.Params) != 1 || it.Params[0].Value.Kind != sfv.String {
				return "", errors.New("@query-param without a name")
			}
			want, err := url.QueryUnescape(it.Params[0].Value.Str)
			if err != nil {
				return "", err
			}
			query, err := url.ParseQuery(r.URL.RawQuery)
			if err != nil {
				return "", err
			}
			if len(query[want]) != 1 {
				return "", errors.New("query parameter not there exactly once")
			}
			var enc strings.Builder
			for _, c := range []byte(query[want][0]) {
				if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("*-._", c) >= 0 {
					enc.WriteByte(c)
				} else {
					fmt.Fprintf(&enc, "%%%02X", c)
				}
			}
			return enc.String(), nil
		}
		return "", errors.New("unsupported derived component")
	}
	if strings.ToLower(name) != name {
		return "", errors.New("field name not lower case")
	}
	var sf, bs bool
	var key *string
	for _, p := range it.Params {
		switch {
		case p.Key == "sf" && p.Value.Kind == sfv.Boolean:
			sf = p.Value.Bool
		case p.Key == "bs" && p.Value.Kind == sfv.Boolean:
			bs = p.Value.Bool
		case p.Key == "key" && p.Value.Kind == sfv.String:
			k := p.Value.Str
			key = &k
		default:
			return "", errors.New("unsupported parameter")
		}
	}
	// key="" names no dictionary member (a key is never empty); the
	// verifier has always read it as no key, the field's plain value, and
	// the reference follows it there.
	if key != nil && *key == "" {
		key = nil
	}
	if bs && (sf || key != nil) {
		return "", errors.New("bs with sf or key")
	}
	values := r.Header.Values(name)
	if name == "host" && len(values) == 0 && r.Host != "" {
		values = []string{r.Host} // Go keeps Host out of r.Header
	}
	if len(values) == 0 {
		return "", errors.New("field absent")
	}
	trimmed := make([]string, len(values))
	for i, v := range values {
		trimmed[i] = strings.Trim(v, " \t")
	}
	switch {
	case bs: // §2.1.3: each line, base64, between colons
		for i, v := range trimmed {
			trimmed[i] = ":" + base64.StdEncoding.EncodeToString([]byte(v)) + ":"
		}
		return strings.Join(trimmed, ", "), nil
	case key != nil: // §2.1.2: the member, serialized
		d, err := sfv.ParseDictionary(values)
		if err != nil {
			return "", err
		}
		m := d.Get(*key)
		if m == nil {
			return "", errors.New("no such member")
		}
		b, err := sfv.AppendMember(nil, *m)
		return string(b), err
	case sf: // §2.1.1: the field, serialized strictly
		var b []byte
		var err error
		switch name {
		case "content-digest", "repr-digest", "signature", "signature-input", "want-content-digest":
			var d sfv.Dictionary
			if d, err = sfv.ParseDictionary(values); err == nil {
				b, err = sfv.AppendDictionary(nil, d)
			}
		default: // of unknown type: a list, or else a dictionary, or else an item
			if l, lerr := sfv.ParseList(values); lerr == nil {
				b, err = sfv.AppendList(nil, l)
			} else if d, derr := sfv.ParseDictionary(values); derr == nil {
				b, err = sfv.AppendDictionary(nil, d)
			} else {
				var it sfv.Item
				if it, err = sfv.ParseItem(values); err == nil {
					b, err = sfv.AppendItem(nil, &it)
				}
			}
		}
		return string(b), err
	}
	return strings.Join(trimmed, ", "), nil
}

// rfc9421Request reads RFC 9421's test request and its B.2.5 signature.
func rfc9421Request(t testing.TB) rfc9421Vector {
	var vec rfc9421Vector
	b, err := os.ReadFile("testdata/rfc9421-hmac.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &vec))
	return vec
}

// TestReferenceBase: the reference FuzzSignatureBase compares the builder
// with builds RFC 9421's own examples: B.2.5's signature base, and the
// §2.1.2 dictionary members and §2.2.8 query parameters.
func TestReferenceBase(t *testing.T) {
	vec := rfc9421Request(t)
	in := innerList(t, vec.Input)
	got, err := referenceBase(vec.request(), target{scheme: "http", authority: "example.com"}, in.Items, in.Params)
	require.NoError(t, err)
	require.Equal(t, vec.Base, got)

	r := httptest.NewRequest("GET", api+"/", nil)
	r.Header.Set("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)")
	in = innerList(t, `sig1=("example-dict";key="a" "example-dict";key="b" "example-dict";key="c" "example-dict";sf);created=1`)
	got, err = referenceBase(r, target{scheme: "https", authority: "api.example.com"}, in.Items, in.Params)
	require.NoError(t, err)
	require.Equal(t, "\"example-dict\";key=\"a\": 1\n\"example-dict\";key=\"b\": 2;x=1;y=2\n\"example-dict\";key=\"c\": (a b c)\n"+
		"\"example-dict\";sf: a=1, b=2;x=1;y=2, c=(a b c)\n"+
		"\"@signature-params\": (\"example-dict\";key=\"a\" \"example-dict\";key=\"b\" \"example-dict\";key=\"c\" \"example-dict\";sf);created=1", got)

	r = httptest.NewRequest("GET", "https://example.com/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something", nil)
	in = innerList(t, `sig1=("@query-param";name="var" "@query-param";name="bar" "@query-param";name="fa%C3%A7ade%22%3A%20")`)
	got, err = referenceBase(r, target{scheme: "https", authority: "example.com"}, in.Items, in.Params)
	require.NoError(t, err)
	require.Equal(t, "\"@query-param\";name=\"var\": this%20is%20a%20big%0Amultiline%20value\n"+
		"\"@query-param\";name=\"bar\": with%20plus%20whitespace\n"+
		"\"@query-param\";name=\"fa%C3%A7ade%22%3A%20\": something\n"+
		"\"@signature-params\": (\"@query-param\";name=\"var\" \"@query-param\";name=\"bar\" \"@query-param\";name=\"fa%C3%A7ade%22%3A%20\")", got)
}
