package ratelimittest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ConcurrencyStore is the method set of ratelimit.ConcurrencyStore.
type ConcurrencyStore interface {
	Acquire(ctx context.Context, key, id string, limit int, lease time.Duration, now time.Time) (ok bool, inFlight int, err error)
	Release(ctx context.Context, key, id string) error
}

// ConcurrencyFactory returns two concurrency stores sharing one backend
// (two instances). Time is what the suite passes as now (see [Factory]).
type ConcurrencyFactory func(t *testing.T) (a, b ConcurrencyStore)

// RunConcurrency runs the concurrency stores' suite: slots are exact and
// atomic under concurrency across instances, released exactly once, and
// freed when their lease expires (an instance that died).
func RunConcurrency(t *testing.T, newStores ConcurrencyFactory) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	const limit, lease = 3, time.Minute
	acquire := func(t *testing.T, s ConcurrencyStore, key, id string, now time.Time) (bool, int) {
		t.Helper()
		ok, n, err := s.Acquire(ctx, key, id, limit, lease, now)
		require.NoError(t, err)
		return ok, n
	}

	t.Run("limit_shared_between_instances", func(t *testing.T) {
		a, b := newStores(t)
		for i, s := range []ConcurrencyStore{a, b, a} {
			ok, n := acquire(t, s, "k", fmt.Sprint("r", i), t0)
			require.True(t, ok)
			require.Equal(t, i+1, n)
		}
		ok, n := acquire(t, b, "k", "r3", t0)
		require.False(t, ok, "the fourth request in flight is rejected whichever instance gets it")
		require.Equal(t, 3, n)
		ok, _ = acquire(t, a, "other", "r0", t0)
		require.True(t, ok, "keys are independent")
	})
	t.Run("release_frees_once", func(t *testing.T) {
		a, b := newStores(t)
		for i := range limit {
			acquire(t, a, "k", fmt.Sprint("r", i), t0)
		}
		require.NoError(t, b.Release(ctx, "k", "r1"))
		require.NoError(t, a.Release(ctx, "k", "r1"), "a second release of one id")
		require.NoError(t, a.Release(ctx, "k", "never-held"))
		ok, _ := acquire(t, b, "k", "r3", t0)
		require.True(t, ok, "the released slot")
		ok, _ = acquire(t, b, "k", "r4", t0)
		require.False(t, ok, "released twice frees one slot")
	})
	t.Run("instance_death_leases_expire", func(t *testing.T) {
		a, b := newStores(t)
		for i := range limit {
			acquire(t, a, "k", fmt.Sprint("dead", i), t0) // a dies holding them
		}
		ok, _ := acquire(t, b, "k", "r", t0.Add(lease-time.Second))
		require.False(t, ok, "leases still running")
		for i := range limit {
			ok, _ := acquire(t, b, "k", fmt.Sprint("r", i), t0.Add(lease+time.Second))
			require.True(t, ok, "the dead instance's slots freed themselves: %d", i)
		}
		ok, _ = acquire(t, b, "k", "r9", t0.Add(lease+time.Second))
		require.False(t, ok)
	})
	t.Run("concurrent_exact", func(t *testing.T) {
		a, b := newStores(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		taken := 0
		var errs []error
		for i := range 100 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				ok, _, err := s.Acquire(ctx, "race", fmt.Sprint("r", i), limit, lease, t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					taken++
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Equal(t, limit, taken)
	})
}
