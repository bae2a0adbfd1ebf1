package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

const (
	introClient = "resource-server"
	introSecret = "introspection-secret-for-tests" // gitleaks:allow -- a test server's made-up client secret
)

// introServer is a local RFC 7662 endpoint. It answers each token with
// the JSON in answers (active false for any other), or with status or
// raw when set, and counts the calls.
type introServer struct {
	*httptest.Server
	calls atomic.Int64
	// inflight and maxInflight count the calls being answered.
	inflight, maxInflight atomic.Int64

	mu      sync.Mutex
	answers map[string]map[string]any
	status  int
	raw     []byte
	hold    chan struct{} // when set, requests wait for it to close
	bad     []string      // what a request did wrong (method, auth, form)
	arrived chan struct{} // receives when a call arrives (the first 1024)
}

func newIntroServer(t testing.TB) *introServer {
	s := &introServer{answers: map[string]map[string]any{}, arrived: make(chan struct{}, 1024)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *introServer) serve(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	s.mu.Lock()
	hold, status, raw := s.hold, s.status, s.raw
	id, secret, ok := r.BasicAuth()
	if r.Method != http.MethodPost || !ok || id != introClient || secret != introSecret ||
		r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		s.bad = append(s.bad, r.Method+" "+r.Header.Get("Content-Type"))
	}
	s.mu.Unlock()
	n := s.inflight.Add(1)
	for m := s.maxInflight.Load(); n > m && !s.maxInflight.CompareAndSwap(m, n); m = s.maxInflight.Load() {
	}
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}
	// Counted out before the answer, which lets the client start another.
	s.inflight.Add(-1)
	if r.Context().Err() != nil {
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token_type_hint") != "access_token" {
		s.mu.Lock()
		s.bad = append(s.bad, "form")
		s.mu.Unlock()
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if raw != nil {
		_, _ = w.Write(raw)
		return
	}
	s.mu.Lock()
	a, ok := s.answers[r.PostForm.Get("token")]
	s.mu.Unlock()
	if !ok {
		a = map[string]any{"active": false}
	}
	_ = json.NewEncoder(w).Encode(a)
}

// answer makes token active with the default claims, which over replaces
// or (nil) removes.
func (s *introServer) answer(token string, over map[string]any) {
	a := map[string]any{
		"active": true, "iss": testIssuer, "aud": testAudience, "sub": "user-1", "client_id": "mobile-app",
		"scope": "orders:read profile", "iat": t0.Unix(), "exp": t0.Add(10 * time.Minute).Unix(), "token_type": "Bearer",
	}
	for k, v := range over {
		if v == nil {
			delete(a, k)
		} else {
			a[k] = v
		}
	}
	s.mu.Lock()
	s.answers[token] = a
	s.mu.Unlock()
}

func (s *introServer) set(f func(s *introServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *introServer) mistakes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
}

// newIntroVerifier builds a Verifier whose one issuer introspects at srv.
func newIntroVerifier(t testing.TB, clk *testClock, srv *introServer, mod func(*Config)) (*Verifier, *logSink) {
	t.Helper()
	logs := &logSink{}
	cfg := Config{
		Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Introspection: &Introspection{
			URL: srv.URL, ClientID: introClient, ClientSecret: introSecret,
		}}},
		Now:    clk.Now,
		Logger: logs.logger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	logs.Reset()
	return v, logs
}

func TestIntrospectionAcceptsActiveOpaqueToken(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, logs := newIntroVerifier(t, clk, srv, nil)
	srv.answer("opaque-token-1", map[string]any{"jti": "j-1", "acr": "urn:mfa", "cnf": nil})

	rec, reached, c := call(v.Handler, bearer("opaque-token-1"))
	require.True(t, reached, rec.Body.String()+logs.String())
	require.Equal(t, testIssuer, c.Issuer)
	require.Equal(t, "user-1", c.Subject)
	require.Equal(t, "mobile-app", c.ClientID)
	require.Equal(t, []string{"orders:read", "profile"}, c.Scopes)
	require.Equal(t, "j-1", c.ID)
	require.Equal(t, "urn:mfa", c.ACR)
	require.Equal(t, t0.Add(10*time.Minute), c.Expiry)
	var all map[string]any
	require.NoError(t, c.Decode(&all))
	require.Equal(t, "Bearer", all["token_type"], "Decode reads the whole response")
	require.Empty(t, srv.mistakes(), "POST, client_secret_basic, form with token_type_hint")
	require.EqualValues(t, 1, srv.calls.Load())
}

// TestIntrospectionRefusesAnswersThatFailChecks: an active answer is
// held to the JWT rules; each failure is a 401 invalid_token, like a bad
// JWT, never a 503.
func TestIntrospectionRefusesAnswersThatFailChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		over map[string]any
		want error
	}{
		{"inactive_revoked_token", map[string]any{"active": false}, ErrInactive},
		{"expired", map[string]any{"exp": t0.Add(-time.Minute).Unix(), "iat": t0.Add(-5 * time.Minute).Unix()}, ErrExpired},
		{"missing_exp", map[string]any{"exp": nil}, ErrExpired},
		{"other_issuers_token", map[string]any{"iss": "https://evil.example/"}, ErrIssuer},
		{"token_for_another_api", map[string]any{"aud": []string{"https://other-api.example.com"}}, ErrAudience},
		{"token_for_no_api", map[string]any{"aud": nil}, ErrAudience},
		{"refresh_token_as_access_token", map[string]any{"token_type": "refresh_token"}, ErrType},
		{"refresh_token_urn", map[string]any{"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, ErrType},
		{"not_yet_valid", map[string]any{"nbf": t0.Add(time.Hour).Unix(), "exp": t0.Add(time.Hour + time.Minute).Unix()}, ErrNotYetValid},
		{"long_lived_token", map[string]any{"exp": t0.Add(48 * time.Hour).Unix()}, ErrLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			srv := newIntroServer(t)
			v, logs := newIntroVerifier(t, clk, srv, nil)
			srv.answer("opaque-x", tc.over)
			rec, reached, _ := call(v.Handler, bearer("opaque-x"))
			require.False(t, reached)
			require.Equal(t, http.StatusUnauthorized, rec.Code)
			require.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`)
			require.Contains(t, rec.Body.String(), "The access token is invalid.")
			_, err := v.VerifyToken(t.Context(), "opaque-x")
			require.ErrorIs(t, err, tc.want)
			require.EqualValues(t, 1, srv.calls.Load(), "the rejection is cached: one call")
			require.Contains(t, logs.String(), `"event":"auth_failed"`)
		})
	}
}

func TestIntrospectionWithoutIssAndLifetimeWithoutIat(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, _ := newIntroVerifier(t, clk, srv, nil)
	srv.answer("no-iss-no-iat", map[string]any{"iss": nil, "iat": nil})
	c, err := v.VerifyToken(t.Context(), "no-iss-no-iat")
	require.NoError(t, err)
	require.Equal(t, testIssuer, c.Issuer, "iss is optional in RFC 7662; the issuer introspected is the issuer")
}

func TestIntrospectionInsufficientScopeAndStepUp(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, _ := newIntroVerifier(t, clk, srv, nil)
	srv.answer("opaque-reader", nil)

	rec, reached, _ := call(v.Require("admin"), bearer("opaque-reader"))
	require.False(t, reached)
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="insufficient_scope", scope="admin"`)

	rec, reached, _ = call(v.Require("orders:read"), bearer("opaque-reader"))
	require.True(t, reached, rec.Body.String())

	rec, reached, _ = call(v.RequireWith(Requirement{ACRValues: []string{"urn:mfa"}}), bearer("opaque-reader"))
	require.False(t, reached)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="insufficient_user_authentication"`)
	require.EqualValues(t, 1, srv.calls.Load())
}

// TestIntrospectionDPoPBoundOpaqueToken: cnf.jkt from the answer binds
// the token to the DPoP key exactly as a JWT's does.
func TestIntrospectionDPoPBoundOpaqueToken(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	device := newSigner(t, jwa.ES256, "device")
	other := newSigner(t, jwa.ES256, "other")
	v, logs := newIntroVerifier(t, clk, srv, func(c *Config) { c.DPoP, c.DPoPURL = DPoPAllowed, apiBase })
	token := "opaque-bound-token"
	srv.answer(token, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})

	t.Run("proof_of_the_bound_key", func(t *testing.T) {
		r := dpopRequest("GET", "/orders", token, proof(t, device, "GET", apiBase+"/orders", token, t0, nil))
		rec, reached, c := call(v.Handler, r)
		require.True(t, reached, rec.Body.String()+logs.String())
		require.Equal(t, jkt(t, device), c.KeyThumbprint)
	})
	t.Run("stolen_token_without_proof", func(t *testing.T) {
		rec, reached, _ := call(v.Handler, dpopRequest("GET", "/orders", token, ""))
		require.False(t, reached)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	})
	t.Run("stolen_token_as_bearer", func(t *testing.T) {
		rec, reached, _ := call(v.Handler, bearer(token))
		require.False(t, reached)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	})
	t.Run("stolen_token_with_attackers_key", func(t *testing.T) {
		r := dpopRequest("GET", "/orders", token, proof(t, other, "GET", apiBase+"/orders", token, t0, map[string]any{"jti": "other-1"}))
		rec, reached, _ := call(v.Handler, r)
		require.False(t, reached)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	})
	require.EqualValues(t, 1, srv.calls.Load())
}

// TestIntrospectionOutageIs503NotInvalid: an endpoint that gives no
// answer gets valid tokens 503 with Retry-After, never 401; calls back
// off with the key-set schedule; Ready names the issuer and the cause,
// and probes once the schedule allows.
func TestIntrospectionOutageIs503NotInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *introServer)
		cause string
	}{
		{"status_500", func(s *introServer) { s.status = 500 }, "returned 500"},
		{"status_401_bad_credentials", func(s *introServer) { s.status = 401 }, "returned 401"},
		{"not_json", func(s *introServer) { s.raw = []byte("<html>maintenance</html>") }, "not a JSON object"},
		{"truncated_json", func(s *introServer) { s.raw = []byte(`{"active":tr`) }, "not JSON"},
		{"no_active", func(s *introServer) { s.raw = []byte(`{"sub":"x"}`) }, "no boolean active"},
		{"active_as_string", func(s *introServer) { s.raw = []byte(`{"active":"true"}`) }, "introspection response"},
		{"oversize_body", func(s *introServer) { s.raw = []byte(`{"active":false,"pad":"` + strings.Repeat("x", 20<<10) + `"}`) }, "MaxResponseSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			srv := newIntroServer(t)
			srv.answer("valid-token", nil)
			v, logs := newIntroVerifier(t, clk, srv, func(c *Config) { c.Rand = zeroReader{} })
			srv.set(tc.setup)

			rec, reached, _ := call(v.Handler, bearer("valid-token"))
			require.False(t, reached)
			require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
			require.Equal(t, "1", rec.Header().Get("Retry-After"))
			require.Contains(t, logs.String(), `"event":"introspection_error"`)
			require.Contains(t, logs.String(), `"reason":"introspection_unavailable"`)
			require.Contains(t, logs.String(), `"event":"introspection_error","reason":"call"`)
			require.Contains(t, logs.String(), tc.cause)
			require.EqualValues(t, 1, srv.calls.Load())

			// Within the back-off: 503 at once, no call, nothing cached.
			_, err := v.VerifyToken(t.Context(), "valid-token")
			require.ErrorIs(t, err, ErrKeysUnavailable)
			require.EqualValues(t, 1, srv.calls.Load())
			err = v.Ready(t.Context())
			require.ErrorIs(t, err, ErrKeysUnavailable)
			require.ErrorContains(t, err, "introspection endpoint of "+testIssuer)
			require.ErrorContains(t, err, tc.cause)
			require.EqualValues(t, 1, srv.calls.Load(), "Ready makes no call before the schedule allows")

			// The endpoint is back; after the back-off Ready's probe finds it.
			srv.set(func(s *introServer) { s.status, s.raw = 0, nil })
			clk.Advance(time.Second)
			require.NoError(t, v.Ready(t.Context()))
			require.EqualValues(t, 2, srv.calls.Load())
			c, err := v.VerifyToken(t.Context(), "valid-token")
			require.NoError(t, err)
			require.Equal(t, "user-1", c.Subject)
			require.NotContains(t, logs.String(), introSecret)
		})
	}
}

func TestIntrospectionBackoffDoublesWithJitter(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	srv.set(func(s *introServer) { s.status = 503 })
	v, _ := newIntroVerifier(t, clk, srv, func(c *Config) { c.Rand = zeroReader{} })
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		_, err := v.VerifyToken(t.Context(), fmt.Sprintf("tok-%d", i))
		ue, ok := errors.AsType[*UnavailableError](err)
		require.True(t, ok, "%v", err)
		require.Equal(t, wait, ue.RetryAfter)
		require.EqualValues(t, i+1, srv.calls.Load())
		clk.Advance(wait - time.Millisecond)
		_, err = v.VerifyToken(t.Context(), "another-token")
		require.ErrorIs(t, err, ErrKeysUnavailable)
		require.EqualValues(t, i+1, srv.calls.Load(), "no call before the back-off ends")
		clk.Advance(time.Millisecond)
	}
	v2, _ := newIntroVerifier(t, clk, srv, func(c *Config) { c.Rand = onesReader{} })
	_, err := v2.VerifyToken(t.Context(), "x")
	ue, _ := errors.AsType[*UnavailableError](err)
	require.Greater(t, ue.RetryAfter, time.Second, "jitter adds up to half again")
	require.Less(t, ue.RetryAfter, 1500*time.Millisecond+time.Millisecond)
}

type onesReader struct{}

func (onesReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xff
	}
	return len(p), nil
}

func TestIntrospectionServerDownIs503(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, _ := newIntroVerifier(t, clk, srv, nil)
	srv.Close()
	rec, reached, _ := call(v.Handler, bearer("valid-token"))
	require.False(t, reached)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.ErrorContains(t, v.Ready(t.Context()), "connect")
}

// TestIntrospectionSlowEndpointBoundedByTimeout: a hung endpoint costs a
// request Introspection.Timeout, then 503.
func TestIntrospectionSlowEndpointBoundedByTimeout(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	srv.set(func(s *introServer) { s.hold = hold })
	srv.answer("valid-token", nil)
	v, logs := newIntroVerifier(t, clk, srv, func(c *Config) { c.Issuers[0].Introspection.Timeout = 50 * time.Millisecond })
	_, err := v.VerifyToken(t.Context(), "valid-token")
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, logs.String(), "introspection_error")
}

func TestIntrospectionCacheHitMakesNoCall(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, _ := newIntroVerifier(t, clk, srv, func(c *Config) { c.Issuers[0].Introspection.CacheTTL = 2 * time.Minute })
	srv.answer("opaque-1", nil)
	for range 5 {
		_, err := v.VerifyToken(t.Context(), "opaque-1")
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, srv.calls.Load())
	clk.Advance(2*time.Minute - time.Millisecond)
	_, err := v.VerifyToken(t.Context(), "opaque-1")
	require.NoError(t, err)
	require.EqualValues(t, 1, srv.calls.Load())
	clk.Advance(time.Millisecond)
	_, err = v.VerifyToken(t.Context(), "opaque-1")
	require.NoError(t, err)
	require.EqualValues(t, 2, srv.calls.Load(), "no longer than CacheTTL: a revocation is seen within it")

	// Never past exp: a token with a minute left is cached a minute.
	srv.answer("short-lived", map[string]any{"exp": clk.Now().Add(time.Minute).Unix()})
	_, err = v.VerifyToken(t.Context(), "short-lived")
	require.NoError(t, err)
	e, ok := v.intro.cache.Get(sha256.Sum256([]byte("short-lived")))
	require.True(t, ok)
	require.Equal(t, clk.Now().Add(time.Minute).Truncate(time.Second), e.until)
}

// TestIntrospectionRevokedTokenInactiveCachedBriefly: inactive answers
// are cached for InactiveCacheTTL, then asked again.
func TestIntrospectionRevokedTokenInactiveCachedBriefly(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, _ := newIntroVerifier(t, clk, srv, nil)
	for range 3 {
		_, err := v.VerifyToken(t.Context(), "revoked")
		require.ErrorIs(t, err, ErrInactive)
	}
	require.EqualValues(t, 1, srv.calls.Load())
	clk.Advance(10 * time.Second)
	_, err := v.VerifyToken(t.Context(), "revoked")
	require.ErrorIs(t, err, ErrInactive)
	require.EqualValues(t, 2, srv.calls.Load(), "default InactiveCacheTTL 10s")
}

func TestIntrospectionConcurrentFirstRequestsMakeOneCall(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	hold := make(chan struct{})
	srv.set(func(s *introServer) { s.hold = hold })
	srv.answer("popular", nil)
	v, _ := newIntroVerifier(t, clk, srv, nil)
	const n = 64
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := v.VerifyToken(context.Background(), "popular")
			errs <- err
		}()
	}
	// Release the endpoint once a call has arrived; goroutines that
	// start later join the call or find the cache.
	<-srv.arrived
	close(hold)
	for range n {
		require.NoError(t, <-errs)
	}
	require.EqualValues(t, 1, srv.calls.Load())
}

// TestIntrospectionTokenNeverInLogsOrCacheKeys: neither the token nor
// its plain SHA-256 appears in a log line, a shared cache key or value.
func TestIntrospectionTokenNeverInLogsOrCacheKeys(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	shared := newMemIntroCache()
	v, logs := newIntroVerifier(t, clk, srv, func(c *Config) { c.Issuers[0].Introspection.Cache = shared })
	tokens := []string{"secret-opaque-valid", "secret-opaque-wrong-aud", "secret-opaque-inactive", "secret-opaque-outage"}
	srv.answer(tokens[0], nil)
	srv.answer(tokens[1], map[string]any{"aud": "other"})
	for _, tok := range tokens[:3] {
		_, _, _ = call(v.Handler, bearer(tok))
	}
	srv.set(func(s *introServer) { s.status = 500 })
	_, _, _ = call(v.Handler, bearer(tokens[3]))
	require.Len(t, shared.keys(), 7, "3 results and 4 locks; none for the outage")
	for _, tok := range tokens {
		sum := sha256.Sum256([]byte(tok))
		forms := []string{tok, hex.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:])}
		for _, f := range forms {
			require.NotContains(t, logs.String(), f)
			for _, k := range shared.keys() {
				require.NotContains(t, k, f)
				require.NotContains(t, string(shared.get(k)), f)
			}
		}
	}
	require.NotContains(t, logs.String(), introSecret)
	require.NotContains(t, fmt.Sprintf("%v %+v %#v", v.cfg.Issuers, v.cfg.Issuers[0].Introspection, *v.cfg.Issuers[0].Introspection), introSecret)
}

// memIntroCache is an in-memory IntrospectionCache and
// IntrospectionLocker, as instances sharing Redis see it.
type memIntroCache struct {
	mu    sync.Mutex
	vals  map[string][]byte
	locks map[string]bool
	fail  bool
	gets  int
}

func newMemIntroCache() *memIntroCache {
	return &memIntroCache{vals: map[string][]byte{}, locks: map[string]bool{}}
}

func (m *memIntroCache) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	if m.fail {
		return nil, false, errors.New("cache down")
	}
	v, ok := m.vals[key]
	return v, ok, nil
}

func (m *memIntroCache) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("cache down")
	}
	m.vals[key] = value
	return nil
}

func (m *memIntroCache) TryLock(_ context.Context, key string, ttl time.Duration) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return nil, errors.New("cache down")
	}
	if m.locks[key] {
		return nil, nil
	}
	m.locks[key] = true
	m.vals[key] = nil // visible to keys(), as Redis shows a lock key
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.locks, key)
	}, nil
}

func (m *memIntroCache) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for k := range m.vals {
		ks = append(ks, k)
	}
	return ks
}

func (m *memIntroCache) get(k string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vals[k]
}

// TestIntrospectionSharedCacheOneCallForAllInstances: four Verifiers
// sharing a cache with a lock make one call for a token that many
// goroutines present to all of them at once.
func TestIntrospectionSharedCacheOneCallForAllInstances(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	srv.answer("shared-token", nil)
	shared := newMemIntroCache()
	var vs []*Verifier
	for range 4 {
		v, _ := newIntroVerifier(t, clk, srv, func(c *Config) { c.Issuers[0].Introspection.Cache = shared })
		vs = append(vs, v)
	}
	const per = 16
	errs := make(chan error, 4*per)
	for _, v := range vs {
		for range per {
			go func() {
				_, err := v.VerifyToken(context.Background(), "shared-token")
				errs <- err
			}()
		}
	}
	for range 4 * per {
		require.NoError(t, <-errs)
	}
	require.EqualValues(t, 1, srv.calls.Load())
}

// TestIntrospectionSharedCacheDownFallsBack: a failing shared cache is
// skipped: each instance calls the endpoint itself, once per token.
func TestIntrospectionSharedCacheDownFallsBack(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	srv.answer("tok", nil)
	shared := newMemIntroCache()
	shared.fail = true
	a, logs := newIntroVerifier(t, clk, srv, func(c *Config) { c.Issuers[0].Introspection.Cache = shared })
	b, _ := newIntroVerifier(t, clk, srv, func(c *Config) { c.Issuers[0].Introspection.Cache = shared })
	for range 3 {
		for _, v := range []*Verifier{a, b} {
			_, err := v.VerifyToken(t.Context(), "tok")
			require.NoError(t, err)
		}
	}
	require.EqualValues(t, 2, srv.calls.Load(), "one call per instance")
	require.Contains(t, logs.String(), "introspection_cache_error")
}

// TestIntrospectionSharedEntryNeverOutlivesItsFirstTTL: an instance that
// reads a shared result keeps it no longer than the instance that stored
// it said.
func TestIntrospectionSharedEntryNeverOutlivesItsFirstTTL(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	srv.answer("tok", nil)
	shared := newMemIntroCache()
	mod := func(c *Config) {
		c.Issuers[0].Introspection.Cache = shared
		c.Issuers[0].Introspection.CacheTTL = time.Minute
	}
	a, _ := newIntroVerifier(t, clk, srv, mod)
	b, _ := newIntroVerifier(t, clk, srv, mod)
	_, err := a.VerifyToken(t.Context(), "tok")
	require.NoError(t, err)
	clk.Advance(50 * time.Second)
	_, err = b.VerifyToken(t.Context(), "tok")
	require.NoError(t, err)
	require.EqualValues(t, 1, srv.calls.Load())
	e, ok := b.intro.cache.Get(sha256.Sum256([]byte("tok")))
	require.True(t, ok)
	require.True(t, t0.Add(time.Minute).Equal(e.until), "%v", e.until)
}

func TestIntrospectionMalformedTokensMakeNoCall(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	v, _ := newIntroVerifier(t, clk, srv, nil)
	for _, tok := range []string{"a,b", "%41", "tok=en", "=", "tök", "a\x00b", strings.Repeat("a", 9<<10)} {
		_, err := v.VerifyToken(t.Context(), tok)
		require.ErrorIs(t, err, ErrMalformedToken, "%q", tok)
	}
	require.Zero(t, srv.calls.Load())
}

// TestIntrospectionJWTsStayLocalUnlessAsked: with an introspecting
// issuer beside a JWT issuer, JWTs are verified with keys (no call) and
// opaque tokens go to the introspecting issuer; with JWTs set, that
// issuer's JWTs are introspected.
func TestIntrospectionJWTsStayLocalUnlessAsked(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	s := newSigner(t, jwa.ES256, "k1")
	const opaqueIssuer = "https://opaque.example.com/"
	v, logs := newIntroVerifier(t, clk, srv, func(c *Config) {
		c.Issuers[0].Issuer = opaqueIssuer
		c.Issuers = append(c.Issuers, Issuer{Issuer: testIssuer, Audience: []string{testAudience}, Keys: jwkSet(t, s)})
	})
	jwt := s.token(t, nil)
	c, err := v.VerifyToken(t.Context(), jwt)
	require.NoError(t, err, logs.String())
	require.Equal(t, testIssuer, c.Issuer)
	require.Zero(t, srv.calls.Load())
	srv.answer("opaque", map[string]any{"iss": opaqueIssuer})
	c, err = v.VerifyToken(t.Context(), "opaque")
	require.NoError(t, err)
	require.Equal(t, opaqueIssuer, c.Issuer)
	require.EqualValues(t, 1, srv.calls.Load())
	forged := s.token(t, map[string]any{"iss": opaqueIssuer})
	_, err = v.VerifyToken(t.Context(), forged)
	require.ErrorIs(t, err, ErrUnknownKey, "a JWT claiming the opaque issuer has no key to verify it")

	srv2 := newIntroServer(t)
	v2, _ := newIntroVerifier(t, clk, srv2, func(c *Config) { c.Issuers[0].Introspection.JWTs = true })
	srv2.answer(jwt, nil)
	_, err = v2.VerifyToken(t.Context(), jwt)
	require.NoError(t, err)
	require.EqualValues(t, 1, srv2.calls.Load(), "with JWTs the endpoint decides")
	_, err = v2.VerifyToken(t.Context(), s.token(t, map[string]any{"jti": "revoked"}))
	require.ErrorIs(t, err, ErrInactive)
}

func TestIntrospectionConfigRefusesAmbiguityAndLeaks(t *testing.T) {
	in := func() *Introspection {
		return &Introspection{URL: "https://idp.example/introspect", ClientID: "rs", ClientSecret: introSecret}
	}
	s := newSigner(t, jwa.ES256, "k1")
	for _, tc := range []struct {
		name    string
		issuers []Issuer
		want    string
	}{
		{"two_introspecting_issuers", []Issuer{
			{Issuer: "a", Audience: []string{"x"}, Introspection: in()},
			{Issuer: "b", Audience: []string{"x"}, Introspection: in()},
		}, "at most one issuer may introspect"},
		{"cleartext_endpoint", []Issuer{{Issuer: "a", Audience: []string{"x"}, Introspection: &Introspection{URL: "http://idp.example/introspect", ClientID: "rs", ClientSecret: "s"}}}, "https URL"},
		{"credentials_in_url", []Issuer{{Issuer: "a", Audience: []string{"x"}, Introspection: &Introspection{URL: "https://rs:pw@idp.example/i", ClientID: "rs", ClientSecret: "s"}}}, "without user info"},
		{"no_secret", []Issuer{{Issuer: "a", Audience: []string{"x"}, Introspection: &Introspection{URL: "https://idp.example/i", ClientID: "rs"}}}, "ClientSecret are required"},
		{"jwts_and_keys", []Issuer{{Issuer: "a", Audience: []string{"x"}, Keys: jwkSet(t, s), Introspection: &Introspection{URL: "https://idp.example/i", ClientID: "rs", ClientSecret: "s", JWTs: true}}}, "never be used"},
		{"no_audience", []Issuer{{Issuer: "a", Introspection: in()}}, "Audience is required"},
		{"no_keys_no_introspection_issuer_not_discoverable", []Issuer{{Issuer: "a", Audience: []string{"x"}}}, "to discover its jwks_uri"},
		{"negative_timeout", []Issuer{{Issuer: "a", Audience: []string{"x"}, Introspection: &Introspection{URL: "https://idp.example/i", ClientID: "rs", ClientSecret: "s", Timeout: -1}}}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Issuers: tc.issuers, Logger: slog.New(slog.DiscardHandler)})
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), introSecret)
		})
	}
	// Loopback http is allowed, and the caller's Introspection is not
	// modified by the defaults.
	mine := &Introspection{URL: "http://127.0.0.1:1/introspect", ClientID: "rs", ClientSecret: "s"}
	v, err := New(Config{Issuers: []Issuer{{Issuer: "a", Audience: []string{"x"}, Introspection: mine}}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer v.Close()
	require.Zero(t, mine.Timeout)
	require.Equal(t, 2*time.Second, v.cfg.Issuers[0].Introspection.Timeout)
}

func TestLooksLikeJWT(t *testing.T) {
	s := newSigner(t, jwa.ES256, "k1")
	for tok, want := range map[string]bool{
		s.token(t, nil):              true,
		"eyJhbGciOiJub25lIn0.e30.":   true,
		"IHsiYWxnIjoibm9uZSJ9.e30.x": true, // " {" : whitespace before the object
		"opaque":                     false,
		"a.b.c":                      false,
		"ya29.a0AfH6SM.xyz":          false,
		"eyJ.e30.x":                  false,
		"":                           false,
		"eyJhbGciOiJub25lIn0.e30":    false,
	} {
		require.Equal(t, want, looksLikeJWT(tok), "%q", tok)
	}
}

func TestIntrospectionWaitReadyStopsOnBadCredentials(t *testing.T) {
	srv := newIntroServer(t)
	srv.set(func(s *introServer) { s.status = 401 })
	v, _ := newIntroVerifier(t, testkit.NewClock(t0), srv, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := v.WaitReady(ctx)
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.ErrorContains(t, err, "returned 401")

	srv.set(func(s *introServer) { s.status = 0 })
	v2, _ := newIntroVerifier(t, testkit.NewClock(t0), srv, nil)
	require.NoError(t, v2.WaitReady(t.Context()), "a probe with a random token gets an answer")
}

// TestIntrospectionFloodOfNewTokensBoundedByMaxConcurrent: a flood of
// tokens never seen makes at most MaxConcurrent calls at once; the others
// wait for a slot (within Timeout).
func TestIntrospectionFloodOfNewTokensBoundedByMaxConcurrent(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	hold := make(chan struct{})
	srv.set(func(s *introServer) { s.hold = hold })
	v, _ := newIntroVerifier(t, clk, srv, func(c *Config) {
		c.Issuers[0].Introspection.MaxConcurrent = 3
		c.Issuers[0].Introspection.Timeout = time.Minute
	})
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := v.VerifyToken(context.Background(), fmt.Sprintf("flood-%d", i))
			errs <- err
		}()
	}
	for range 3 {
		<-srv.arrived
	}
	close(hold)
	for range n {
		require.ErrorIs(t, <-errs, ErrInactive)
	}
	require.EqualValues(t, n, srv.calls.Load())
	require.EqualValues(t, 3, srv.maxInflight.Load(), "never more than MaxConcurrent calls at once")
}

// TestIntrospectionReadyKeepsServingCachedAnswers: once the endpoint has
// answered, an outage makes Ready fail only after CacheTTL, while cached
// answers still serve: the readiness probe does not take every instance
// out of service when the endpoint blinks.
func TestIntrospectionReadyKeepsServingCachedAnswers(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	srv.answer("cached", nil)
	v, _ := newIntroVerifier(t, clk, srv, func(c *Config) {
		c.Rand = zeroReader{}
		c.Issuers[0].Introspection.CacheTTL = 2 * time.Minute
	})
	require.NoError(t, v.Ready(t.Context()), "probe answered")
	_, err := v.VerifyToken(t.Context(), "cached")
	require.NoError(t, err)
	srv.set(func(s *introServer) { s.status = 502 })
	_, err = v.VerifyToken(t.Context(), "new-token")
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.NoError(t, v.Ready(t.Context()), "within CacheTTL of the first failure")
	clk.Advance(2*time.Minute - time.Second)
	_, err = v.VerifyToken(t.Context(), "cached")
	require.NoError(t, err, "the cached answer still serves")
	require.NoError(t, v.Ready(t.Context()))
	clk.Advance(time.Second + time.Millisecond)
	err = v.Ready(t.Context())
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.ErrorContains(t, err, "introspection endpoint of "+testIssuer+": POST "+srv.URL+" returned 502")
}
