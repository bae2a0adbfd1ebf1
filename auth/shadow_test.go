package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"

	"github.com/apiguard/apiguard/internal/shadowtest"
	"github.com/apiguard/apiguard/internal/testkit"
)

// TestShadowDecidesAsEnforce replays one recorded table of requests,
// valid ones and the attacks of the red-team and verifier tests, through
// an enforce-mode and a shadow-mode Verifier (each with its own replay
// store and token cache, both clocks at the same instants) and compares
// every decision: shadow mode refuses nothing, logs each refusal enforce
// mode makes as the same auth_failed reason with shadow=true, and no
// other. The /admin route chains Handler and Require, so a request
// refused in shadow mode is decided and counted once.
func TestShadowDecidesAsEnforce(t *testing.T) {
	require.Equal(t, t0, shadowtest.Start)
	es := newSigner(t, jwa.ES256, "es-1")
	other := newSigner(t, jwa.ES256, "es-1") // same kid, another key
	device := newSigner(t, jwa.ES256, "device")
	thief := newSigner(t, jwa.ES256, "thief")
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	const downIssuer = "https://down.example.com/"

	valid := es.token(t, nil)
	admin := es.token(t, map[string]any{"scope": "admin", "jti": "tok-admin"})
	bound := es.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}, "jti": "tok-bound"})
	dpopProof := proof(t, device, "GET", apiBase+"/orders/7", bound, t0, map[string]any{"jti": "proof-1"})
	noneTok := b64json(t, map[string]any{"alg": "none", "typ": "at+jwt"}) + "." +
		b64json(t, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()}) + ".c2ln"
	rec := func(name string, r *http.Request, want error) shadowtest.Case {
		return shadowtest.Record(t, name, r, want)
	}
	on := func(path, token string) *http.Request {
		r := httptest.NewRequest("GET", apiBase+path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return r
	}
	repeated := bearer(valid)
	repeated.Header.Add("Authorization", "Bearer "+valid)
	cases := []shadowtest.Case{
		rec("valid_bearer", bearer(valid), nil),
		rec("valid_bearer_cached", bearer(valid), nil),
		rec("no_token", httptest.NewRequest("GET", apiBase+"/orders/7", nil), ErrNoToken),
		rec("authorization_repeated", repeated, ErrInvalidRequest),
		rec("malformed_token", bearer("abc"), ErrMalformedToken),
		rec("alg_none_with_signature", bearer(noneTok), ErrAlgorithm),
		rec("bad_signature_same_kid", bearer(other.token(t, nil)), ErrSignature),
		rec("unknown_kid", bearer(es.sign(t, map[string]any{"typ": "at+jwt", "kid": "nope"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()})), ErrUnknownKey),
		rec("expired", bearer(es.token(t, map[string]any{"iat": t0.Add(-20 * time.Minute).Unix(), "exp": t0.Add(-time.Minute).Unix()})), ErrExpired),
		rec("wrong_audience", bearer(es.token(t, map[string]any{"aud": "https://other-api.example.com"})), ErrAudience),
		rec("unknown_issuer", bearer(es.token(t, map[string]any{"iss": "https://evil.example.com/"})), ErrIssuer),
		rec("lifetime_too_long", bearer(es.token(t, map[string]any{"exp": t0.Add(30 * 24 * time.Hour).Unix()})), ErrLifetime),
		rec("id_token_as_access_token", bearer(es.sign(t, map[string]any{"typ": "JWT", "kid": "es-1"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix(), "nonce": "n"})), ErrType),
		rec("missing_scope", on("/admin/users", valid), ErrInsufficientScope),
		rec("admin_scope", on("/admin/users", admin), nil),
		rec("bad_signature_on_chained_route", on("/admin/users", other.token(t, nil)), ErrSignature),
		rec("dpop_valid", dpopRequest("GET", "/orders/7", bound, dpopProof), nil),
		rec("dpop_proof_replayed", dpopRequest("GET", "/orders/7", bound, dpopProof), ErrDPoPReplay),
		rec("dpop_token_stolen_as_bearer", bearer(bound), ErrDPoPBinding),
		rec("dpop_token_with_thief_key", dpopRequest("GET", "/orders/7", bound, proof(t, thief, "GET", apiBase+"/orders/7", bound, t0, map[string]any{"jti": "proof-2"})), ErrDPoPBinding),
		rec("keys_unavailable_outage", bearer(es.token(t, map[string]any{"iss": downIssuer})), ErrKeysUnavailable),
	}
	expiredLater := rec("valid_token_expired_since", bearer(valid), ErrExpired)
	expiredLater.Advance = 11 * time.Minute
	cases = append(cases, expiredLater)

	shadowtest.Run(t, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
		v, err := New(Config{
			Issuers: []Issuer{
				{Issuer: testIssuer, Audience: []string{testAudience}, Keys: jwkSet(t, es)},
				{Issuer: downIssuer, Audience: []string{testAudience}, JWKSURL: down.URL},
			},
			MaxKeyWait: -1,
			DPoP:       DPoPAllowed, DPoPURL: apiBase,
			Shadow: w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler,
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = v.Close() })
		return func(next http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.Handle("/orders/", v.Handler(next))
			mux.Handle("/admin/", v.Handler(v.Require("admin")(next)))
			return mux
		}
	})
}

// TestShadowNextHandlerSees pins what the next handler gets in shadow
// mode: no claims for a refused token, the claims of a valid token that
// lacks a scope, no WWW-Authenticate and no problem body, the next
// handler's own status.
func TestShadowNextHandlerSees(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	other := newSigner(t, jwa.ES256, "es-1")
	v, logs := newTestVerifier(t, clk, func(c *Config) { c.Shadow = true }, es)

	rec, reached, claims := call(v.Handler, bearer(other.token(t, nil)))
	require.True(t, reached, "shadow mode never refuses")
	require.Nil(t, claims, "a refused token puts no claims in the context")
	require.Equal(t, http.StatusNoContent, rec.Code)
	require.Empty(t, rec.Header().Get("WWW-Authenticate"))
	require.Contains(t, logs.String(), `"event":"auth_failed","reason":"signature"`)
	require.Contains(t, logs.String(), `"shadow":true`)

	rec, reached, claims = call(v.Require("admin"), bearer(es.token(t, nil)))
	require.True(t, reached)
	require.NotNil(t, claims, "a valid token without the scope passes with its claims")
	require.Equal(t, "user-1", claims.Subject)
	require.Equal(t, http.StatusNoContent, rec.Code)
	require.Contains(t, logs.String(), `"reason":"insufficient_scope"`)
}

// TestShadowConcurrentDPoPReplaysCountedExactly: one DPoP proof sent 32
// times at once through a Verifier in shadow mode: all 32 reach the
// handler, exactly one with claims, and exactly 31 dpop_replay events
// carry shadow=true, the count enforce mode would refuse.
func TestShadowConcurrentDPoPReplaysCountedExactly(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	v, logs := newTestVerifier(t, clk, func(c *Config) {
		c.Shadow = true
		c.DPoP, c.DPoPURL = DPoPAllowed, apiBase
	}, es)
	bound := es.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
	prf := proof(t, device, "GET", apiBase+"/orders/7", bound, t0, map[string]any{"jti": "once"})
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ClaimsFrom(r.Context()); ok {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusAccepted) // passed in shadow mode
	}))
	codes := make(chan int, 32)
	var wg sync.WaitGroup
	for range 32 {
		r := dpopRequest("GET", "/orders/7", bound, prf)
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			codes <- rec.Code
		})
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	require.Equal(t, map[int]int{http.StatusOK: 1, http.StatusAccepted: 31}, got)
	require.Equal(t, 31, strings.Count(logs.String(), `"reason":"dpop_replay"`))
	require.Equal(t, 31, strings.Count(logs.String(), `"shadow":true`))
}
