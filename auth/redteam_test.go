package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/stretchr/testify/require"
)

// Red-team attacks on the key source, the token cache and DPoP htu, by a
// reviewer who did not write them. Each test fails if its attack works.

// kidless is a token of s without a kid in its header, issued now.
func kidless(t testing.TB, s *signer, clk *testClock, jti string) string {
	t.Helper()
	now := clk.Now()
	return s.sign(t, map[string]any{"typ": "at+jwt"}, map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "u", "jti": jti,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
}

// TestRedKeyReplacedInPlace: the issuer replaces its key without a new
// kid (the same kid re-keyed, or a single key and tokens without kid, as
// OIDC allows). A valid token signed with the new key must not get 401
// because the loaded set predates it: 503 until a set fetched after the
// token settles it, as for a kid the set lacks.
func TestRedKeyReplacedInPlace(t *testing.T) {
	for _, tt := range []struct {
		name  string
		token func(t *testing.T, s *signer, clk *testClock, jti string) string
	}{
		{name: "same_kid_rekeyed", token: func(t *testing.T, s *signer, clk *testClock, jti string) string { return freshToken(t, s, clk, jti) }},
		{name: "kidless_single_key_replaced", token: func(t *testing.T, s *signer, clk *testClock, jti string) string { return kidless(t, s, clk, jti) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			old := newSigner(t, jwa.ES256, "signing")
			rekeyed := newSigner(t, jwa.ES256, "signing") // same kid, new material
			srv := newJWKSServer(t, old)
			v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
			_, err := v.VerifyToken(t.Context(), tt.token(t, old, clk, "o"))
			require.NoError(t, err)

			clk.Advance(10 * time.Second)
			srv.serveKeys(t, rekeyed)
			tok := tt.token(t, rekeyed, clk, "n")
			rec, _, _ := call(v.Handler, bearer(tok))
			require.Equal(t, http.StatusServiceUnavailable, rec.Code, "a valid token refused because the key set predates it")
			require.Equal(t, 50*time.Second, retryAfter(t, rec.Header()))
			clk.Advance(50 * time.Second)
			_, reached, _ := call(v.Handler, bearer(tok))
			require.True(t, reached)
			require.Equal(t, int32(2), srv.fetches.Load())

			// A forgery (signature of another key) is still 401 once a set
			// fetched after it proves the key wrong, and old forgeries are
			// 401 at once, without a fetch.
			other := newSigner(t, jwa.ES256, "signing")
			clk.Advance(time.Second)
			forged := tt.token(t, other, clk, "f")
			rec, _, _ = call(v.Handler, bearer(forged))
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			clk.Advance(retryAfter(t, rec.Header()))
			_, err = v.VerifyToken(t.Context(), forged)
			require.ErrorIs(t, err, ErrSignature)
			clk.Advance(time.Minute)
			old2 := other.token(t, map[string]any{"iat": clk.Now().Add(-5 * time.Minute).Unix(), "exp": clk.Now().Add(time.Minute).Unix()})
			_, err = v.VerifyToken(t.Context(), old2)
			require.ErrorIs(t, err, ErrSignature)
			require.Equal(t, int32(3), srv.fetches.Load())
		})
	}
}

// TestRedBadSignatureFlood: forged tokens with the real kid, a bad
// signature and a fresh iat make no more fetches than random kids do.
func TestRedBadSignatureFlood(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newJWKSServer(t, a)
	v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
	_, err := v.VerifyToken(t.Context(), a.token(t, nil))
	require.NoError(t, err)
	for step := 1; step <= 30; step++ { // five minutes in steps of 10s
		clk.Advance(10 * time.Second)
		var wg sync.WaitGroup
		// Eight forgers at once, ten tokens each, issued now; a token that
		// fails is not cached, so each goes through the key source again.
		forged := tamperSignature(freshToken(t, a, clk, fmt.Sprint(step)))
		for range 8 {
			wg.Go(func() {
				for range 10 {
					_, err := v.VerifyToken(t.Context(), forged)
					if err == nil {
						panic("a tampered token verified")
					}
				}
			})
		}
		wg.Wait()
	}
	require.LessOrEqual(t, srv.fetches.Load(), int32(6), "the first fetch and one a minute at most")
}

// TestRedTwoIssuersSpacing: forged tokens naming two issuers: each issuer
// keeps its own one-fetch-per-MinKeyRefresh schedule, no more.
func TestRedTwoIssuersSpacing(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv1, srv2 := newJWKSServer(t, a), newJWKSServer(t, a)
	const iss2 = "https://other.example.com/"
	v, _ := newRemoteVerifier(t, clk, srv1.URL, func(c *Config) {
		c.Issuers = append(c.Issuers, Issuer{Issuer: iss2, Audience: []string{testAudience}, JWKSURL: srv2.URL})
	})
	for step := range 60 { // ten minutes
		clk.Advance(10 * time.Second)
		for _, iss := range []string{testIssuer, iss2} {
			tok := a.token(t, map[string]any{"iss": iss, "iat": clk.Now().Unix(), "exp": clk.Now().Add(time.Minute).Unix(), "jti": fmt.Sprint(step)})
			_, rest, _ := cut(tok)
			_, _ = v.VerifyToken(t.Context(), b64json(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": randomKid(t)})+"."+rest)
		}
	}
	// The first fetch starts when the loop first runs, which may be after
	// the clock moved: at most one fetch a minute, and the first.
	require.LessOrEqual(t, srv1.fetches.Load(), int32(11))
	require.LessOrEqual(t, srv2.fetches.Load(), int32(11))
}

// TestRedHostileClaims: hostile headers and claims never panic, never
// answer 500, never verify, and the token appears in no response or log.
func TestRedHostileClaims(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newJWKSServer(t, a)
	v, logs := newRemoteVerifier(t, clk, srv.URL, func(c *Config) { c.MaxKeyWait = -1 })
	now := clk.Now().Unix()
	base := map[string]any{"iss": testIssuer, "aud": testAudience, "iat": now, "exp": now + 60}
	with := func(k string, val any) map[string]any {
		m := map[string]any{}
		for kk, vv := range base {
			m[kk] = vv
		}
		m[k] = val
		return m
	}
	var toks []string
	for _, c := range []map[string]any{
		with("iat", float64(1<<40)), with("iat", 1e300), with("iat", -1), with("iat", "now"),
		with("iat", 1.5e9+0.999999), with("iat", json.RawMessage("1e999")), with("exp", float64(1<<40)),
		with("iss", "https://issuer.example.com/\u200b"), with("aud", []any{1, 2}), with("cnf", "x"),
		with("iat", nil), with("nbf", true), with("scope", []string{"a"}),
	} {
		toks = append(toks, a.sign(t, map[string]any{"typ": "at+jwt", "kid": a.kid}, c))
	}
	_, rest, _ := cut(a.token(t, nil))
	for _, hdr := range []string{
		`{"alg":"ES256","typ":"at+jwt","kid":7}`, `{"alg":"ES256","typ":"at+jwt","kid":"ключ\u0000"}`,
		`{"alg":"ES256","typ":"at+jwt","kid":"key-a","kid":"x"}`, `{"alg":"ES256","typ":"at+jwt"}`,
		`{"alg":["ES256"],"typ":"at+jwt"}`, `{"alg":"ES256","typ":"at+jwt","kid":"` + strings.Repeat("k", 6000) + `"}`,
		`{"alg":"none","typ":"at+jwt","kid":"key-a"}`, `{"alg":"HS256","typ":"at+jwt","kid":"key-a"}`,
	} {
		toks = append(toks, b64.EncodeToString([]byte(hdr))+"."+rest)
	}
	for i, tok := range toks {
		rec, reached, _ := call(v.Handler, bearer(tok))
		require.False(t, reached, "token %d verified", i)
		require.Contains(t, []int{http.StatusUnauthorized, http.StatusServiceUnavailable, http.StatusBadRequest}, rec.Code, "token %d", i)
		_, p, _ := cut(tok)
		require.NotContains(t, rec.Body.String()+fmt.Sprint(rec.Header()), p[:20], "token %d echoed", i)
		require.NotContains(t, logs.String(), p[:20], "token %d logged", i)
	}
}

// TestRedDPoPHtu: proofs for one resource are refused on another; honest
// spellings are accepted. Beyond TestDPoPHtuPaths.
func TestRedDPoPHtu(t *testing.T) {
	tests := []struct {
		name, base, path, htu string
		ok                    bool
	}{
		{name: "double_slash_honest", base: apiBase, path: "/a//b", htu: apiBase + "/a//b", ok: true},
		{name: "double_slash_vs_single", base: apiBase, path: "/a//b", htu: apiBase + "/a/b"},
		{name: "single_vs_double_slash", base: apiBase, path: "/a/b", htu: apiBase + "/a//b"},
		{name: "double_encoded_dot", base: apiBase, path: "/a/%252E%252E/b", htu: apiBase + "/b"},
		{name: "double_encoded_dot_same", base: apiBase, path: "/a/%252E%252E/b", htu: apiBase + "/a/%252E%252E/b", ok: true},
		{name: "backslash_traversal", base: apiBase, path: `/a/%5C..%5Cb`, htu: apiBase + "/b"},
		{name: "semicolon_param", base: apiBase, path: "/b;x=1", htu: apiBase + "/b"},
		{name: "semicolon_dotdot", base: apiBase, path: "/a/..;/b", htu: apiBase + "/b"},
		{name: "encoded_dot_dot_at_root", base: apiBase, path: "/%2e%2E", htu: apiBase + "/"},
		{name: "prefix_escape", base: apiBase + "/v1", path: "/%2E%2E/admin", htu: apiBase + "/admin"},
		{name: "prefix_honest", base: apiBase + "/v1", path: "/orders", htu: apiBase + "/v1/orders", ok: true},
		{name: "prefix_missing_in_htu", base: apiBase + "/v1", path: "/orders", htu: apiBase + "/orders"},
		{name: "trailing_dot_host", base: apiBase, path: "/b", htu: "https://api.example.com./b"},
		{name: "other_port", base: apiBase, path: "/b", htu: "https://api.example.com:8443/b"},
		{name: "http_scheme", base: apiBase, path: "/b", htu: "http://api.example.com/b"},
		{name: "userinfo", base: apiBase, path: "/b", htu: "https://evil@api.example.com/b"},
		{name: "query_and_fragment_ignored", base: apiBase, path: "/b", htu: apiBase + "/b?x=1#f", ok: true},
		{name: "fragment_with_dots", base: apiBase, path: "/b", htu: apiBase + "/c#/../b"},
		{name: "ipv6_port", base: "https://[::1]:8443", path: "/b", htu: "https://[0:0::1]:8443/b"},
		{name: "ipv6_same", base: "https://[::1]:8443", path: "/b", htu: "https://[::1]:8443/b", ok: true},
		{name: "non_ascii_path", base: apiBase, path: "/caf%C3%A9", htu: apiBase + "/café", ok: true},
		{name: "encoded_slash_vs_segment", base: apiBase, path: "/a/b", htu: apiBase + "/a%2Fb"},
		{name: "trailing_slash", base: apiBase, path: "/b/", htu: apiBase + "/b"},
		{name: "empty_path_is_root", base: apiBase, path: "/", htu: apiBase, ok: true},
		{name: "protocol_relative_htu", base: apiBase, path: "/b", htu: "//api.example.com/b"},
	}
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			v, _ := newTestVerifier(t, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = tt.base }, issuerKey)
			r := dpopRequest("GET", "/", tok, proof(t, device, "GET", tt.htu, tok, clk.Now(), nil))
			r.URL.RawPath, r.RequestURI = tt.path, tt.path
			var err error
			r.URL.Path, err = pathUnescape(tt.path)
			require.NoError(t, err)
			_, err = v.Verify(r)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrDPoPProof)
		})
	}
}

// TestRedDPoPHostileJWK: a proof key off its curve, or with huge
// parameters, is a refusal, never a panic or a 500.
func TestRedDPoPHostileJWK(t *testing.T) {
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
	clk := testkit.NewClock(t0)
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = apiBase }, issuerKey)
	for _, raw := range []string{
		`{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
		`{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}`,
		`{"kty":"RSA","n":"AQ","e":"AQ"}`, `{"kty":"OKP","crv":"Ed25519","x":"AQ"}`, `{"kty":"oct","k":"AAAA"}`,
	} {
		k, err := jwk.ParseKey([]byte(raw))
		if err != nil {
			continue
		}
		rec, reached, _ := call(v.Handler, dpopRequest("GET", "/b", tok, proof(t, device, "GET", apiBase+"/b", tok, clk.Now(), map[string]any{"jwk": k})))
		require.False(t, reached, raw)
		require.Equal(t, http.StatusUnauthorized, rec.Code, raw)
	}
}

func pathUnescape(p string) (string, error) { return url.PathUnescape(p) }
