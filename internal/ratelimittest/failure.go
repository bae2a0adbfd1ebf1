package ratelimittest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FailurePolicy is ratelimit.FailurePolicy (an alias of this struct).
type FailurePolicy = struct {
	Budget     int
	Per        time.Duration
	Lockout    time.Duration
	MaxLockout time.Duration
	Lease      time.Duration
}

// FailureStore is the method set of ratelimit.FailureStore.
type FailureStore interface {
	Reserve(ctx context.Context, key string, p FailurePolicy, now time.Time) (ok bool, ticket int64, remaining int, wait time.Duration, err error)
	Settle(ctx context.Context, key string, ticket int64, failed, reset bool, p FailurePolicy, now time.Time) (remaining int, lockout time.Duration, strikes int, err error)
	Peek(ctx context.Context, key string, p FailurePolicy, now time.Time) (remaining int, wait time.Duration, err error)
}

// FailureFactory returns two failure stores sharing one backend (two
// instances). Time is what the suite passes as now, as for [Factory],
// which says what its frozen clock asks of a store whose records expire
// on another clock.
type FailureFactory func(t *testing.T) (a, b FailureStore)

// RunFailure runs the failure budget stores' suite: every decision is
// exact, atomic under concurrency, and the same from either instance.
func RunFailure(t *testing.T, newStores FailureFactory) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	// 3 failures per 30 minutes (one refills every 10), a lockout of an
	// hour doubling up to 4, attempts leased for a minute.
	p := FailurePolicy{Budget: 3, Per: 30 * time.Minute, Lockout: time.Hour, MaxLockout: 4 * time.Hour, Lease: time.Minute}
	reserve := func(t *testing.T, s FailureStore, key string, now time.Time) (bool, int64, int, time.Duration) {
		t.Helper()
		ok, ticket, rem, wait, err := s.Reserve(ctx, key, p, now)
		require.NoError(t, err)
		if ok {
			require.NotZero(t, ticket, "a ticket is never 0")
		}
		return ok, ticket, rem, wait
	}
	settle := func(t *testing.T, s FailureStore, key string, ticket int64, failed, reset bool, now time.Time) (int, time.Duration, int) {
		t.Helper()
		rem, lockout, strikes, err := s.Settle(ctx, key, ticket, failed, reset, p, now)
		require.NoError(t, err)
		return rem, lockout, strikes
	}
	peek := func(t *testing.T, s FailureStore, key string, now time.Time) (int, time.Duration) {
		t.Helper()
		rem, wait, err := s.Peek(ctx, key, p, now)
		require.NoError(t, err)
		return rem, wait
	}
	// fail reserves and fails one attempt.
	fail := func(t *testing.T, s FailureStore, key string, now time.Time) (time.Duration, int) {
		t.Helper()
		ok, ticket, _, _ := reserve(t, s, key, now)
		require.True(t, ok)
		_, lockout, strikes := settle(t, s, key, ticket, true, false, now)
		return lockout, strikes
	}

	t.Run("fresh_key", func(t *testing.T) {
		a, _ := newStores(t)
		rem, wait := peek(t, a, "k", t0)
		require.Equal(t, 3, rem)
		require.Zero(t, wait)
		ok, _, rem, _ := reserve(t, a, "k", t0)
		require.True(t, ok)
		require.Equal(t, 2, rem, "two left beside the one in flight")
	})
	t.Run("budget_spent_locks_out", func(t *testing.T) {
		a, _ := newStores(t)
		for i := range 2 {
			lockout, _ := fail(t, a, "k", t0)
			require.Zero(t, lockout, "failure %d", i+1)
		}
		lockout, strikes := fail(t, a, "k", t0)
		require.Equal(t, time.Hour, lockout, "the third failure spends the budget")
		require.Equal(t, 1, strikes)
		ok, _, _, wait := reserve(t, a, "k", t0.Add(time.Minute))
		require.False(t, ok)
		require.Equal(t, 59*time.Minute, wait)
		rem, wait := peek(t, a, "k", t0.Add(time.Minute))
		require.Zero(t, rem)
		require.Equal(t, 59*time.Minute, wait)
		// An hour on, the budget has refilled and the lockout is over.
		rem, _ = peek(t, a, "k", t0.Add(time.Hour))
		require.Equal(t, 3, rem)
	})
	t.Run("in_flight_bounded_by_budget_left", func(t *testing.T) {
		a, _ := newStores(t)
		fail(t, a, "k", t0) // two left
		ok1, t1, rem, _ := reserve(t, a, "k", t0)
		require.True(t, ok1)
		require.Equal(t, 1, rem)
		ok2, _, rem, _ := reserve(t, a, "k", t0)
		require.True(t, ok2)
		require.Equal(t, 0, rem)
		ok, _, _, wait := reserve(t, a, "k", t0)
		require.False(t, ok, "one failure and two in flight fill a budget of three")
		require.Positive(t, wait)
		require.LessOrEqual(t, wait, time.Millisecond, "the budget is not spent: places free as the attempts in flight end")
		rem, _, _ = settle(t, a, "k", t1, false, false, t0)
		require.Equal(t, 1, rem, "a success gives its place back")
		ok, _, _, _ = reserve(t, a, "k", t0)
		require.True(t, ok)
	})
	t.Run("refill", func(t *testing.T) {
		a, _ := newStores(t)
		fail(t, a, "k", t0)
		fail(t, a, "k", t0)
		rem, _ := peek(t, a, "k", t0.Add(10*time.Minute-time.Millisecond))
		require.Equal(t, 1, rem)
		rem, _ = peek(t, a, "k", t0.Add(10*time.Minute))
		require.Equal(t, 2, rem, "one failure refills every Per/Budget")
		rem, _ = peek(t, a, "k", t0.Add(20*time.Minute))
		require.Equal(t, 3, rem)
	})
	t.Run("lockout_doubles_and_caps", func(t *testing.T) {
		a, _ := newStores(t)
		now := t0
		for i, want := range []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 4 * time.Hour} {
			var lockout time.Duration
			for range 3 {
				lockout, _ = fail(t, a, "k", now)
			}
			require.Equal(t, want, lockout, "lockout %d", i+1)
			now = now.Add(want)
		}
	})
	t.Run("strikes_forgotten_after_max_lockout", func(t *testing.T) {
		a, _ := newStores(t)
		for range 3 {
			fail(t, a, "k", t0)
		}
		// Locked until t0+1h; strikes remembered until t0+1h+4h.
		now := t0.Add(5*time.Hour - time.Millisecond)
		fail(t, a, "k", now)
		fail(t, a, "k", now)
		lockout, strikes := fail(t, a, "k", now)
		require.Equal(t, 2*time.Hour, lockout)
		require.Equal(t, 2, strikes)
		now = now.Add(2*time.Hour + 4*time.Hour)
		fail(t, a, "k", now)
		fail(t, a, "k", now)
		lockout, strikes = fail(t, a, "k", now)
		require.Equal(t, time.Hour, lockout, "history forgotten: the first lockout again")
		require.Equal(t, 1, strikes)
	})
	t.Run("reset", func(t *testing.T) {
		a, _ := newStores(t)
		for range 3 {
			fail(t, a, "k", t0)
		}
		_, lockout, strikes := settle(t, a, "k", 0, false, true, t0)
		require.Zero(t, lockout)
		require.Zero(t, strikes)
		rem, _ := peek(t, a, "k", t0)
		require.Equal(t, 3, rem)
	})
	t.Run("fail_without_reservation", func(t *testing.T) {
		a, _ := newStores(t)
		settle(t, a, "k", 0, true, false, t0)
		settle(t, a, "k", 0, true, false, t0)
		rem, lockout, strikes := settle(t, a, "k", 0, true, false, t0)
		require.Zero(t, rem)
		require.Equal(t, time.Hour, lockout)
		require.Equal(t, 1, strikes)
		rem, _, _ = settle(t, a, "fresh", 0, false, false, t0)
		require.Equal(t, 3, rem, "a release without a reservation does nothing")
	})
	t.Run("lapsed_attempt_counts_as_failure", func(t *testing.T) {
		a, _ := newStores(t)
		ok, ticket, _, _ := reserve(t, a, "k", t0)
		require.True(t, ok)
		reserve(t, a, "k", t0)
		reserve(t, a, "k", t0)
		ok, _, _, _ = reserve(t, a, "k", t0.Add(time.Minute-time.Millisecond))
		require.False(t, ok, "three in flight")
		// The lease lapses: the three count as failures and lock the key.
		rem, wait := peek(t, a, "k", t0.Add(time.Minute))
		require.Zero(t, rem)
		require.Equal(t, time.Hour, wait)
		rem, lockout, _ := settle(t, a, "k", ticket, false, false, t0.Add(2*time.Minute))
		require.Zero(t, rem, "the lapsed attempt's late success gives nothing back")
		require.Zero(t, lockout)
	})
	t.Run("lapsed_ticket_never_releases_a_new_attempt", func(t *testing.T) {
		a, _ := newStores(t)
		ok, old, _, _ := reserve(t, a, "k", t0)
		require.True(t, ok)
		now := t0.Add(time.Minute) // old lapses: one failure
		ok, _, rem, _ := reserve(t, a, "k", now)
		require.True(t, ok)
		require.Equal(t, 1, rem, "one failure (the lapsed attempt), this one in flight, one left")
		ok, _, _, _ = reserve(t, a, "k", now)
		require.True(t, ok)
		settle(t, a, "k", old, false, false, now)
		ok, _, _, _ = reserve(t, a, "k", now)
		require.False(t, ok, "the stale ticket released nothing")
	})
	t.Run("keys_independent", func(t *testing.T) {
		a, _ := newStores(t)
		for range 3 {
			fail(t, a, "one", t0)
		}
		ok, _, _, _ := reserve(t, a, "one", t0)
		require.False(t, ok)
		ok, _, _, _ = reserve(t, a, "two", t0)
		require.True(t, ok)
	})
	t.Run("shared_between_instances", func(t *testing.T) {
		a, b := newStores(t)
		ok, ticket, _, _ := reserve(t, a, "k", t0)
		require.True(t, ok)
		settle(t, b, "k", ticket, true, false, t0) // settled on the other instance
		fail(t, b, "k", t0)
		lockout, _ := fail(t, a, "k", t0)
		require.Equal(t, time.Hour, lockout)
		ok, _, _, _ = reserve(t, b, "k", t0)
		require.False(t, ok)
	})
	t.Run("concurrent_reserve_exact", func(t *testing.T) {
		a, b := newStores(t)
		fail(t, a, "race", t0) // two left
		var mu sync.Mutex
		var errs []error
		granted := 0
		var wg sync.WaitGroup
		for i := range 60 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				ok, _, _, _, err := s.Reserve(ctx, "race", p, t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					granted++
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Equal(t, 2, granted)
	})
	t.Run("concurrent_failures_lock_once", func(t *testing.T) {
		a, b := newStores(t)
		tickets := make([]int64, 3)
		for i := range tickets {
			ok, ticket, _, _ := reserve(t, a, "race", t0)
			require.True(t, ok)
			tickets[i] = ticket
		}
		var mu sync.Mutex
		var errs []error
		var lockouts []time.Duration
		var wg sync.WaitGroup
		for i, ticket := range tickets {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				_, lockout, _, err := s.Settle(ctx, "race", ticket, true, false, p, t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if lockout > 0 {
					lockouts = append(lockouts, lockout)
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Equal(t, []time.Duration{time.Hour}, lockouts, "exactly one failure spent the budget")
		_, _, strikes := settle(t, a, "race", 0, false, false, t0)
		require.Equal(t, 1, strikes)
	})
	t.Run("many_keys", func(t *testing.T) {
		a, _ := newStores(t)
		for i := range 300 {
			ok, _, _, _ := reserve(t, a, fmt.Sprintf("key-%d", i), t0)
			require.True(t, ok)
		}
	})
}

// ParallelGuesses sends n guesses for one account at once, spread over
// the middleware in wraps (one per instance), each around a handler that
// counts its entries, holds every guess it is given until all the others
// have been answered, and then answers 401. It returns the number of
// guesses that reached the handler and the count of each status. The
// account travels in the X-Account header.
func ParallelGuesses(t *testing.T, wraps []func(http.Handler) http.Handler, n int, account string) (entered int, codes map[int]int) {
	t.Helper()
	gate := make(chan struct{})
	in := make(chan struct{}, n)
	check := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		<-gate
		w.WriteHeader(http.StatusUnauthorized)
	})
	handlers := make([]http.Handler, len(wraps))
	for i, wrap := range wraps {
		handlers[i] = wrap(check)
	}
	results := make(chan int, n)
	for i := range n {
		go func() {
			r := httptest.NewRequest("POST", "/otp", nil)
			r.Header.Set("X-Account", account)
			rec := httptest.NewRecorder()
			handlers[i%len(handlers)].ServeHTTP(rec, r)
			results <- rec.Code
		}()
	}
	codes = map[int]int{}
	answered := 0
	for answered+entered < n {
		select {
		case c := <-results:
			codes[c]++
			answered++
		case <-in:
			entered++
		}
	}
	close(gate)
	for range entered {
		codes[<-results]++
	}
	return entered, codes
}
