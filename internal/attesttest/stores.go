// Package attesttest is the conformance suite of attest's stores (keys,
// challenges, subject history): the in-memory ones and redisstore's. It
// is imported only by tests.
package attesttest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// KeyStore is the method set of attest.KeyStore.
type KeyStore interface {
	Enroll(ctx context.Context, keyID string, record []byte) (bool, error)
	Lookup(ctx context.Context, keyID string) ([]byte, uint32, bool, error)
	AdvanceCounter(ctx context.Context, keyID string, from, to uint32) (bool, error)
}

// ChallengeStore is the method set of attest.ChallengeStore.
type ChallengeStore interface {
	Put(ctx context.Context, challenge, binding string, exp time.Time) error
	Take(ctx context.Context, challenge string) (string, bool, error)
}

// HistoryStore is the method set of attest.HistoryStore.
type HistoryStore interface {
	Swap(ctx context.Context, subject string, record []byte, ttl time.Duration) ([]byte, error)
}

// RunKeyStore runs the key store suite; newStore returns two handles on
// one backend.
func RunKeyStore(t *testing.T, newStore func(t *testing.T) (a, b KeyStore)) {
	ctx := context.Background()
	t.Run("enroll_lookup_advance", func(t *testing.T) {
		a, b := newStore(t)
		ok, err := a.Enroll(ctx, "k1", []byte(`{"app":"x"}`))
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = b.Enroll(ctx, "k1", []byte(`{"app":"evil"}`))
		require.NoError(t, err)
		require.False(t, ok, "a key is enrolled once")
		rec, counter, found, err := b.Lookup(ctx, "k1")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, `{"app":"x"}`, string(rec))
		require.Equal(t, uint32(0), counter)
		_, _, found, err = a.Lookup(ctx, "unknown")
		require.NoError(t, err)
		require.False(t, found)

		ok, err = a.AdvanceCounter(ctx, "k1", 0, 5)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = b.AdvanceCounter(ctx, "k1", 0, 6)
		require.NoError(t, err)
		require.False(t, ok, "compare-and-swap: the counter is no longer 0")
		_, counter, _, _ = b.Lookup(ctx, "k1")
		require.Equal(t, uint32(5), counter)
		ok, err = a.AdvanceCounter(ctx, "nope", 0, 1)
		require.NoError(t, err)
		require.False(t, ok)
	})
	t.Run("concurrent_cas_single_winner", func(t *testing.T) {
		a, b := newStore(t)
		_, err := a.Enroll(ctx, "race", []byte("r"))
		require.NoError(t, err)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 20 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.AdvanceCounter(ctx, "race", 0, uint32(i%20)+1) // #nosec G115 -- 0..19
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

// RunChallengeStore runs the challenge store suite at the real clock.
func RunChallengeStore(t *testing.T, newStore func(t *testing.T) (a, b ChallengeStore)) {
	ctx := context.Background()
	t.Run("single_use", func(t *testing.T) {
		a, b := newStore(t)
		require.NoError(t, a.Put(ctx, "c1", "key-1", time.Now().Add(time.Minute)))
		got, ok, err := b.Take(ctx, "c1")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "key-1", got)
		_, ok, err = a.Take(ctx, "c1")
		require.NoError(t, err)
		require.False(t, ok, "used once")
		_, ok, err = a.Take(ctx, "never-issued")
		require.NoError(t, err)
		require.False(t, ok)
	})
	t.Run("expired", func(t *testing.T) {
		a, _ := newStore(t)
		require.NoError(t, a.Put(ctx, "old", "", time.Now().Add(-time.Second)))
		_, ok, err := a.Take(ctx, "old")
		require.NoError(t, err)
		require.False(t, ok)
	})
	t.Run("concurrent_take_single_winner", func(t *testing.T) {
		a, b := newStore(t)
		require.NoError(t, a.Put(ctx, "race", "", time.Now().Add(time.Minute)))
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 20 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, ok, err := s.Take(ctx, "race")
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

// RunHistoryStore runs the history store suite.
func RunHistoryStore(t *testing.T, newStore func(t *testing.T) (a, b HistoryStore)) {
	ctx := context.Background()
	a, b := newStore(t)
	prev, err := a.Swap(ctx, "alice", []byte("one"), time.Hour)
	require.NoError(t, err)
	require.Nil(t, prev)
	prev, err = b.Swap(ctx, "alice", []byte("two"), time.Hour)
	require.NoError(t, err)
	require.Equal(t, "one", string(prev), "shared between instances")
	prev, err = a.Swap(ctx, "bob", []byte("x"), time.Hour)
	require.NoError(t, err)
	require.Nil(t, prev, "per subject")
}
