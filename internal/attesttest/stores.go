// Package attesttest is the conformance suite of attest's stores (keys,
// challenges, subject history): the in-memory ones and redisstore's. It
// is imported only by tests.
package attesttest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// KeyStore is the method set of appattest.KeyStore.
type KeyStore interface {
	Enroll(ctx context.Context, keyID string, record []byte) (bool, error)
	Lookup(ctx context.Context, keyID string) ([]byte, uint32, bool, error)
	AdvanceCounter(ctx context.Context, keyID string, from, to uint32) (bool, error)
}

// ChallengeStore is the method set of appattest.ChallengeStore.
type ChallengeStore interface {
	Put(ctx context.Context, challenge, binding string, exp time.Time) error
	Take(ctx context.Context, challenge string) (string, bool, error)
}

// HistoryStore is the method set of attest.HistoryStore.
type HistoryStore interface {
	Swap(ctx context.Context, subject string, record []byte, ttl time.Duration) ([]byte, error)
	AddKey(ctx context.Context, subject, keyID string, at time.Time, ttl time.Duration) (int, error)
}

// maxHistoryKeys is attest.MaxHistoryKeys.
const maxHistoryKeys = 16

// goroutines is how many goroutines each concurrency test runs: far more
// than the cores, so that calls interleave.
const goroutines = 64

// parallel runs f(i) for i in [0, n) on n goroutines released together.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
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
		var mu sync.Mutex
		wins, errs := 0, 0
		parallel(goroutines, func(i int) {
			s := pick(a, b, i)
			ok, err := s.AdvanceCounter(ctx, "race", 0, uint32(i%goroutines)+1) // #nosec G115 -- 0..63
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
			} else if ok {
				wins++
			}
		})
		require.Zero(t, errs)
		require.Equal(t, 1, wins, "one assertion counter advance from 0 wins")
	})
	t.Run("concurrent_cas_no_lost_update", func(t *testing.T) {
		// Every goroutine reads the counter and advances it by one,
		// retrying on a lost race: with an atomic compare-and-swap the
		// counter ends at exactly the number of goroutines.
		a, b := newStore(t)
		_, err := a.Enroll(ctx, "chain", []byte("r"))
		require.NoError(t, err)
		var failed atomic.Int64
		parallel(goroutines, func(i int) {
			s := pick(a, b, i)
			for range 10_000 {
				_, c, _, err := s.Lookup(ctx, "chain")
				if err != nil {
					failed.Add(1)
					return
				}
				if ok, err := s.AdvanceCounter(ctx, "chain", c, c+1); err != nil {
					failed.Add(1)
					return
				} else if ok {
					return
				}
			}
			failed.Add(1)
		})
		require.Zero(t, failed.Load())
		_, c, _, err := a.Lookup(ctx, "chain")
		require.NoError(t, err)
		require.Equal(t, uint32(goroutines), c)
	})
	t.Run("concurrent_enroll_first_wins", func(t *testing.T) {
		a, b := newStore(t)
		var mu sync.Mutex
		var winners []string
		errs := 0
		parallel(goroutines, func(i int) {
			rec := fmt.Sprintf("record-%d", i)
			ok, err := pick(a, b, i).Enroll(ctx, "contested", []byte(rec))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
			} else if ok {
				winners = append(winners, rec)
			}
		})
		require.Zero(t, errs)
		require.Len(t, winners, 1, "a key is enrolled once")
		rec, c, found, err := b.Lookup(ctx, "contested")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, winners[0], string(rec), "the first enrolment's record stays")
		require.Zero(t, c)
	})
}

// pick returns a for even i and b for odd i: concurrent calls through
// both handles on one backend.
func pick[S any](a, b S, i int) S {
	if i%2 == 1 {
		return b
	}
	return a
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
		require.NoError(t, a.Put(ctx, "race", "key-1", time.Now().Add(time.Minute)))
		var mu sync.Mutex
		wins, errs := 0, 0
		parallel(goroutines, func(i int) {
			got, ok, err := pick(a, b, i).Take(ctx, "race")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
			} else if ok && got == "key-1" {
				wins++
			}
		})
		require.Zero(t, errs)
		require.Equal(t, 1, wins, "a challenge is taken once")
	})
	t.Run("concurrent_takes_of_many_challenges", func(t *testing.T) {
		// Each of 32 challenges is taken by two goroutines at once:
		// exactly one take of each succeeds.
		a, b := newStore(t)
		const n = goroutines / 2
		for i := range n {
			require.NoError(t, a.Put(ctx, fmt.Sprintf("c-%d", i), "", time.Now().Add(time.Minute)))
		}
		var mu sync.Mutex
		taken := map[string]int{}
		parallel(goroutines, func(i int) {
			c := fmt.Sprintf("c-%d", i/2)
			_, ok, err := pick(a, b, i).Take(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && ok {
				taken[c]++
			}
		})
		require.Len(t, taken, n)
		for c, k := range taken {
			require.Equal(t, 1, k, c)
		}
	})
}

// RunHistoryStore runs the history store suite.
func RunHistoryStore(t *testing.T, newStore func(t *testing.T) (a, b HistoryStore)) {
	ctx := context.Background()
	t.Run("swap", func(t *testing.T) {
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
	})
	t.Run("concurrent_swap_chain", func(t *testing.T) {
		// Concurrent swaps on one subject form one chain: exactly one
		// finds nothing before it, and every record but the last written
		// is handed back exactly once.
		a, b := newStore(t)
		var mu sync.Mutex
		seen := map[string]int{}
		nils, errs := 0, 0
		parallel(goroutines, func(i int) {
			prev, err := pick(a, b, i).Swap(ctx, "carol", []byte(fmt.Sprintf("r-%d", i)), time.Hour)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs++
			case prev == nil:
				nils++
			default:
				seen[string(prev)]++
			}
		})
		require.Zero(t, errs)
		require.Equal(t, 1, nils)
		last, err := a.Swap(ctx, "carol", []byte("end"), time.Hour)
		require.NoError(t, err)
		seen[string(last)]++
		require.Len(t, seen, goroutines)
		for r, k := range seen {
			require.Equal(t, 1, k, r)
		}
	})
	t.Run("add_key", func(t *testing.T) {
		a, b := newStore(t)
		at := time.Now()
		for i, want := range []int{1, 2, 2, 3} {
			n, err := pick(a, b, i).AddKey(ctx, "dave", []string{"k1", "k2", "k1", "k3"}[i], at.Add(time.Duration(i)*time.Minute), time.Hour)
			require.NoError(t, err)
			require.Equal(t, want, n)
		}
		n, err := a.AddKey(ctx, "erin", "k1", at, time.Hour)
		require.NoError(t, err)
		require.Equal(t, 1, n, "per subject")
		// Two hours on, k1..k3 are forgotten.
		n, err = b.AddKey(ctx, "dave", "k4", at.Add(2*time.Hour), time.Hour)
		require.NoError(t, err)
		require.Equal(t, 1, n, "keys not used within ttl are forgotten")
		for i := range 2 * maxHistoryKeys {
			n, err = a.AddKey(ctx, "fay", fmt.Sprintf("k-%d", i), at.Add(time.Duration(i)*time.Second), time.Hour)
			require.NoError(t, err)
		}
		require.Equal(t, maxHistoryKeys, n, "bounded")
	})
	t.Run("concurrent_add_key_counts_exact", func(t *testing.T) {
		// A farm's devices used at once: each count from 1 up to the bound
		// is returned exactly once, the rest see the bound.
		a, b := newStore(t)
		at := time.Now()
		var mu sync.Mutex
		var counts []int
		errs := 0
		parallel(goroutines, func(i int) {
			n, err := pick(a, b, i).AddKey(ctx, "farm", fmt.Sprintf("key-%d", i), at, time.Hour)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			counts = append(counts, n)
		})
		require.Zero(t, errs)
		slices.Sort(counts)
		want := make([]int, goroutines)
		for i := range want {
			want[i] = min(i+1, maxHistoryKeys)
		}
		require.Equal(t, want, counts)
	})
}
