package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/stretchr/testify/require"
)

// jwksServer serves keys as a JWKS with Cache-Control max-age=300, and
// an OpenID Connect discovery document naming it, for issuer
// srv.URL+issuerPath (or, when issuer is set, that issuer).
func jwksServer(t *testing.T, issuer string, keys ...any) *httptest.Server {
	t.Helper()
	doc, err := json.Marshal(map[string]any{"keys": keys})
	require.NoError(t, err)
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		iss := issuer
		if iss == "" {
			iss = srv.URL
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "jwks_uri": srv.URL + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"ES256"}, "dpop_signing_alg_values_supported": []string{"ES256", "EdDSA"},
		})
	})
	// RFC 8414 for an issuer with a path: /.well-known/oauth-authorization-server/tenant
	mux.HandleFunc("GET /.well-known/oauth-authorization-server/tenant", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL + "/tenant", "jwks_uri": srv.URL + "/jwks.json"})
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// ecKey is a public ES256 JWK with kid; mod changes it.
func ecKey(t *testing.T, kid string, mod func(jwk.Key)) jwk.Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	k, err := publicJWK(&priv.PublicKey, kid, jwa.ES256)
	require.NoError(t, err)
	if mod != nil {
		mod(k)
	}
	return k
}

// row returns the line of the key table for kid.
func row(t *testing.T, out, kid string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(kid) + `\s.*$`).FindString(out)
	require.NotEmpty(t, m, "no row for %s in\n%s", kid, out)
	return m
}

func TestJWKSCheckOneGoodKeyOneSkipped(t *testing.T) {
	good := ecKey(t, "good-2026", nil)
	enc := ecKey(t, "enc-key", func(k jwk.Key) { _ = k.Set(jwk.KeyUsageKey, "enc") })
	srv := jwksServer(t, "", good, enc)

	r := cliRun(t, nil, "jwks", "check", srv.URL+"/jwks.json")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "Cache-Control: public, max-age=300")
	require.Contains(t, r.stdout, "max-age 5m0s")
	require.Regexp(t, `EC\s+ES256\s+sig\s+P-256\s+accepted$`, row(t, r.stdout, "good-2026"))
	require.Regexp(t, `EC\s+ES256\s+enc\s+P-256\s+skipped: use "enc" is not sig$`, row(t, r.stdout, "enc-key"))
	require.Contains(t, r.stdout, "auth would accept 1 of 2 keys")
}

func TestJWKSCheckAlgorithmNotAllowedSkipped(t *testing.T) {
	srv := jwksServer(t, "", ecKey(t, "es256", nil))
	r := cliRun(t, nil, "jwks", "check", srv.URL+"/jwks.json", "-alg", "RS256")
	require.Equal(t, exitFailure, r.code, r.stdout)
	require.Contains(t, row(t, r.stdout, "es256"), "skipped: key fits none of the allowed algorithms")
	require.Contains(t, r.stdout, "auth would accept no token signed with this set")
}

func TestJWKSCheckSymmetricKeyNeverPrinted(t *testing.T) {
	const k = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" // gitleaks:allow -- a test value: base64url of "secret-secret-…"
	srv := jwksServer(t, "", map[string]string{"kty": "oct", "kid": "hmac", "k": k}, ecKey(t, "good", nil))
	r := cliRun(t, nil, "jwks", "check", srv.URL+"/jwks.json")
	require.Equal(t, exitOK, r.code, r.stdout)
	require.Contains(t, row(t, r.stdout, "hmac"), "skipped: symmetric keys never verify access tokens")
	require.NotContains(t, r.stdout+r.stderr, k)
}

func TestJWKSCheckFetchFails(t *testing.T) {
	srv := jwksServer(t, "")
	r := cliRun(t, nil, "jwks", "check", srv.URL+"/missing.json")
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "404")
}

func TestDiscover(t *testing.T) {
	srv := jwksServer(t, "", ecKey(t, "good", nil), ecKey(t, "enc", func(k jwk.Key) { _ = k.Set(jwk.KeyUsageKey, "enc") }))
	r := cliRun(t, nil, "discover", srv.URL)
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "discovery "+srv.URL+"/.well-known/openid-configuration")
	require.Contains(t, r.stdout, "jwks_uri:  "+srv.URL+"/jwks.json")
	require.Contains(t, r.stdout, "dpop_signing_alg_values_supported: ES256, EdDSA")
	require.Contains(t, row(t, r.stdout, "good"), "accepted")
	require.Contains(t, row(t, r.stdout, "enc"), "skipped")
}

func TestDiscoverRFC8414IssuerWithPath(t *testing.T) {
	srv := jwksServer(t, "", ecKey(t, "good", nil))
	r := cliRun(t, nil, "discover", srv.URL+"/tenant")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "discovery "+srv.URL+"/.well-known/oauth-authorization-server/tenant")
}

func TestDiscoverIssuerMismatchRefused(t *testing.T) {
	srv := jwksServer(t, "https://evil.example.com", ecKey(t, "good", nil))
	r := cliRun(t, nil, "discover", srv.URL)
	require.Equal(t, exitFailure, r.code, r.stdout)
	require.Contains(t, r.stderr, "issuer")
	require.NotContains(t, r.stdout, "JWKS ", "the key set of a mismatched issuer is not checked")
}

func TestDiscoverNoFallbackWhenOIDCDocumentFails(t *testing.T) {
	var rfc8414 atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/oauth-authorization-server") {
			rfc8414.Store(true)
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	r := cliRun(t, nil, "discover", srv.URL)
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "500")
	require.False(t, rfc8414.Load(), "RFC 8414 is tried only when the OpenID Connect document is absent (404, 410)")
}

// A hostile JWKS server puts escape sequences and a forged verdict line in
// a key's alg; the table must keep them inert and on the key's row.
func TestJWKSCheckTerminalEscapeInAlgNeutralised(t *testing.T) {
	k := ecKey(t, "k1", func(k jwk.Key) {
		require.NoError(t, k.Set(jwk.AlgorithmKey, "ES256\x1b[2J\u009b2J\nauth would accept 1 of 1 keys"))
	})
	srv := jwksServer(t, "", k)
	r := cliRun(t, nil, "jwks", "check", srv.URL+"/jwks.json")
	require.NotContains(t, r.stdout, "\x1b")
	require.NotContains(t, r.stdout, "\u009b")
	require.NotContains(t, r.stdout, "\nauth would accept 1 of 1")
}
