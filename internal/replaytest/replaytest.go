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
