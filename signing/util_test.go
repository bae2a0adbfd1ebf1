package signing

import (
	"net/http"
	"testing"

	"github.com/apiguard/apiguard/internal/sfv"

	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

func hmacSum(secret, data []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(data)
	return m.Sum(nil)
}

func b64std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// innerList parses "label=(...);params" and returns the member.
func innerList(t testing.TB, input string) sfv.Member {
	t.Helper()
	d, err := sfv.ParseDictionary([]string{input})
	if err != nil || len(d.Members) != 1 || !d.Members[0].IsInnerList {
		t.Fatalf("bad signature input %q: %v", input, err)
	}
	return d.Members[0].Member
}

// baseFor builds the signature base of r for one Signature-Input member.
func baseFor(t testing.TB, r *http.Request, input string) ([]byte, error) {
	m := innerList(t, input)
	return compileBase(nil, r, target{scheme: "https", authority: "api.example.com"}, m.Items, m.Params, m.Raw)
}
