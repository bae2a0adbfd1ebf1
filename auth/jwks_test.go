package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/stretchr/testify/require"
)

// jwksServer is an in-test JWKS endpoint that can rotate keys, fail and
// serve garbage.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	cc      string
	flaps   bool // every other fetch from now on answers 502
	fetches atomic.Int32
}

func newJWKSServer(t testing.TB, signers ...*signer) *jwksServer {
	t.Helper()
	s := &jwksServer{status: 200}
	s.serveKeys(t, signers...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.flaps && n%2 == 0 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if s.cc != "" {
			w.Header().Set("Cache-Control", s.cc)
		}
		w.WriteHeader(s.status)
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serveKeys(t testing.TB, signers ...*signer) {
	b, err := json.Marshal(jwkSet(t, signers...))
	require.NoError(t, err)
	s.serve(200, b)
}

// flap makes every other fetch fail, starting with the next but one
// (counting from the first fetch ever: even fetches fail).
func (s *jwksServer) flap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flaps = true
}

func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func newRemoteVerifier(t *testing.T, clk *testClock, url string, mod func(*Config)) (*Verifier, *logSink) {
	t.Helper()
	logs := &logSink{}
	cfg := Config{
		Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: url}},
		Now:     clk.Now,
		Logger:  logs.logger(),
		// Requests wait for a loopback fetch until it ends, however slow
		// the machine: the tests count fetches and read the outcome of
		// each, without timing.
		MaxKeyWait: time.Minute,
		Rand:       zeroReader{}, // no jitter: the schedule is exact
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v, logs
}

// zeroReader reads zeros: back-off without jitter.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestJWKSRotation(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	b := newSigner(t, jwa.ES256, "key-b")
	srv := newJWKSServer(t, a)
	v, logs := newRemoteVerifier(t, clk, srv.URL, nil)

	_, err := v.VerifyToken(t.Context(), a.token(t, nil))
	require.NoError(t, err)
	require.Equal(t, 1, v.cache.Len())

	// The issuer rotates to key b. A token signed with b has an unknown
	// kid: one refresh (the clock is past MinKeyRefresh) finds it.
	srv.serveKeys(t, b)
	clk.Advance(2 * time.Minute)
	tokB := b.token(t, map[string]any{"iat": clk.Now().Unix(), "exp": clk.Now().Add(5 * time.Minute).Unix()})
	_, err = v.VerifyToken(t.Context(), tokB)
	require.NoError(t, err)
	require.Equal(t, 1, v.cache.Len(), "cache cleared when keys rotated, then b cached")
	require.Contains(t, logs.String(), `"event":"jwks_refresh"`)

	// Key a is gone: its tokens no longer verify once uncached.
	_, err = v.VerifyToken(t.Context(), a.token(t, map[string]any{"jti": "other", "iat": clk.Now().Unix(), "exp": clk.Now().Add(5 * time.Minute).Unix()}))
	require.ErrorIs(t, err, ErrUnknownKey)
}

func TestJWKSUnknownKidFlood(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newJWKSServer(t, a)
	v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
	_, err := v.VerifyToken(t.Context(), a.token(t, nil))
	require.NoError(t, err)
	base := srv.fetches.Load()

	// 500 random kids, from 10 goroutines, twice over a MinKeyRefresh
	// boundary: at most one fetch per interval, and a known kid keeps
	// verifying throughout.
	for round := range 2 {
		var wg sync.WaitGroup
		for g := range 10 {
			kids := make([]string, 50)
			for i := range kids {
				kids[i] = fmt.Sprintf("bogus-%d-%d-%d", round, g, i)
			}
			toks := forgedKids(t, a, t0, kids...)
			wg.Go(func() {
				for i, tok := range toks {
					_, err := v.VerifyToken(t.Context(), tok)
					if !assertIs(err, ErrUnknownKey) {
						t.Errorf("kid %s: %v", kids[i], err)
					}
				}
			})
		}
		_, err := v.VerifyToken(t.Context(), a.token(t, map[string]any{"jti": fmt.Sprint(round)}))
		require.NoError(t, err)
		wg.Wait()
		clk.Advance(2 * time.Minute)
	}
	require.LessOrEqual(t, srv.fetches.Load()-base, int32(2), "at most one fetch per MinKeyRefresh")
	require.Positive(t, srv.fetches.Load()-base, "an unknown kid did trigger a refresh")
}

func assertIs(err, target error) bool {
	return err != nil && strings.Contains(err.Error(), target.Error())
}

func TestJWKSOutage(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newJWKSServer(t, a)
	v, logs := newRemoteVerifier(t, clk, srv.URL, func(c *Config) {
		c.TokenCacheSize = -1
		c.MaxKeyStaleness = time.Hour
	})
	_, err := v.VerifyToken(t.Context(), a.token(t, nil))
	require.NoError(t, err)

	srv.serve(http.StatusInternalServerError, []byte("down"))
	clk.Advance(30 * time.Minute)
	tok := a.token(t, map[string]any{"iat": clk.Now().Unix(), "exp": clk.Now().Add(5 * time.Minute).Unix()})
	_, err = v.VerifyToken(t.Context(), tok)
	require.NoError(t, err, "last good keys keep serving within MaxKeyStaleness")

	clk.Advance(31 * time.Minute) // past MaxKeyStaleness since the last good fetch
	tok = a.token(t, map[string]any{"iat": clk.Now().Unix(), "exp": clk.Now().Add(5 * time.Minute).Unix()})
	rec, reached, _ := call(v.Handler, bearer(tok))
	require.False(t, reached)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "never 401 for an outage")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Empty(t, rec.Header().Get("WWW-Authenticate"))
	require.Contains(t, rec.Body.String(), "keys-unavailable")
	require.Contains(t, logs.String(), `"reason":"keys_unavailable"`)

	// The JWKS comes back: the request that retries when Retry-After says
	// finds the next fetch, which restores service.
	srv.serveKeys(t, a)
	retry, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	require.NoError(t, err)
	clk.Advance(time.Duration(retry) * time.Second)
	_, err = v.VerifyToken(t.Context(), tok)
	require.NoError(t, err)
}

func TestJWKSGarbage(t *testing.T) {
	a := newSigner(t, jwa.ES256, "key-a")
	good, err := json.Marshal(a.pub)
	require.NoError(t, err)
	tests := []struct {
		name      string
		status    int
		body      string
		wantErr   error
		wantLog   string
		maxJWKS   int64
		wantEvent string
	}{
		{name: "not_json", status: 200, body: "<html>", wantErr: ErrKeysUnavailable},
		{name: "no_keys_member", status: 200, body: `{"foo":[]}`, wantErr: ErrKeysUnavailable},
		{name: "empty_set", status: 200, body: `{"keys":[]}`, wantErr: ErrKeysUnavailable},
		{name: "status_404", status: 404, body: `{"keys":[` + string(good) + `]}`, wantErr: ErrKeysUnavailable},
		{name: "oversize", status: 200, body: `{"keys":[` + string(good) + `],"pad":"` + strings.Repeat("x", 2048) + `"}`, maxJWKS: 1024, wantErr: ErrKeysUnavailable},
		{name: "one_malformed_key_skipped", status: 200, body: `{"keys":[{"kty":"EC","crv":"P-256","x":"bad"},` + string(good) + `]}`, wantEvent: "jwks_key_skipped"},
		{name: "symmetric_key_skipped", status: 200, body: `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"key-a"},` + string(good) + `]}`, wantEvent: "jwks_key_skipped"},
		{name: "encryption_key_skipped", status: 200, body: `{"keys":[` + strings.Replace(string(good), `{`, `{"use":"enc",`, 1) + `]}`, wantErr: ErrKeysUnavailable},
		{name: "private_key_used_as_public", status: 200, body: func() string {
			k, _ := jwk.FromRaw(a.priv)
			_ = k.Set(jwk.KeyIDKey, "key-a")
			b, _ := json.Marshal(k)
			return `{"keys":[` + string(b) + `]}`
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			srv := newJWKSServer(t)
			srv.serve(tt.status, []byte(tt.body))
			v, logs := newRemoteVerifier(t, clk, srv.URL, func(c *Config) { c.MaxJWKSSize = tt.maxJWKS })
			_, err := v.VerifyToken(t.Context(), a.token(t, nil))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Contains(t, logs.String(), `"event":"jwks_error"`)
				return
			}
			require.NoError(t, err)
			if tt.wantEvent != "" {
				require.Contains(t, logs.String(), `"event":"`+tt.wantEvent+`"`)
			}
		})
	}
}

func TestJWKSUnreachableAtStart(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newJWKSServer(t, a)
	url := srv.URL
	srv.Close()
	v, _ := newRemoteVerifier(t, clk, url, func(c *Config) { c.FetchTimeout = time.Second })
	rec, reached, _ := call(v.Handler, bearer(a.token(t, nil)))
	require.False(t, reached)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
}

func TestMaxAgeClamped(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newJWKSServer(t, newSigner(t, jwa.ES256, "k"))
	v, _ := newRemoteVerifier(t, clk, srv.URL, func(c *Config) {
		c.MinKeyRefresh = time.Minute
		c.MaxKeyRefresh = time.Hour
	})
	ik := v.issuers[testIssuer]
	require.Equal(t, time.Hour, ik.maxAge(""))
	require.Equal(t, 10*time.Minute, ik.maxAge("public, max-age=600"))
	require.Equal(t, time.Minute, ik.maxAge("max-age=1"))
	require.Equal(t, time.Hour, ik.maxAge("max-age=999999"))
	require.Equal(t, time.Hour, ik.maxAge("max-age=-5"))
}

func TestCloseStopsBackgroundWork(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newJWKSServer(t, newSigner(t, jwa.ES256, "k"))
	cfg := Config{Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{"a"}, JWKSURL: srv.URL}}, Now: clk.Now, Logger: (&logSink{}).logger()}
	v, err := New(cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return srv.fetches.Load() >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, v.Close())
	require.NoError(t, v.Close(), "idempotent")
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	require.NotContains(t, stacks, "auth.(*issuerKeys)", "no refresh goroutine survives Close")
}
