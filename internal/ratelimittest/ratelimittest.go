// Package ratelimittest is the conformance suite of ratelimit's token
// bucket stores: the in-memory one and redisstore's. It is imported only by
// tests.
package ratelimittest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Store is the method set of ratelimit.Store.
type Store interface {
	Take(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) (bool, int, time.Duration, error)
	Refund(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) error
}

// Factory returns two stores sharing one backend (two instances). Time is
// what the suite passes as now: it stands still while real time passes,
// so a store that decides on it but whose records expire on another clock
// (redisstore with Options.InsecureTrustCallerClock: Redis's) must keep a
// bucket longer than a case runs after its TAT (redisstore: by
// Options.Timeout; give it a generous one), or a slow case sees a bucket
// refilled that the suite's clock says cannot be.
type Factory func(t *testing.T) (a, b Store)

// Run runs the suite.
func Run(t *testing.T, newStores Factory) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	const interval = 100 * time.Millisecond // 10 per second
	take := func(t *testing.T, s Store, key string, now time.Time) (bool, int, time.Duration) {
		t.Helper()
		ok, rem, wait, err := s.Take(ctx, key, interval, 5, now)
		require.NoError(t, err)
		return ok, rem, wait
	}

	t.Run("burst_then_reject", func(t *testing.T) {
		a, _ := newStores(t)
		for i := range 5 {
			ok, rem, _ := take(t, a, "k", t0)
			require.True(t, ok, "request %d of the burst", i+1)
			require.Equal(t, 4-i, rem)
		}
		ok, rem, wait := take(t, a, "k", t0)
		require.False(t, ok, "burst exhausted")
		require.Equal(t, 0, rem)
		require.InDelta(t, float64(interval), float64(wait), float64(time.Millisecond), "retry after one interval")
	})
	t.Run("refill", func(t *testing.T) {
		a, _ := newStores(t)
		for range 5 {
			take(t, a, "k", t0)
		}
		ok, _, _ := take(t, a, "k", t0.Add(interval/2))
		require.False(t, ok, "half a token is not a token")
		ok, _, _ = take(t, a, "k", t0.Add(interval))
		require.True(t, ok, "one interval later, one token")
		ok, _, _ = take(t, a, "k", t0.Add(interval))
		require.False(t, ok)
		ok, rem, wait := take(t, a, "k", t0.Add(time.Hour))
		require.True(t, ok, "full again")
		require.Equal(t, 4, rem, "never more than the burst")
		require.InDelta(t, float64(interval), float64(wait), float64(time.Millisecond), "next token in one interval")
	})
	t.Run("keys_independent", func(t *testing.T) {
		a, _ := newStores(t)
		for range 5 {
			take(t, a, "one", t0)
		}
		ok, _, _ := take(t, a, "one", t0)
		require.False(t, ok)
		ok, _, _ = take(t, a, "two", t0)
		require.True(t, ok)
	})
	t.Run("shared_between_instances", func(t *testing.T) {
		a, b := newStores(t)
		for i := range 5 {
			s := a
			if i%2 == 1 {
				s = b
			}
			ok, _, _ := take(t, s, "k", t0)
			require.True(t, ok)
		}
		ok, _, _ := take(t, b, "k", t0)
		require.False(t, ok, "the sixth request is rejected whichever instance gets it")
		ok, _, _ = take(t, a, "k", t0)
		require.False(t, ok)
	})
	t.Run("refund", func(t *testing.T) {
		a, _ := newStores(t)
		for range 5 {
			take(t, a, "k", t0)
		}
		require.NoError(t, a.Refund(ctx, "k", interval, 5, t0))
		ok, _, _ := take(t, a, "k", t0)
		require.True(t, ok, "the refunded token")
		ok, _, _ = take(t, a, "k", t0)
		require.False(t, ok)
		require.NoError(t, a.Refund(ctx, "fresh", interval, 5, t0))
		for i := range 5 {
			ok, _, _ := take(t, a, "fresh", t0)
			require.True(t, ok, "%d", i)
		}
		ok, _, _ = take(t, a, "fresh", t0)
		require.False(t, ok, "a refund never lifts a bucket past its burst")
	})
	t.Run("refund_after_rejection", func(t *testing.T) {
		// A store that remembers a rejection locally (redisstore's
		// LeaseStore reserves the next token) still gives the refunded
		// token to the next request.
		a, b := newStores(t)
		for range 5 {
			take(t, a, "k", t0)
		}
		for _, s := range []Store{a, b, a} {
			ok, _, _ := take(t, s, "k", t0)
			require.False(t, ok)
		}
		require.NoError(t, a.Refund(ctx, "k", interval, 5, t0))
		ok, _, _ := take(t, a, "k", t0)
		require.True(t, ok, "the refunded token")
		ok, _, _ = take(t, a, "k", t0)
		require.False(t, ok)
		ok, _, _ = take(t, b, "k", t0)
		require.False(t, ok)
	})
	t.Run("flood_over_limit_admits_nothing", func(t *testing.T) {
		a, b := newStores(t)
		for range 5 {
			take(t, a, "k", t0)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		allowed := 0
		var errs []error
		for i := range 200 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				ok, _, wait, err := s.Take(ctx, "k", interval, 5, t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok || wait <= 0 {
					allowed++ // or a rejection without a wait
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Zero(t, allowed, "every request over the limit is rejected with a wait")
		ok, _, _ := take(t, a, "k", t0.Add(5*interval))
		require.True(t, ok, "and the bucket refills as ever")
	})
	t.Run("concurrent_exact", func(t *testing.T) {
		a, b := newStores(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		allowed := 0
		errs := []error{}
		for i := range 40 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, _, _, err := s.Take(ctx, "race", interval, 5, t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					allowed++
				}
			}()
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Equal(t, 5, allowed)
	})
	t.Run("concurrent_refunds_capped", func(t *testing.T) {
		a, b := newStores(t)
		take(t, a, "k", t0)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for i := range 40 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				if err := s.Refund(ctx, "k", interval, 5, t0); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		allowed := 0
		for range 10 {
			if ok, _, _ := take(t, a, "k", t0); ok {
				allowed++
			}
		}
		require.Equal(t, 5, allowed, "refunds racing never lift a bucket past its burst")
	})
	t.Run("many_keys", func(t *testing.T) {
		a, _ := newStores(t)
		for i := range 300 {
			ok, _, _ := take(t, a, fmt.Sprintf("key-%d", i), t0)
			require.True(t, ok)
		}
	})
}
