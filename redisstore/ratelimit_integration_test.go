package redisstore_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestLimitersShareRedis: two instances enforce one limit through Redis;
// when Redis stops they follow the store policy, and when it comes back
// they share the limit again.
func TestLimitersShareRedis(t *testing.T) {
	srv := redistest.Start(t)
	secret := bytes.Repeat([]byte{7}, 32)
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	// The stores' clock, which the breakers' cool-down is measured on.
	var storeLater atomic.Int64
	storeNow := func() time.Time { return time.Now().Add(time.Duration(storeLater.Load())) }
	newInstance := func(policy ratelimit.StorePolicy) http.Handler {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
		t.Cleanup(func() { _ = rdb.Close() })
		l, err := ratelimit.New(ratelimit.Config{
			Limit:        ratelimit.Limit{Requests: 5, Per: time.Minute},
			Key:          ratelimit.KeyByHeader("X-Device-ID"),
			Store:        redisstore.NewLimitStore(rdb, redisstore.Options{Timeout: testTimeout, Now: storeNow}),
			KeySecret:    secret,
			StorePolicy:  policy,
			StoreTimeout: testTimeout,
			Now:          now,
			Logger:       slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		return l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	}
	a, b := newInstance(ratelimit.FallbackLocal), newInstance(ratelimit.FallbackLocal)
	closed := newInstance(ratelimit.FailClosed)
	send := func(h http.Handler, device string) int {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Device-ID", device)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	for i := range 5 {
		h := a
		if i%2 == 1 {
			h = b
		}
		require.Equal(t, 204, send(h, "device-1"), "request %d", i+1)
	}
	require.Equal(t, 429, send(a, "device-1"), "the sixth request is rejected on either instance")
	require.Equal(t, 429, send(b, "device-1"))

	srv.Stop()
	// FallbackLocal: each instance limits alone, with its own fresh bucket.
	for range 5 {
		require.Equal(t, 204, send(a, "device-2"))
	}
	require.Equal(t, 429, send(a, "device-2"), "the local fallback still limits")
	require.Equal(t, 503, send(closed, "device-2"), "FailClosed rejects while Redis is down")

	srv.Restart()
	storeLater.Add(int64(time.Second)) // a's breaker, open since the outage, probes again
	require.Eventually(t, func() bool { return send(b, "device-3") == 204 }, 5*time.Second, 20*time.Millisecond)
	for range 4 {
		require.Equal(t, 204, send(a, "device-3"))
	}
	require.Equal(t, 429, send(b, "device-3"), "shared again after the restart")
}
