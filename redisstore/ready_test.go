package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestReadyFollowsRedis: every store, and the limiter and failure budget
// on them, are ready while Redis answers, report an error naming the
// address once it hangs (within Options.Timeout: the error is the
// deadline) or stops, and are ready again once it is back.
func TestReadyFollowsRedis(t *testing.T) {
	srv := redistest.Start(t)
	const password = "s3cret-redis-password"
	secret := bytes.Repeat([]byte{3}, 32)
	ctx := context.Background()
	// Breakers that never open: this test is about Ready's answers, and
	// TestReadyThroughBreaker is about the breaker.
	opts := func() redisstore.Options {
		return redisstore.Options{Timeout: 100 * time.Millisecond, Breaker: redisstore.NewBreaker(redisstore.BreakerConfig{Failures: 1 << 30})}
	}
	newClient := func(password string) redis.UniversalClient {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, Password: password, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	rdb := newClient("")
	limits, failures := redisstore.NewLimitStore(rdb, opts()), redisstore.NewFailureStore(rdb, opts())
	lim, err := ratelimit.New(ratelimit.Config{Limit: ratelimit.Limit{Requests: 1, Per: time.Second}, Key: ratelimit.KeyByIP(), Store: limits, KeySecret: secret})
	require.NoError(t, err)
	budget, err := ratelimit.NewFailureBudget(ratelimit.FailureConfig{Key: ratelimit.KeyByIP(), Budget: 1, Per: time.Second, Store: failures, KeySecret: secret})
	require.NoError(t, err)

	checks := []struct {
		name  string
		ready func(context.Context) error
	}{
		{"LimitStore", limits.Ready},
		{"FailureStore", failures.Ready},
		{"ReplayStore", redisstore.NewReplayStore(rdb, opts()).Ready},
		{"AttestStore", redisstore.NewAttestStore(rdb, opts()).Ready},
		{"Limiter", lim.Ready},
		{"FailureBudget", budget.Ready},
	}
	requireReady := func(step string) {
		t.Helper()
		for _, c := range checks {
			require.NoError(t, c.ready(ctx), "%s: %s", step, c.name)
		}
	}
	requireNotReady := func(step string, cause ...error) {
		t.Helper()
		for _, c := range checks {
			err := c.ready(ctx)
			require.ErrorIs(t, err, redisstore.ErrUnavailable, "%s: %s", step, c.name)
			require.True(t, isAny(err, cause...), "%s: %s: want one of %v in %v", step, c.name, cause, err)
			require.ErrorContains(t, err, "redisstore: Redis at "+srv.Addr()+" not ready: ", "%s: %s names the address", step, c.name)
			if c.name == "Limiter" || c.name == "FailureBudget" {
				require.ErrorIs(t, err, ratelimit.ErrStoreUnavailable, "%s: %s", step, c.name)
			}
		}
	}

	requireReady("up")

	srv.Pause() // hung: the kernel accepts connections, nothing answers
	// The call's deadline (Options.Timeout), on the context or on the
	// socket go-redis set from it: the check did not wait longer.
	requireNotReady("hung", context.DeadlineExceeded, os.ErrDeadlineExceeded)
	srv.Resume()
	requireReady("resumed")

	srv.Stop()
	requireNotReady("stopped", syscall.ECONNREFUSED)
	srv.Restart()
	requireReady("restarted")

	// A client with a wrong password: its PING is refused, and the error
	// names the address but not the password.
	_, err = srv.Do("CONFIG", "SET", "requirepass", "the-right-one")
	require.NoError(t, err)
	err = redisstore.NewLimitStore(newClient(password), opts()).Ready(ctx)
	require.ErrorIs(t, err, redisstore.ErrUnavailable)
	require.ErrorContains(t, err, srv.Addr())
	require.NotContains(t, err.Error(), password)
}

func isAny(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// TestReadyThroughBreaker: Ready's PING is a call like any other. Once
// Redis is down its failure opens the breaker, Ready then fails at once
// with ErrBreakerOpen, and after the cool-down its PING is the probe
// that closes the breaker again.
func TestReadyThroughBreaker(t *testing.T) {
	srv := redistest.Start(t)
	var later atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
	br := redisstore.NewBreaker(redisstore.BreakerConfig{Failures: 1, CoolDown: time.Minute})
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s := redisstore.NewReplayStore(rdb, redisstore.Options{Timeout: 200 * time.Millisecond, Breaker: br, Now: now})
	ctx := context.Background()

	require.NoError(t, s.Ready(ctx))
	srv.Stop()
	err := s.Ready(ctx)
	require.ErrorIs(t, err, redisstore.ErrUnavailable)
	require.NotErrorIs(t, err, redisstore.ErrBreakerOpen, "the first failure reached Redis")
	require.Equal(t, redisstore.BreakerOpen, br.State())
	srv.Restart()
	require.ErrorIs(t, s.Ready(ctx), redisstore.ErrBreakerOpen, "open: no PING until the cool-down has passed")
	later.Store(int64(time.Minute))
	require.NoError(t, s.Ready(ctx), "the probe PING succeeds")
	require.Equal(t, redisstore.BreakerClosed, br.State())
}
