package redisstore

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
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestLeaseLimitersShareRedis: instances on LeaseStores enforce one limit;
// when Redis stops they follow the limiter's StorePolicy, and when it
// comes back they converge on one shared limit again, also for a key
// that each of them held a reservation for.
func TestLeaseLimitersShareRedis(t *testing.T) {
	srv := redistest.Start(t)
	secret := bytes.Repeat([]byte{7}, 32)
	var later atomic.Int64
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return t0.Add(time.Duration(later.Load())) }
	// The stores' own clock, which the breakers' cool-down is measured on.
	var storeLater atomic.Int64
	storeNow := func() time.Time { return time.Now().Add(time.Duration(storeLater.Load())) }
	var stores []*LeaseStore
	newInstance := func(policy ratelimit.StorePolicy) http.Handler {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
		t.Cleanup(func() { _ = rdb.Close() })
		// The limiter's fake clock decides: the store trusts it.
		store := NewLeaseStore(rdb, Options{Timeout: testTimeout, Now: storeNow, InsecureTrustCallerClock: true}, LeaseConfig{})
		t.Cleanup(func() { _ = store.Close() })
		stores = append(stores, store)
		l, err := ratelimit.New(ratelimit.Config{
			Limit:        ratelimit.Limit{Requests: 5, Per: time.Minute},
			Key:          ratelimit.KeyByHeader("X-Device-ID"),
			Store:        store,
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
	shared := func(device string) {
		t.Helper()
		for i := range 5 {
			h := a
			if i%2 == 1 {
				h = b
			}
			require.Equal(t, 204, send(h, device), "%s: request %d", device, i+1)
		}
		require.Equal(t, 429, send(a, device), "%s: the sixth request is rejected on either instance", device)
		require.Equal(t, 429, send(b, device))
	}
	shared("device-1")

	srv.Stop()
	// FallbackLocal: each instance limits alone, with its own fresh bucket.
	for range 5 {
		require.Equal(t, 204, send(a, "device-2"))
	}
	require.Equal(t, 429, send(a, "device-2"), "the local fallback still limits")
	require.Equal(t, 503, send(closed, "device-2"), "FailClosed rejects while Redis is down")
	require.Equal(t, 429, send(a, "device-1"), "a reservation made before the outage still denies")

	srv.Restart()                      // an empty dataset
	storeLater.Add(int64(time.Second)) // the breakers, open since the outage, probe again
	require.Eventually(t, func() bool { return send(b, "device-3") == 204 }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return send(a, "device-3") == 204 }, 5*time.Second, 20*time.Millisecond)
	for range 3 {
		require.Equal(t, 204, send(a, "device-3"))
	}
	require.Equal(t, 429, send(b, "device-3"), "shared again after the restart")
	require.Equal(t, 429, send(a, "device-3"))

	// A minute on, the reservations for device-1 are stale: both
	// instances give them back (to a bucket the restart emptied: nothing
	// to give back to) and lease afresh, and share one limit again.
	later.Add(int64(time.Minute))
	for _, s := range stores {
		require.NoError(t, s.sweep(true))
	}
	shared("device-1")
}
