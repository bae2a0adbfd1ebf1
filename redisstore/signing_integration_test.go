package redisstore_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/signing"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestSignedReplayAcrossVerifiers: two API instances share Redis; a signed
// request accepted by one is refused by the other, a capture replayed
// after newer traffic is refused, and a Redis outage is a 503.
func TestSignedReplayAcrossVerifiers(t *testing.T) {
	srv := redistest.Start(t)
	secret := bytes.Repeat([]byte{42}, 32)
	clock := time.Now() // the servers' and the device's, which moves on below
	newInstance := func() *signing.Verifier {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
		t.Cleanup(func() { _ = rdb.Close() })
		v, err := signing.New(signing.Config{
			Keys:        signing.StaticKeys(map[string][]byte{"device-1": secret}),
			ReplayStore: redisstore.NewReplayStore(rdb, redisstore.Options{Timeout: testTimeout}),
			Now:         func() time.Time { return clock },
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		return v
	}
	a, b := newInstance(), newInstance()
	signer := signing.NewSigner("device-1", secret)
	signer.Now = func() time.Time { return clock }
	sign := func(body string) (*http.Request, []byte) {
		r, err := http.NewRequest("POST", "https://api.example.com/v1/pay", bytes.NewReader([]byte(body)))
		require.NoError(t, err)
		require.NoError(t, signer.Sign(r))
		return r, []byte(body)
	}
	serve := func(v *signing.Verifier, r *http.Request, body []byte) int {
		sr := httptest.NewRequest(r.Method, r.URL.String(), bytes.NewReader(body))
		sr.Header = r.Header.Clone()
		rec := httptest.NewRecorder()
		v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })).ServeHTTP(rec, sr)
		return rec.Code
	}

	r1, body1 := sign(`{"amount":1}`)
	require.Equal(t, 200, serve(a, r1, body1))
	require.Equal(t, 401, serve(b, r1, body1), "replay on the other instance")

	old, oldBody := sign(`{"amount":2}`) // captured, never delivered
	clock = clock.Add(30 * time.Second)
	r3, body3 := sign(`{"amount":3}`)
	require.Equal(t, 200, serve(b, r3, body3))
	require.Equal(t, 401, serve(a, old, oldBody), "capture replayed after newer traffic")

	srv.Stop()
	clock = clock.Add(time.Second)
	r4, body4 := sign(`{"amount":4}`)
	require.Equal(t, http.StatusServiceUnavailable, serve(a, r4, body4), "store down: fail closed")
}

// TestSigningFutureCreatedOnRedis is future_created_floods_floor on
// Redis, and mark_inflated_across_verifiers: one device key floods
// signatures dated FutureSkew ahead while another key's signatures at the
// server's unmoving clock all pass (nonces live until expiry: nothing is
// evicted, there is no floor); and a second verifier on the same Redis,
// whose key space holds the same key ID for another device, is not held
// back by the first's flood when each has its namespace.
func TestSigningFutureCreatedOnRedis(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
	t.Cleanup(func() { _ = rdb.Close() })
	store := redisstore.NewReplayStore(rdb, redisstore.Options{Timeout: testTimeout})
	clock := time.Now().Truncate(time.Second)
	now := func() time.Time { return clock }
	attackerSecret, honestSecret := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	newVerifier := func(ns string, keys map[string][]byte) *signing.Verifier {
		v, err := signing.New(signing.Config{
			Keys:        signing.StaticKeys(keys),
			ReplayStore: store.WithNamespace(ns),
			Now:         now,
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		return v
	}
	// API A: the attacker's own device-42, and an honest device-7.
	// API B: another device-42, honest, with its own secret.
	apiA := newVerifier("api-a", map[string][]byte{"device-42": attackerSecret, "device-7": honestSecret})
	apiB := newVerifier("api-b", map[string][]byte{"device-42": honestSecret})
	sign := func(keyID string, secret []byte, at time.Time) *http.Request {
		s := signing.NewSigner(keyID, secret)
		s.Now = func() time.Time { return at }
		r, err := http.NewRequest("GET", "https://api.example.com/v1/orders", nil)
		require.NoError(t, err)
		require.NoError(t, s.Sign(r))
		sr := httptest.NewRequest(r.Method, r.URL.String(), nil)
		sr.Header = r.Header
		return sr
	}
	for i := range 300 {
		_, err := apiA.Verify(sign("device-42", attackerSecret, clock.Add(30*time.Second)))
		require.NoError(t, err, "the flood is accepted: %d", i)
		if i%10 == 0 {
			_, err = apiA.Verify(sign("device-7", honestSecret, clock))
			require.NoError(t, err, "another key of the same verifier")
			_, err = apiB.Verify(sign("device-42", honestSecret, clock))
			require.NoError(t, err, "the same key ID at another verifier")
		}
	}
	_, err := apiA.Verify(sign("device-42", attackerSecret, clock))
	require.ErrorIs(t, err, signing.ErrStale, "the flooding key holds back only itself")
	_, err = apiA.Verify(sign("device-42", attackerSecret, clock.Add(31*time.Second)))
	require.ErrorIs(t, err, signing.ErrFuture, "created_too_far_in_future")
}
