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
