package auth

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// TestIntrospectionIDTokenAsAccessToken: with Introspection.JWTs an ID
// token of the issuer goes to the endpoint, and some endpoints answer an
// ID token active (Keycloak does, with its nonce and at_hash). The JWT
// path refuses a token with ID-token claims whatever its typ; the
// introspection path must too, or an ID token (handed to third parties as
// an identity assertion) whose aud names the API is an access token.
func TestIntrospectionIDTokenAsAccessToken(t *testing.T) {
	s := newSigner(t, jwa.ES256, "k1")
	for _, tc := range []struct {
		name string
		over map[string]any
	}{
		{"nonce", map[string]any{"nonce": "n-0S6_WzA2Mj"}},
		{"at_hash", map[string]any{"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}},
		{"c_hash", map[string]any{"c_hash": "LDktKdoQak3Pk0cnXxCltA"}},
		{"token_type_id_token", map[string]any{"token_type": "urn:ietf:params:oauth:token-type:id_token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			srv := newIntroServer(t)
			v, _ := newIntroVerifier(t, clk, srv, func(c *Config) { c.Issuers[0].Introspection.JWTs = true })
			idToken := s.sign(t, map[string]any{"typ": "JWT", "kid": "k1"}, map[string]any{
				"iss": testIssuer, "aud": testAudience, "sub": "user-1", "iat": t0.Unix(), "exp": t0.Add(10 * time.Minute).Unix(), "nonce": "n-0S6_WzA2Mj",
			})
			srv.answer(idToken, tc.over)
			_, err := v.VerifyToken(t.Context(), idToken)
			require.ErrorIs(t, err, ErrType)
			rec, reached, _ := call(v.Handler, bearer(idToken))
			require.False(t, reached)
			require.Equal(t, 401, rec.Code)
		})
	}
}

// TestCertificateBoundTokenUsedAsBearer: a token bound by cnf to an mTLS
// certificate (RFC 8705 x5t#S256), or to a key by any member but jkt, is
// sender-constrained in a way apiguard cannot check; taken as a bearer
// token, a stolen one works without the certificate. Refused, as a JWT
// and as an introspection answer.
func TestCertificateBoundTokenUsedAsBearer(t *testing.T) {
	es := newSigner(t, jwa.ES256, "k1")
	for _, cnf := range []map[string]any{
		{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
		{"jwk": map[string]any{"kty": "EC"}},
		{"jkt": ""},
		{"jkt": "x", "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
		{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2", "jkt": "x", "kid": "a"},
	} {
		clk := testkit.NewClock(t0)
		v, _ := newTestVerifier(t, clk, nil, es)
		tok := es.token(t, map[string]any{"cnf": cnf})
		_, err := v.VerifyToken(t.Context(), tok)
		require.ErrorIs(t, err, ErrDPoPBinding, "JWT with cnf %v", cnf)
		rec, reached, _ := call(v.Handler, bearer(tok))
		require.False(t, reached)
		require.Equal(t, 401, rec.Code)

		srv := newIntroServer(t)
		iv, _ := newIntroVerifier(t, clk, srv, nil)
		srv.answer("opaque-mtls-bound", map[string]any{"cnf": cnf})
		_, err = iv.VerifyToken(t.Context(), "opaque-mtls-bound")
		require.ErrorIs(t, err, ErrDPoPBinding, "introspected cnf %v", cnf)
	}
	// An empty cnf binds the token to nothing: a bearer token.
	clk := testkit.NewClock(t0)
	v, _ := newTestVerifier(t, clk, nil, es)
	_, reached, _ := call(v.Handler, bearer(es.token(t, map[string]any{"cnf": map[string]any{}})))
	require.True(t, reached)
}

// TestIntrospectionOddClaimTypeTakesEndpointOutForAll: an answer that is
// a JSON object with a boolean active, but a claim of another type than
// expected (exp as a string, acr as a number, a custom mapper's doing),
// was an outage: a 503 counted as a failed call, putting the endpoint in
// back-off, so that one client presenting such a token again and again
// got every other token never seen before refused with 503. It is an
// answer about that token: 401, cached like an inactive one, and the
// next token is introspected at once.
func TestIntrospectionOddClaimTypeTakesEndpointOutForAll(t *testing.T) {
	for _, over := range []map[string]any{{"exp": "1796537400"}, {"acr": 1}, {"aud": map[string]any{"a": 1}}, {"cnf": map[string]any{"jkt": 7}}} {
		clk := testkit.NewClock(t0)
		srv := newIntroServer(t)
		v, _ := newIntroVerifier(t, clk, srv, nil)
		srv.answer("odd-types", over)
		srv.answer("someone-else", nil)
		for range 3 {
			rec, reached, _ := call(v.Handler, bearer("odd-types"))
			require.False(t, reached)
			require.Equal(t, http.StatusUnauthorized, rec.Code, "%v: %s", over, rec.Body.String())
		}
		_, err := v.VerifyToken(t.Context(), "odd-types")
		require.ErrorIs(t, err, ErrMalformedToken)
		require.EqualValues(t, 1, srv.calls.Load(), "the refusal is cached")
		_, err = v.VerifyToken(t.Context(), "someone-else")
		require.NoError(t, err, "no back-off for other tokens")
		require.EqualValues(t, 2, srv.calls.Load())
	}
}

// TestShadowStackedRequiresCountOneWouldDeny: with Require stacked (a
// group's scope, then the route's), enforce mode refuses a token lacking
// both once, at the first; shadow mode logged a would-deny at each, so
// the would-deny count of a rollout read higher than the denials enforce
// mode would make. Shadow mode must decide and count the request once.
func TestShadowStackedRequiresCountOneWouldDeny(t *testing.T) {
	es := newSigner(t, jwa.ES256, "k1")
	tok := es.token(t, map[string]any{"scope": "profile"})
	for _, shadow := range []bool{false, true} {
		clk := testkit.NewClock(t0)
		v, logs := newTestVerifier(t, clk, func(c *Config) { c.Shadow = shadow }, es)
		chain := func(next http.Handler) http.Handler { return v.Require("orders:read")(v.Require("orders:write")(next)) }
		rec, reached, c := call(chain, bearer(tok))
		require.Equal(t, shadow, reached, rec.Body.String())
		require.Equal(t, 1, strings.Count(logs.String(), `"event":"auth_failed"`), "shadow=%t: %s", shadow, logs.String())
		if shadow {
			require.NotNil(t, c, "the token is valid: its claims reach next, as they would past a Require it passes")
		}
	}
}

// TestIntrospectionOneRefusedTokenTakesEndpointOutForAll: an endpoint,
// or the WAF in front of it, that answers one token with a 4xx (403 for
// a token that reads like a path traversal, 400 or 413 for one its parser
// dislikes) put the endpoint in back-off for every token: one request a
// second from an attacker got every user whose token is not cached yet
// refused with 503. A 4xx other than 401 is checked with a random token
// at once: when the endpoint answers that, the failure is the token's
// (401 for it, cached briefly), and other tokens are introspected as
// before.
func TestIntrospectionOneRefusedTokenTakesEndpointOutForAll(t *testing.T) {
	const attack = "../../../../etc/passwd"
	for _, status := range []int{http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge} {
		clk := testkit.NewClock(t0)
		srv := newIntroServer(t)
		waf := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ParseForm() == nil && strings.Contains(r.PostForm.Get("token"), "../") {
				w.WriteHeader(status)
				return
			}
			srv.Config.Handler.ServeHTTP(w, r)
		}))
		t.Cleanup(waf.Close)
		v, _ := newIntroVerifier(t, clk, srv, func(c *Config) {
			c.Issuers[0].Introspection.URL = waf.URL
			c.Rand = zeroReader{}
		})
		srv.answer("alice", nil)
		srv.answer("bob", nil)
		_, err := v.VerifyToken(t.Context(), "alice")
		require.NoError(t, err)

		rec, reached, _ := call(v.Handler, bearer(attack))
		require.False(t, reached)
		require.Equal(t, http.StatusUnauthorized, rec.Code, "status %d: %s", status, rec.Body.String())
		_, err = v.VerifyToken(t.Context(), attack)
		require.ErrorIs(t, err, ErrMalformedToken, "cached")
		_, err = v.VerifyToken(t.Context(), "bob")
		require.NoError(t, err, "status %d: bob is not refused for the attacker's token", status)
		require.NoError(t, v.Ready(t.Context()))
	}

	// A 4xx for every token (a wrong URL, say) is still an outage: 503.
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, _ := newIntroVerifier(t, clk, srv, func(c *Config) { c.Rand = zeroReader{} })
	srv.answer("alice", nil)
	srv.set(func(s *introServer) { s.status = http.StatusNotFound })
	_, err := v.VerifyToken(t.Context(), "alice")
	require.ErrorIs(t, err, ErrKeysUnavailable)
}

// TestIntrospectionSecretInJSONLog: String and GoString redact the client
// secret, but slog's JSON handler (and telemetry's, and anything that
// encodes a config as JSON) marshals the struct: a service that logged
// its issuer configuration at start-up wrote the secret to its logs.
func TestIntrospectionSecretInJSONLog(t *testing.T) {
	is := Issuer{Issuer: testIssuer, Introspection: &Introspection{URL: "https://idp.example/introspect", ClientID: "rs", ClientSecret: introSecret}}
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("config", "issuer", is, "introspection", is.Introspection, "value", *is.Introspection)
	require.NotContains(t, buf.String(), introSecret)
	require.Contains(t, buf.String(), "https://idp.example/introspect")
	b, err := json.Marshal(is)
	require.NoError(t, err)
	require.NotContains(t, string(b), introSecret)
}
