package ratelimit

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
	b, clk, logs := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 3, Per: time.Hour, Lockout: time.Minute, ResetOnSuccess: true})
	h := b.Handler(login)
	for i := range 3 {
		require.Equal(t, 401, attempt(h, "alice", fmt.Sprintf("guess-%d", i)), "guess %d reaches the handler", i)
	}
	require.Equal(t, 401, attempt(h, "alice", "guess-4"), "the fourth failure spends the budget")
	require.Contains(t, logs.String(), `"event":"failure_budget_exhausted"`)

	r := httptest.NewRequest("POST", "/login", nil)
	r.Header.Set("X-Account", "alice")
	r.Header.Set("X-Password", "correct horse")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	require.Equal(t, 429, rec.Code, "locked out, even with the right password")
	require.Equal(t, "60", rec.Header().Get("Retry-After"))
	require.Equal(t, 401, attempt(h, "bob", "x"), "other accounts are not affected")

	clk.Advance(time.Minute)
	require.Equal(t, 401, attempt(h, "alice", "guess-5"), "lockout over")
	require.Equal(t, 429, attempt(h, "alice", "correct horse"), "budget still spent: a second lockout")
	d := b.Check(t.Context(), "alice")
	require.False(t, d.Allowed)
	require.Equal(t, 2*time.Minute, d.RetryAfter, "back-off doubles")

	clk.Advance(2 * time.Minute)
	require.Equal(t, 200, attempt(h, "alice", "correct horse"))
	require.True(t, b.Check(t.Context(), "alice").Allowed)
	require.Equal(t, 3, b.Check(t.Context(), "alice").Remaining, "success reset the budget")
}

func TestFailureBudgetExplicitCalls(t *testing.T) {
	b, clk, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 1, Per: time.Minute, MaxLockout: 90 * time.Second})
	ctx := t.Context()
	require.True(t, b.Fail(ctx, "otp:42").Allowed)
	d := b.Fail(ctx, "otp:42")
	require.False(t, d.Allowed)
	require.Equal(t, time.Minute, d.RetryAfter)
	clk.Advance(2 * time.Minute)
	b.Fail(ctx, "otp:42")
	d = b.Fail(ctx, "otp:42")
	require.Equal(t, 90*time.Second, d.RetryAfter, "capped at MaxLockout")
	b.Succeed(ctx, "otp:42")
	require.False(t, b.Check(ctx, "otp:42").Allowed, "without ResetOnSuccess a success does not unlock")
}

func TestFailureBudgetBounded(t *testing.T) {
	b, _, _ := newBudget(t, FailureConfig{Key: KeyByHeader("X-Account"), Budget: 1, Per: time.Hour, MaxKeys: 100})
	ctx := t.Context()
	b.Fail(ctx, "victim")
	b.Fail(ctx, "victim") // locked
	for i := range 10_000 {
		b.Fail(ctx, fmt.Sprintf("spray-%d", i))
	}
	require.Equal(t, 100, b.Len())
	require.False(t, b.Check(ctx, "victim").Allowed, "a locked key survives a flood of new keys")
}

func TestFailureBudgetConfig(t *testing.T) {
	_, err := NewFailureBudget(FailureConfig{Budget: 1, Per: time.Second})
	require.ErrorContains(t, err, "Key is required")
	_, err = NewFailureBudget(FailureConfig{Key: KeyByIP()})
	require.ErrorContains(t, err, "Budget")
	var buf bytes.Buffer
	_ = buf
}
