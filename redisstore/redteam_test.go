package redisstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
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
	srv := redistest.Shared(t)
	br := redisstore.NewBreaker(redisstore.BreakerConfig{Failures: 2})
	in := newBudgetInstance(t, srv.Addr(), ratelimit.FailureConfig{Budget: 2, Per: time.Hour, StorePolicy: ratelimit.FallbackLocal},
		redisstore.Options{Timeout: testTimeout, Breaker: br})
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

// TestRedTeamClockAheadMintsBudget (clock_ahead_mints_budget): two
// instances share a budget on Redis, one with its clock an hour ahead.
// The scripts measured time on each caller's clock, so the fast instance
// saw the failures recorded through the honest one as refilled and their
// lockout as over: 6 guesses of a budget of 3 reached the handler. The
// server's clock decides now, whichever instance asks first.
func TestRedTeamClockAheadMintsBudget(t *testing.T) {
	srv := redistest.Shared(t)
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	for _, fastFirst := range []bool{false, true} {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		cfg := ratelimit.FailureConfig{Budget: 3, Per: time.Hour}
		honest := newBudgetInstance(t, srv.Addr(), cfg, redisstore.Options{Timeout: testTimeout})
		cfg.Now = ahead
		fast := newBudgetInstance(t, srv.Addr(), cfg, redisstore.Options{Timeout: testTimeout, Now: ahead})
		order := []*budgetInstance{honest, fast}
		if fastFirst {
			order = []*budgetInstance{fast, honest}
		}
		var entered atomic.Int64
		for _, in := range order {
			h := in.budget.Handler(countingGuess(&entered))
			for range 5 {
				sendGuess(context.Background(), h, "alice")
			}
		}
		require.EqualValues(t, 3, entered.Load(), "clock_ahead_mints_budget (fast instance first: %v)", fastFirst)
	}
}

// TestRedTeamClockAheadMintsTokens (clock_ahead_mints_tokens): two
// limiters share a GCRA bucket on Redis, one with its clock an hour
// ahead. On the callers' clocks the fast limiter saw the bucket the
// honest one had drained as refilled, and 6 requests of a limit of 3 an
// hour passed; then the honest one, on its own clock, saw the bucket the
// fast one had filled an hour ahead as empty for an hour. On the
// server's clock they share exactly one limit, in either order.
func TestRedTeamClockAheadMintsTokens(t *testing.T) {
	srv := redistest.Shared(t)
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	newLimiter := func(now func() time.Time) http.Handler {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
		t.Cleanup(func() { _ = rdb.Close() })
		l, err := ratelimit.New(ratelimit.Config{
			Name:         "api",
			Limit:        ratelimit.Limit{Requests: 3, Per: time.Hour},
			Key:          ratelimit.KeyByHeader("X-Device-ID"),
			Store:        redisstore.NewLimitStore(rdb, redisstore.Options{Timeout: testTimeout, Now: now}),
			KeySecret:    bytes.Repeat([]byte{7}, 32),
			StorePolicy:  ratelimit.FailClosed,
			StoreTimeout: testTimeout,
			Now:          now,
			Logger:       slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		return l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	}
	for _, fastFirst := range []bool{false, true} {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		order := []http.Handler{newLimiter(time.Now), newLimiter(ahead)}
		if fastFirst {
			order[0], order[1] = order[1], order[0]
		}
		passed := 0
		for _, h := range order {
			for range 5 {
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("X-Device-ID", "device-1")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code == http.StatusNoContent {
					passed++
				}
			}
		}
		require.Equal(t, 3, passed, "clock_ahead_mints_tokens (fast instance first: %v)", fastFirst)
	}
}
