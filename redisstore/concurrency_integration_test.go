package redisstore

import (
	"bytes"
	"context"
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

// TestConcurrencyLimitersShareRedis: two instances bound one caller's
// requests in flight through Redis, exactly under a parallel flood; the
// slots of an instance that dies free themselves when their leases
// expire; when Redis stops the instances follow their StorePolicy, and
// share the limit again when it returns.
func TestConcurrencyLimitersShareRedis(t *testing.T) {
	srv := redistest.Start(t)
	secret := bytes.Repeat([]byte{7}, 32)
	var later atomic.Int64
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return t0.Add(time.Duration(later.Load())) }
	var storeLater atomic.Int64
	storeNow := func() time.Time { return time.Now().Add(time.Duration(storeLater.Load())) }
	const limit = 5
	newInstance := func(policy ratelimit.StorePolicy) *ratelimit.Concurrency {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
		t.Cleanup(func() { _ = rdb.Close() })
		c, err := ratelimit.NewConcurrency(ratelimit.ConcurrencyConfig{
			Name:         "search",
			Limit:        limit,
			Key:          ratelimit.KeyByHeader("X-User"),
			Store:        NewConcurrencyStore(rdb, Options{Timeout: testTimeout, Now: storeNow, InsecureTrustCallerClock: true}),
			KeySecret:    secret,
			Lease:        time.Minute,
			StorePolicy:  policy,
			StoreTimeout: testTimeout,
			Now:          now,
			Logger:       slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		return c
	}
	a, b := newInstance(ratelimit.FallbackLocal), newInstance(ratelimit.FallbackLocal)
	closed := newInstance(ratelimit.FailClosed)

	t.Run("parallel_flood_exact", func(t *testing.T) {
		const n = 200
		var inside, most atomic.Int64
		entered, gate := make(chan struct{}, n), make(chan struct{})
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v := inside.Add(1)
			for m := most.Load(); v > m && !most.CompareAndSwap(m, v); m = most.Load() {
			}
			entered <- struct{}{}
			<-gate
			inside.Add(-1)
			w.WriteHeader(http.StatusNoContent)
		})
		ha, hb := a.Handler(next), b.Handler(next)
		codes := make(chan int, n)
		for i := range n {
			h := ha
			if i%2 == 1 {
				h = hb
			}
			go func() {
				r := httptest.NewRequest("GET", "/search", nil)
				r.Header.Set("X-User", "alice")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				codes <- rec.Code
			}()
		}
		for range n - limit {
			require.Equal(t, http.StatusTooManyRequests, <-codes)
		}
		close(gate)
		for range limit {
			require.Equal(t, http.StatusNoContent, <-codes)
		}
		require.EqualValues(t, limit, most.Load(), "never more than 5 inside at once, across both instances")
	})

	t.Run("instance_death_leases_expire", func(t *testing.T) {
		for range limit {
			_, err := a.Acquire(context.Background(), "bob") // a dies holding them
			require.NoError(t, err)
		}
		_, err := b.Acquire(context.Background(), "bob")
		require.ErrorIs(t, err, ratelimit.ErrConcurrency)
		later.Add(int64(time.Minute + time.Second))
		for range limit {
			release, err := b.Acquire(context.Background(), "bob")
			require.NoError(t, err, "the dead instance's slots expired")
			defer release()
		}
		_, err = b.Acquire(context.Background(), "bob")
		require.ErrorIs(t, err, ratelimit.ErrConcurrency)
	})

	t.Run("outage_follows_policy", func(t *testing.T) {
		srv.Stop()
		for range limit {
			release, err := a.Acquire(context.Background(), "carol")
			require.NoError(t, err, "FallbackLocal: a local limit per instance")
			defer release()
		}
		_, err := a.Acquire(context.Background(), "carol")
		require.ErrorIs(t, err, ratelimit.ErrConcurrency, "the local fallback still limits")
		_, err = closed.Acquire(context.Background(), "carol")
		require.ErrorIs(t, err, ratelimit.ErrStoreUnavailable, "FailClosed rejects while Redis is down")

		srv.Restart()
		storeLater.Add(int64(time.Second)) // the breakers probe again
		// Both breakers probe Redis with their next call and close.
		var held []func()
		for i := range limit {
			c := a
			if i%2 == 1 {
				c = b
			}
			release, err := c.Acquire(context.Background(), "dave")
			require.NoError(t, err)
			held = append(held, release)
		}
		_, err = b.Acquire(context.Background(), "dave")
		require.ErrorIs(t, err, ratelimit.ErrConcurrency, "shared again after the restart")
		for _, r := range held {
			r()
		}
	})
}
