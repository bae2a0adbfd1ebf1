// Package replaytest is the conformance suite every single-use store of
// apiguard passes: the in-memory ones and redisstore's. It is imported
// only by tests.
package replaytest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Store is the method set of auth.ReplayStore and signing's nonce store.
type Store interface {
	Use(ctx context.Context, id string, exp time.Time) (bool, error)
}

// Factory returns two stores that share one backend (two service
// instances), and the clock they read. The clock is what exp values are
// measured against.
type Factory func(t *testing.T) (a, b Store, now func() time.Time)

// Run runs the suite against stores made by newStores.
func Run(t *testing.T, newStores Factory) {
	t.Run("fresh_then_replay", func(t *testing.T) {
		a, _, now := newStores(t)
		ctx := context.Background()
		exp := now().Add(time.Minute)
		ok, err := a.Use(ctx, "id-1", exp)
		require.NoError(t, err)
		require.True(t, ok, "first use")
		ok, err = a.Use(ctx, "id-1", exp)
		require.NoError(t, err)
		require.False(t, ok, "replay inside the window")
		ok, err = a.Use(ctx, "id-2", exp)
		require.NoError(t, err)
		require.True(t, ok, "another id")
	})
	t.Run("replay_across_instances", func(t *testing.T) {
		a, b, now := newStores(t)
		ctx := context.Background()
		exp := now().Add(time.Minute)
		ok, err := a.Use(ctx, "shared", exp)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = b.Use(ctx, "shared", exp)
		require.NoError(t, err)
		require.False(t, ok, "the other instance sees the use")
	})
	t.Run("already_expired_refused", func(t *testing.T) {
		a, _, now := newStores(t)
		ok, err := a.Use(context.Background(), "late", now().Add(-time.Second))
		require.NoError(t, err)
		require.False(t, ok)
	})
	t.Run("concurrent_single_winner", func(t *testing.T) {
		a, b, now := newStores(t)
		exp := now().Add(time.Minute)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, errs := 0, []error{}
		for i := range 32 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.Use(context.Background(), "race", exp)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					wins++
				}
			}()
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Equal(t, 1, wins)
	})
	t.Run("concurrent_many_ids_exact_count", func(t *testing.T) {
		// 64 goroutines on two instances each try the same 40 ids, in
		// orders of their own: exactly one use of each id wins.
		a, b, now := newStores(t)
		exp := now().Add(time.Minute)
		wins := countWins(t, 64, 40, func(g, i int) (bool, error) {
			s := a
			if g%2 == 1 {
				s = b
			}
			return s.Use(context.Background(), fmt.Sprint("id-", (i+g)%40), exp)
		})
		require.Equal(t, 40, wins)
	})
	t.Run("many_ids", func(t *testing.T) {
		a, _, now := newStores(t)
		exp := now().Add(time.Minute)
		for i := range 200 {
			ok, err := a.Use(context.Background(), fmt.Sprintf("n-%d", i), exp)
			require.NoError(t, err)
			require.True(t, ok)
		}
	})
}

// SigningStore is the method set of signing.ReplayStore.
type SigningStore interface {
	UseNonce(ctx context.Context, keyID, nonce string, created, exp time.Time) (bool, error)
	Advance(ctx context.Context, keyID string, created time.Time, slack, ttl time.Duration) (bool, error)
}

// SigningFactory returns two signing stores sharing one backend, and the
// clock they read.
type SigningFactory func(t *testing.T) (a, b SigningStore, now func() time.Time)

// RunSigning runs the suite for signing's replay store.
func RunSigning(t *testing.T, newStores SigningFactory) {
	t.Run("nonce_single_use_per_key", func(t *testing.T) {
		a, b, now := newStores(t)
		ctx := context.Background()
		created := now()
		exp := created.Add(5 * time.Minute)
		ok, err := a.UseNonce(ctx, "dev-1", "n1", created, exp)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = a.UseNonce(ctx, "dev-1", "n1", created, exp)
		require.NoError(t, err)
		require.False(t, ok, "replay on the same instance")
		ok, err = b.UseNonce(ctx, "dev-1", "n1", created, exp)
		require.NoError(t, err)
		require.False(t, ok, "replay on the other instance")
		ok, err = a.UseNonce(ctx, "dev-2", "n1", created, exp)
		require.NoError(t, err)
		require.True(t, ok, "nonces are per key")
	})
	t.Run("high_water_mark", func(t *testing.T) {
		a, b, now := newStores(t)
		ctx := context.Background()
		t0 := now()
		slack, ttl := 5*time.Second, 10*time.Minute
		advance := func(s SigningStore, created time.Time) bool {
			ok, err := s.Advance(ctx, "dev-1", created, slack, ttl)
			require.NoError(t, err)
			return ok
		}
		require.True(t, advance(a, t0))
		require.True(t, advance(b, t0.Add(30*time.Second)), "newer traffic raises the mark")
		require.True(t, advance(a, t0.Add(27*time.Second)), "within the slack of the mark")
		require.False(t, advance(a, t0), "older than the mark minus slack")
		require.False(t, advance(b, t0.Add(24*time.Second)))
		ok, err := a.Advance(ctx, "dev-2", t0, slack, ttl)
		require.NoError(t, err)
		require.True(t, ok, "marks are per key")
	})
	t.Run("concurrent_nonces_exact_count", func(t *testing.T) {
		// 64 goroutines on two instances each try the same 20 nonces
		// under two keys: exactly one use of each (key, nonce) wins.
		a, b, now := newStores(t)
		created := now()
		wins := countWins(t, 64, 40, func(g, i int) (bool, error) {
			s := a
			if g%2 == 1 {
				s = b
			}
			k := (i + g) % 40
			return s.UseNonce(context.Background(), fmt.Sprint("dev-", k%2), fmt.Sprint("n-", k/2), created, created.Add(time.Minute))
		})
		require.Equal(t, 40, wins)
	})
	t.Run("concurrent_advance_keeps_newest", func(t *testing.T) {
		// 64 goroutines on two instances raise one key's mark, each to
		// its own created time, all within the slack of one another:
		// every call passes, and the mark ends at the newest, whatever
		// the order (a lost update would leave it lower).
		a, b, now := newStores(t)
		t0 := now().Truncate(time.Second)
		const slack = 5 * time.Second
		wins := countWins(t, 64, 1, func(g, _ int) (bool, error) {
			s := a
			if g%2 == 1 {
				s = b
			}
			return s.Advance(context.Background(), "dev", t0.Add(time.Duration(g)*10*time.Millisecond), slack, time.Minute)
		})
		require.Equal(t, 64, wins)
		newest := t0.Add(630 * time.Millisecond)
		ok, err := a.Advance(context.Background(), "dev", newest.Add(-slack-time.Millisecond), slack, time.Minute)
		require.NoError(t, err)
		require.False(t, ok, "the mark is the newest created: older than it minus the slack is refused")
		ok, err = b.Advance(context.Background(), "dev", newest.Add(-slack), slack, time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
	})
	t.Run("concurrent_advance_exact_count", func(t *testing.T) {
		// With the mark set, 32 goroutines replay a capture older than
		// the mark minus the slack while 32 send newer traffic: exactly
		// the 32 newer pass, whatever the order.
		a, b, now := newStores(t)
		t0 := now().Truncate(time.Second)
		const slack = time.Second
		ok, err := a.Advance(context.Background(), "dev", t0, slack, time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
		wins := countWins(t, 64, 1, func(g, _ int) (bool, error) {
			s := a
			if g%4 >= 2 {
				s = b
			}
			if g%2 == 0 {
				return s.Advance(context.Background(), "dev", t0.Add(-slack-time.Millisecond), slack, time.Minute)
			}
			return s.Advance(context.Background(), "dev", t0.Add(time.Duration(g)*time.Millisecond), slack, time.Minute)
		})
		require.Equal(t, 32, wins)
	})
	t.Run("concurrent_nonce_single_winner", func(t *testing.T) {
		a, b, now := newStores(t)
		created := now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 32 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.UseNonce(context.Background(), "dev", "race", created, created.Add(time.Minute))
				mu.Lock()
				defer mu.Unlock()
				if err == nil && ok {
					wins++
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, wins)
	})
}

// countWins runs goroutines goroutines, each calling try(g, i) for i in
// [0, n), all started together, and returns how many calls returned
// true. Errors fail the test, from the test goroutine.
func countWins(t *testing.T, goroutines, n int, try func(g, i int) (bool, error)) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := make(chan struct{})
	wins, errs := 0, []error{}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range n {
				ok, err := try(g, i)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					wins++
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Empty(t, errs)
	return wins
}
