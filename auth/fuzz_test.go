package auth

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
)

var sentinels = []error{ErrNoToken, ErrInvalidRequest, ErrMalformedToken, ErrAlgorithm, ErrForbiddenHeader,
	ErrType, ErrIssuer, ErrUnknownKey, ErrSignature, ErrAudience, ErrExpired, ErrNotYetValid, ErrLifetime,
	ErrKeysUnavailable, ErrDPoPRequired, ErrDPoPProof, ErrDPoPBinding, ErrDPoPReplay, ErrDPoPNonce}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzVerify feeds arbitrary Authorization and DPoP headers: every
// rejection is one of the package's sentinels, nothing panics, and nothing
// forged is accepted.
func FuzzVerify(f *testing.F) {
	clk := testkit.NewClock(t0)
	es := newSigner(f, jwa.ES256, "es-1")
	device := newSigner(f, jwa.ES256, "device")
	v, _ := newTestVerifier(f, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = apiBase }, es)
	tok := es.token(f, nil)
	bound := es.token(f, map[string]any{"cnf": map[string]any{"jkt": jkt(f, device)}})
	f.Add("Bearer "+tok, "")
	f.Add("DPoP "+bound, proof(f, device, "GET", apiBase+"/x", bound, t0, nil))
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.", "")
	f.Add("Bearer a.b.c", "a.b.c")
	f.Add("DPoP "+bound, "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.AA")
	f.Fuzz(func(t *testing.T, authz, dpop string) {
		r := httptest.NewRequest("GET", apiBase+"/x", nil)
		r.Header["Authorization"] = []string{authz}
		if dpop != "" {
			r.Header["Dpop"] = []string{dpop}
		}
		c, err := v.Verify(r)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error outside the sentinels: %v", err)
			}
			return
		}
		if c.Issuer != testIssuer || c.Expiry.Before(t0.Add(-time.Minute)) {
			t.Fatalf("accepted a token that is not ours: %+v", c)
		}
	})
}

// FuzzNormalizeURL feeds arbitrary htu values and request paths to the
// DPoP URL comparison: nothing panics, normalisation is idempotent and
// leaves no dot segment, and a request path is accepted only when it has
// none either.
func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{"https://API.example.com:443/a/../b", "https://x/%2E%2E/%7e/%2f", "http://x:80", "https://x/a/./b/..", "https://[::1]/p?q#f"} {
		f.Add(s, "/a/%2E%2E/b")
	}
	d := &dpopChecker{base: apiBase}
	f.Fuzz(func(t *testing.T, htu, path string) {
		if u, err := normalizeURL(htu); err == nil {
			again, err := normalizeURL(u)
			if err != nil || again != u {
				t.Fatalf("normalizeURL(%q) = %q, then %q, %v", htu, u, again, err)
			}
		}
		r := httptest.NewRequest("GET", apiBase+"/", nil)
		if err := r.URL.UnmarshalBinary([]byte(apiBase + path)); err != nil || r.URL.Host != "api.example.com" {
			return
		}
		if d.htuMatches(htu, r) {
			p := normalizePercent(r.URL.EscapedPath())
			if clean, err := removeDotSegments(p); err != nil || (clean != p && p != "") {
				t.Fatalf("request path %q with dot segments accepted", r.URL.EscapedPath())
			}
		}
	})
}
