package redisstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/stretchr/testify/require"
)

// countingGuess returns a handler that counts the guesses it checks and
// answers 401.
func countingGuess(entered *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	})
}

// sendGuess sends one guess for account through h with ctx.
func sendGuess(ctx context.Context, h http.Handler, account string) int {
	r := httptest.NewRequestWithContext(ctx, "POST", "/otp", nil)
	r.Header.Set("X-Account", account)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Code
}

// TestRedTeamHangupOnRedis: under FallbackLocal, clients that hang up
// before their attempt is reserved do not get guesses checked against the
// instance's local budget while Redis is healthy, and do not open the
// breaker.
func TestRedTeamHangupOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	br := redisstore.NewBreaker(redisstore.BreakerConfig{Failures: 2})
	in := newBudgetInstance(t, srv.Addr(), ratelimit.FailureConfig{Budget: 2, Per: time.Hour, StorePolicy: ratelimit.FallbackLocal},
		redisstore.Options{Timeout: 500 * time.Millisecond, Breaker: br})
	var entered atomic.Int64
	h := in.budget.Handler(countingGuess(&entered))
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		sendGuess(gone, h, "alice")
	}
	require.Zero(t, entered.Load(), "hang_up_takes_local_budget")
	require.Equal(t, redisstore.BreakerClosed, br.State(), "hang-ups never open the breaker")
	for range 5 {
		sendGuess(context.Background(), h, "alice")
	}
	require.EqualValues(t, 2, entered.Load(), "the shared budget, once")
}

// TestRedTeamClockAheadMintsBudget: two instances share a budget on
// Redis, one with its clock an hour ahead. Failures recorded through the
// honest instance must not look refilled to the fast one.
func TestRedTeamClockAheadMintsBudget(t *testing.T) {
	t.Skip("finding: the scripts trust each caller's clock; an instance whose clock is ahead sees failures recorded by the others as refilled early (see report)")
	srv := redistest.Start(t)
	cfg := ratelimit.FailureConfig{Budget: 3, Per: time.Hour}
	honest := newBudgetInstance(t, srv.Addr(), cfg, redisstore.Options{Timeout: 500 * time.Millisecond})
	cfg.Now = func() time.Time { return time.Now().Add(time.Hour) }
	fast := newBudgetInstance(t, srv.Addr(), cfg, redisstore.Options{Timeout: 500 * time.Millisecond})
	var entered atomic.Int64
	for _, in := range []*budgetInstance{honest, fast} {
		h := in.budget.Handler(countingGuess(&entered))
		for range 5 {
			sendGuess(context.Background(), h, "alice")
		}
	}
	require.EqualValues(t, 3, entered.Load(), "clock_ahead_mints_budget")
}
