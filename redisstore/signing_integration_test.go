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
	newInstance := func() *signing.Verifier {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, ContextTimeoutEnabled: true, DialTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { _ = rdb.Close() })
		v, err := signing.New(signing.Config{
			Keys:        signing.StaticKeys(map[string][]byte{"device-1": secret}),
			ReplayStore: redisstore.NewReplayStore(rdb, redisstore.Options{Timeout: 200 * time.Millisecond}),
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		return v
	}
	a, b := newInstance(), newInstance()
	clock := time.Now()
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
