package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

var (
	_ ratelimit.FailureStore     = (*redisstore.FailureStore)(nil)
	_ ratelimit.NamespaceClaimer = (*redisstore.FailureStore)(nil)
	_ ratelimit.Store            = (*redisstore.LimitStore)(nil)
	_ ratelimit.NamespaceClaimer = (*redisstore.LimitStore)(nil)
)

// budgetInstance is one instance of a service: its own Redis client and
// FailureStore, a FailureBudget "otp" keyed by the X-Account header.
type budgetInstance struct {
	budget *ratelimit.FailureBudget
}

func newBudgetInstance(t *testing.T, addr string, cfg ratelimit.FailureConfig, opts redisstore.Options) *budgetInstance {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
	t.Cleanup(func() { _ = rdb.Close() })
	cfg.Name = "otp"
	cfg.Key = ratelimit.KeyByHeader("X-Account")
	cfg.Store = redisstore.NewFailureStore(rdb, opts)
	cfg.KeySecret = bytes.Repeat([]byte{5}, 32)
	cfg.StoreTimeout = testTimeout
	cfg.Logger = slog.New(slog.DiscardHandler)
	b, err := ratelimit.NewFailureBudget(cfg)
	require.NoError(t, err)
	return &budgetInstance{budget: b}
}

// TestFailureBudgetShareRedis: N instances on one Redis enforce one
// budget, not N; guesses sent at once to all of them never reach the
// handler more often than the budget allows.
func TestFailureBudgetShareRedis(t *testing.T) {
	srv := redistest.Shared(t)
	t.Run("failure_budget_parallel_guesses", func(t *testing.T) {
		var wraps []func(http.Handler) http.Handler
		for range 4 {
			in := newBudgetInstance(t, srv.Addr(), ratelimit.FailureConfig{Budget: 3, Per: time.Hour}, redisstore.Options{Timeout: testTimeout})
			wraps = append(wraps, in.budget.Handler)
		}
		entered, codes := ratelimittest.ParallelGuesses(t, wraps, 200, "alice")
		require.Equal(t, 3, entered, "one budget across four instances")
		require.Equal(t, map[int]int{401: 3, 429: 197}, codes)
		for _, wrap := range wraps {
			entered, _ := ratelimittest.ParallelGuesses(t, []func(http.Handler) http.Handler{wrap}, 20, "alice")
			require.Zero(t, entered, "locked out on every instance")
		}
		entered, _ = ratelimittest.ParallelGuesses(t, wraps, 40, "bob")
		require.Equal(t, 3, entered, "another account has its own budget")
	})
}

// TestFailureBudgetRedisOutage stops the real redis-server: the budget
// follows its StorePolicy (FailClosed by default), and shares one budget
// again once Redis is back.
func TestFailureBudgetRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	var later atomic.Int64 // moves the stores' breaker clock past its cool-down
	opts := redisstore.Options{Timeout: testTimeout, Now: func() time.Time { return time.Now().Add(time.Duration(later.Load())) }}
	closed := newBudgetInstance(t, srv.Addr(), ratelimit.FailureConfig{Budget: 2, Per: time.Hour}, opts)
	local := newBudgetInstance(t, srv.Addr(), ratelimit.FailureConfig{Budget: 2, Per: time.Hour, StorePolicy: ratelimit.FallbackLocal}, opts)
	open := newBudgetInstance(t, srv.Addr(), ratelimit.FailureConfig{Budget: 2, Per: time.Hour, StorePolicy: ratelimit.FailOpen}, opts)
	wrong := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	guess := func(in *budgetInstance, account string) int {
		r := httptest.NewRequest("POST", "/otp", nil)
		r.Header.Set("X-Account", account)
		rec := httptest.NewRecorder()
		in.budget.Handler(wrong).ServeHTTP(rec, r)
		return rec.Code
	}
	require.Equal(t, 401, guess(closed, "alice"))
	require.Equal(t, 401, guess(local, "alice"))
	require.Equal(t, 429, guess(open, "alice"), "one budget of two, spent across the instances")

	srv.Stop()
	for range 3 {
		require.Equal(t, 503, guess(closed, "carol"), "FailClosed: no guess while the store is away")
	}
	for range 2 {
		require.Equal(t, 401, guess(local, "carol"), "FallbackLocal: a budget of this instance's own")
	}
	require.Equal(t, 429, guess(local, "carol"), "and it still locks out")
	for range 5 {
		require.Equal(t, 401, guess(open, "carol"), "FailOpen: unbudgeted")
	}
	d := closed.budget.Check(context.Background(), "dave")
	require.False(t, d.Allowed, "Check fails closed too")

	srv.Restart()
	later.Add(int64(time.Minute)) // past every breaker's cool-down
	require.Eventually(t, func() bool { return guess(closed, "erin") == 401 }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, 401, guess(local, "erin"))
	require.Equal(t, 429, guess(open, "erin"), "shared again after the restart")
}

// TestFailureBudgetSameNameOneStore: two budgets of one name on one store
// would share every key: New refuses the second.
func TestFailureBudgetSameNameOneStore(t *testing.T) {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}})
	defer rdb.Close()
	store := redisstore.NewFailureStore(rdb, redisstore.Options{})
	cfg := ratelimit.FailureConfig{Name: "otp", Key: ratelimit.KeyByIP(), Budget: 3, Per: time.Hour, Store: store, KeySecret: bytes.Repeat([]byte{1}, 32)}
	_, err := ratelimit.NewFailureBudget(cfg)
	require.NoError(t, err)
	_, err = ratelimit.NewFailureBudget(cfg)
	require.ErrorIs(t, err, ratelimit.ErrNamespaceTaken)
	cfg.Name = "password"
	_, err = ratelimit.NewFailureBudget(cfg)
	require.NoError(t, err)
}

// Two instances of a login service share one failure budget through
// Redis: three failures per account, wherever they land.
func ExampleNewFailureStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	instance := func() http.Handler {
		b, err := ratelimit.NewFailureBudget(ratelimit.FailureConfig{
			Name:      "login",
			Key:       ratelimit.KeyByHeader("X-Account"),
			Budget:    3,
			Per:       15 * time.Minute,
			Store:     redisstore.NewFailureStore(rdb, redisstore.Options{Prefix: "example:failures:", Timeout: testTimeout}),
			KeySecret: bytes.Repeat([]byte{9}, 32), // from your secret store
			// Generous, so that the example holds on a busy machine; the
			// defaults (100ms) suit a production Redis.
			StoreTimeout: testTimeout,
			Logger:       slog.New(slog.DiscardHandler),
		})
		if err != nil {
			panic(err)
		}
		return b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized) // a wrong password
		}))
	}
	a, b := instance(), instance()
	for i, h := range []http.Handler{a, b, a, b} {
		r := httptest.NewRequest("POST", "/login", nil)
		r.Header.Set("X-Account", fmt.Sprintf("user-%d", 42))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		fmt.Printf("attempt %d on instance %c: %d\n", i+1, "ABAB"[i], rec.Code)
	}
	// Output:
	// attempt 1 on instance A: 401
	// attempt 2 on instance B: 401
	// attempt 3 on instance A: 401
	// attempt 4 on instance B: 429
}
