package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

func newBudget(t *testing.T, cfg FailureConfig) (*FailureBudget, *testClock, *logSink) {
	t.Helper()
	clk := testkit.NewClock(t0)
	logs := &logSink{}
	cfg.Now = clk.Now
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	b, err := NewFailureBudget(cfg)
	require.NoError(t, err)
	return b, clk, logs
}

// login answers 401 unless the password is right.
var login = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Password") == "correct horse" {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
})

func attempt(h http.Handler, account, password string) int {
	r := httptest.NewRequest("POST", "/login", nil)
	r.Header.Set("X-Account", account)
	r.Header.Set("X-Password", password)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Code
}

func TestFailureBudgetLockoutAndRecovery(t *testing.T) {
	b, clk, logs := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 3, Per: 15 * time.Minute, Lockout: 30 * time.Minute, ResetOnSuccess: true})
	h := b.Handler(login)
	for i := range 3 {
		require.Equal(t, 401, attempt(h, "alice", fmt.Sprintf("guess-%d", i)), "guess %d reaches the handler", i+1)
	}
	require.Contains(t, logs.String(), `"event":"failure_budget_exhausted"`, "the third failure spends the budget")

	r := httptest.NewRequest("POST", "/login", nil)
	r.Header.Set("X-Account", "alice")
	r.Header.Set("X-Password", "correct horse")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	require.Equal(t, 429, rec.Code, "locked out, even with the right password")
	require.Equal(t, "1800", rec.Header().Get("Retry-After"))
	require.Equal(t, 401, attempt(h, "bob", "x"), "other accounts are not affected")

	clk.Advance(30 * time.Minute)
	for range 3 {
		require.Equal(t, 401, attempt(h, "alice", "guess"), "lockout over, budget refilled")
	}
	require.Equal(t, 429, attempt(h, "alice", "correct horse"), "a second lockout")
	d := b.Check(t.Context(), "alice")
	require.False(t, d.Allowed)
	require.Equal(t, time.Hour, d.RetryAfter, "back-off doubles")

	clk.Advance(time.Hour)
	require.Equal(t, 200, attempt(h, "alice", "correct horse"))
	require.True(t, b.Check(t.Context(), "alice").Allowed)
	require.Equal(t, 3, b.Check(t.Context(), "alice").Remaining, "success reset the budget")
}

func TestFailureBudgetExplicitCalls(t *testing.T) {
	b, clk, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 1, Per: time.Minute, MaxLockout: 90 * time.Second})
	ctx := t.Context()
	d := b.Fail(ctx, "otp:42")
	require.False(t, d.Allowed, "a budget of one: the first failure spends it")
	require.Equal(t, time.Minute, d.RetryAfter)
	clk.Advance(2 * time.Minute)
	require.True(t, b.Check(ctx, "otp:42").Allowed)
	d = b.Fail(ctx, "otp:42")
	require.Equal(t, 90*time.Second, d.RetryAfter, "doubled, capped at MaxLockout")
	b.Succeed(ctx, "otp:42")
	require.False(t, b.Check(ctx, "otp:42").Allowed, "without ResetOnSuccess a success does not unlock")
}

// TestFailureBudgetReserve drives the Attempt API: the first settlement
// counts, a deferred Fail covers every path that does not succeed.
func TestFailureBudgetReserve(t *testing.T) {
	b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour})
	ctx := t.Context()
	check := func(code string) (err error) {
		a, err := b.Reserve(ctx, "otp:7")
		if err != nil {
			return err
		}
		defer a.Fail(ctx)
		if code != "123456" {
			return errors.New("wrong code")
		}
		a.Succeed(ctx)
		return nil
	}
	for range 5 {
		require.NoError(t, check("123456"), "successes give their places back")
	}
	require.EqualError(t, check("000000"), "wrong code")
	require.EqualError(t, check("111111"), "wrong code")
	err := check("123456")
	require.ErrorIs(t, err, ErrLimited, "budget spent: even the right code is refused")
	le, ok := errors.AsType[*LimitError](err)
	require.True(t, ok)
	require.Equal(t, time.Hour, le.RetryAfter)
}

// TestFailureBudgetParallelGuesses: guesses sent at once must not all
// reach the check. With a budget of 3, at most 3 are in flight; the
// others are refused before the handler.
func TestFailureBudgetParallelGuesses(t *testing.T) {
	t.Run("failure_budget_parallel_guesses", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 3, Per: time.Hour})
		entered, codes := ratelimittest.ParallelGuesses(t, []func(http.Handler) http.Handler{b.Handler}, 200, "alice")
		require.Equal(t, 3, entered, "exactly the budget reaches the handler")
		require.Equal(t, map[int]int{401: 3, 429: 197}, codes)
		require.False(t, b.Check(t.Context(), "alice").Allowed, "the three failures locked the key")
		entered, _ = ratelimittest.ParallelGuesses(t, []func(http.Handler) http.Handler{b.Handler}, 50, "alice")
		require.Zero(t, entered)
	})
	t.Run("failure_budget_parallel_guesses_partly_spent", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 5, Per: time.Hour})
		b.Fail(t.Context(), "alice")
		b.Fail(t.Context(), "alice")
		entered, _ := ratelimittest.ParallelGuesses(t, []func(http.Handler) http.Handler{b.Handler}, 100, "alice")
		require.Equal(t, 3, entered, "only what is left of the budget")
	})
	t.Run("failure_budget_parallel_guesses_shared_store", func(t *testing.T) {
		// Several budgets (as in several instances) on one store: one
		// budget between them, not one each.
		store := NewMemoryFailureStore(100, OverflowReject)
		var wraps []func(http.Handler) http.Handler
		for i := range 4 {
			b, err := NewFailureBudget(FailureConfig{Name: fmt.Sprintf("otp-%d", i), Key: KeyByHeader("X-Account"), Budget: 3, Per: time.Hour,
				Store: store, KeySecret: bytes.Repeat([]byte{1}, 32), Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			wraps = append(wraps, b.Handler)
		}
		entered, _ := ratelimittest.ParallelGuesses(t, wraps, 200, "alice")
		require.Equal(t, 12, entered, "four budgets of different names are four budgets")
	})
}

// TestFailureBudgetUnknownOutcome: an attempt whose outcome is unknown
// counts as a failure, so that it cannot be used to guess for free.
func TestFailureBudgetUnknownOutcome(t *testing.T) {
	t.Run("handler_panics_after_checking_guess", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour})
		h := b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }))
		for range 2 {
			require.Panics(t, func() { attempt(h, "alice", "guess") })
		}
		require.False(t, b.Check(t.Context(), "alice").Allowed, "two panics spent the budget")
		require.Equal(t, 429, attempt(h, "alice", "guess"))
	})
	t.Run("client_gone_handler_writes_nothing", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour})
		h := b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})) // gives up silently
		for range 2 {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			r := httptest.NewRequestWithContext(ctx, "POST", "/login", nil)
			r.Header.Set("X-Account", "alice")
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
		require.False(t, b.Check(t.Context(), "alice").Allowed)
	})
	t.Run("client_gone_failure_still_recorded", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour})
		h := b.Handler(login)
		for range 2 {
			ctx, cancel := context.WithCancel(context.Background())
			r := httptest.NewRequestWithContext(ctx, "POST", "/login", nil)
			r.Header.Set("X-Account", "alice")
			h.ServeHTTP(httptest.NewRecorder(), r)
			cancel()
		}
		require.False(t, b.Check(t.Context(), "alice").Allowed)
	})
	t.Run("attempt_abandoned_counts_after_timeout", func(t *testing.T) {
		b, clk, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour, AttemptTimeout: time.Minute})
		a1, err := b.Reserve(t.Context(), "alice")
		require.NoError(t, err)
		_, err = b.Reserve(t.Context(), "alice")
		require.NoError(t, err)
		_, err = b.Reserve(t.Context(), "alice")
		require.ErrorIs(t, err, ErrLimited, "two in flight fill a budget of two")
		clk.Advance(time.Minute)
		require.False(t, b.Check(t.Context(), "alice").Allowed, "never settled: counted as failures")
		a1.Succeed(t.Context())
		require.False(t, b.Check(t.Context(), "alice").Allowed, "a late success gives nothing back")
	})
	t.Run("other_status_releases", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 1, Per: time.Hour})
		h := b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
		for range 5 {
			require.Equal(t, 400, attempt(h, "alice", "x"), "a malformed request records nothing")
		}
	})
}

// TestFailureBudgetFlood: junk failures on many other keys never reset a
// victim's spent budget, and the store stays bounded.
func TestFailureBudgetFlood(t *testing.T) {
	t.Run("junk_failures_reset_victim", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 3, Per: time.Hour, MaxKeys: 100})
		ctx := t.Context()
		b.Fail(ctx, "victim")
		b.Fail(ctx, "victim") // one failure left, not locked
		// A spray of twenty times MaxKeys.
		for i := range 2_000 {
			b.Fail(ctx, fmt.Sprintf("spray-%d", i))
		}
		require.Equal(t, 100, b.Len())
		require.Equal(t, 1, b.Check(ctx, "victim").Remaining, "the victim's spent budget survives the flood")
		d := b.Fail(ctx, "victim")
		require.False(t, d.Allowed, "and its next failure locks it")
	})
	t.Run("locked_victim_survives_flood", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 1, Per: time.Hour, MaxKeys: 100})
		ctx := t.Context()
		b.Fail(ctx, "victim")
		h := b.Handler(login)
		// A spray of twenty times MaxKeys.
		for i := range 2_000 {
			attempt(h, fmt.Sprintf("spray-%d", i), "junk")
		}
		require.Equal(t, 100, b.Len())
		require.False(t, b.Check(ctx, "victim").Allowed)
	})
	t.Run("overflow_reject_new_keys_fail_closed", func(t *testing.T) {
		b, clk, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour, MaxKeys: 50})
		h := b.Handler(login)
		for i := range 50 {
			require.Equal(t, 401, attempt(h, fmt.Sprintf("spray-%d", i), "junk"))
		}
		require.Equal(t, 429, attempt(h, "newcomer", "correct horse"), "full of restricting keys: a new key is refused")
		require.Equal(t, 401, attempt(h, "spray-1", "junk"), "keys already held go on")
		clk.Advance(30 * time.Minute) // one failure refills: spray keys stop restricting
		require.Equal(t, 200, attempt(h, "newcomer", "correct horse"), "room again")
	})
	t.Run("overflow_share_new_keys_share_one_budget", func(t *testing.T) {
		b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour, MaxKeys: 50, Overflow: OverflowShare})
		h := b.Handler(login)
		for i := range 50 {
			attempt(h, fmt.Sprintf("spray-%d", i), "junk")
		}
		require.Equal(t, 401, attempt(h, "new-1", "junk"))
		require.Equal(t, 401, attempt(h, "new-2", "junk"), "the shared budget of two is spent")
		require.Equal(t, 429, attempt(h, "new-3", "correct horse"))
		require.Equal(t, 50, b.Len())
	})
	t.Run("strike_history_evicted_last_resort", func(t *testing.T) {
		// A key whose budget is whole again holds only its lockout
		// history: that may go to make room, the budget was not spent.
		b, clk, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 1, Per: time.Minute, Lockout: time.Minute, MaxKeys: 1})
		ctx := t.Context()
		b.Fail(ctx, "old")
		clk.Advance(time.Minute)
		require.True(t, b.Check(ctx, "new").Allowed, "the history-only key makes room")
		b.Fail(ctx, "new")
		require.Equal(t, 1, b.Len())
	})
}

// TestFailureBudgetConcurrentSettle: many goroutines fail, succeed and
// reserve on one key at once; the budget's counts stay exact.
func TestFailureBudgetConcurrentSettle(t *testing.T) {
	b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 10, Per: time.Hour})
	ctx := t.Context()
	var mu sync.Mutex
	var attempts []*Attempt
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if a, err := b.Reserve(ctx, "k"); err == nil {
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, attempts, 10)
	var locks sync.WaitGroup
	lockedOut := 0
	for i, a := range attempts {
		locks.Go(func() {
			if i%2 == 0 {
				a.Succeed(ctx)
				return
			}
			if d := a.Fail(ctx); !d.Allowed {
				mu.Lock()
				lockedOut++
				mu.Unlock()
			}
		})
	}
	locks.Wait()
	require.Zero(t, lockedOut, "five failures of ten")
	require.Equal(t, 5, b.Check(ctx, "k").Remaining)
}

func TestFailureBudgetConfigNamesTheField(t *testing.T) {
	base := func(f func(*FailureConfig)) FailureConfig {
		cfg := FailureConfig{Key: KeyByIP(), Budget: 3, Per: time.Minute}
		f(&cfg)
		return cfg
	}
	tests := []struct {
		name string
		cfg  FailureConfig
		want string
	}{
		{name: "negative_budget", cfg: base(func(c *FailureConfig) { c.Budget = -1 }), want: "ratelimit: FailureConfig.Budget is required and must be positive, got -1"},
		{name: "negative_per", cfg: base(func(c *FailureConfig) { c.Per = -time.Second }), want: "ratelimit: FailureConfig.Per must not be negative, got -1s"},
		{name: "zero_per", cfg: base(func(c *FailureConfig) { c.Per = 0 }), want: "ratelimit: FailureConfig.Per is required"},
		{name: "negative_lockout", cfg: base(func(c *FailureConfig) { c.Lockout = -time.Second }), want: "ratelimit: FailureConfig.Lockout must not be negative, got -1s"},
		{name: "negative_max_lockout", cfg: base(func(c *FailureConfig) { c.MaxLockout = -time.Hour }), want: "ratelimit: FailureConfig.MaxLockout must not be negative, got -1h0m0s"},
		{name: "negative_attempt_timeout", cfg: base(func(c *FailureConfig) { c.AttemptTimeout = -time.Second }), want: "ratelimit: FailureConfig.AttemptTimeout must not be negative, got -1s"},
		{name: "negative_store_timeout", cfg: base(func(c *FailureConfig) { c.StoreTimeout = -time.Millisecond }), want: "ratelimit: FailureConfig.StoreTimeout must not be negative, got -1ms"},
		{name: "negative_max_keys", cfg: base(func(c *FailureConfig) { c.MaxKeys = -5 }), want: "ratelimit: FailureConfig.MaxKeys must not be negative, got -5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFailureBudget(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestFailureBudgetConfig(t *testing.T) {
	_, err := NewFailureBudget(FailureConfig{Budget: 1, Per: time.Second})
	require.ErrorContains(t, err, "Key is required")
	_, err = NewFailureBudget(FailureConfig{Key: KeyByIP()})
	require.ErrorContains(t, err, "Budget")
	_, err = NewFailureBudget(FailureConfig{Key: KeyByIP(), Budget: 1, Per: time.Second, Store: NewMemoryFailureStore(1, OverflowReject)})
	require.ErrorContains(t, err, "KeySecret")
	store := NewMemoryFailureStore(10, OverflowReject)
	cfg := FailureConfig{Name: "otp", Key: KeyByIP(), Budget: 1, Per: time.Second, Store: store, KeySecret: bytes.Repeat([]byte{1}, 32)}
	first, err := NewFailureBudget(cfg)
	require.NoError(t, err)
	_, err = NewFailureBudget(cfg)
	require.ErrorIs(t, err, ErrNamespaceTaken, "two budgets of one name would share entries")
	require.NoError(t, first.Close())
	_, err = NewFailureBudget(cfg)
	require.NoError(t, err)
}
