package redisstore

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/internal/replaytest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// testTimeout bounds the store calls of tests that expect Redis to answer:
// generous, for -race on a busy two-core machine, where a call that
// timed out would fail a test that means something else (or, behind a
// FallbackLocal limiter, admit a request silently). On the caller's clock
// (InsecureTrustCallerClock) a key outlives its state by the timeout on
// Redis's clock, so it also covers a frozen fake clock for that long.
const testTimeout = 10 * time.Second

// newClient returns a client for a healthy redis-server at addr, configured
// as the package doc recommends, with a dial timeout as generous as
// testTimeout.
func newClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1, DialerRetries: 1, DialTimeout: testTimeout, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestReplayStoreConformance(t *testing.T) {
	srv := redistest.Shared(t)
	replaytest.Run(t, func(t *testing.T) (replaytest.Store, replaytest.Store, func() time.Time) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		// The concurrency cases make thousands of calls at once, on a
		// machine that may be busy.
		a := NewReplayStore(newClient(t, srv.Addr()), Options{Timeout: testTimeout})
		b := NewReplayStore(newClient(t, srv.Addr()), Options{Timeout: testTimeout})
		return a, b, time.Now
	})
}

func TestReplayStoreTTL(t *testing.T) {
	srv := redistest.Shared(t)
	c := newClient(t, srv.Addr())
	s := NewReplayStore(c, Options{Prefix: "t:"})
	ok, err := s.Use(context.Background(), "jti", time.Now().Add(90*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	ttl, err := c.PTTL(context.Background(), s.opts.key(purposeReplay, "", "jti")).Result()
	require.NoError(t, err)
	require.InDelta(t, 90*time.Second, ttl, float64(2*time.Second), "the key expires with the id")
}

func TestReplayStoreOutageFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := NewReplayStore(newClient(t, srv.Addr()), Options{Timeout: testTimeout})
	ok, err := s.Use(context.Background(), "a", time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok)

	srv.Stop()
	ok, err = s.Use(context.Background(), "b", time.Now().Add(time.Minute))
	require.ErrorIs(t, err, ErrUnavailable)
	require.False(t, ok, "never fresh without Redis")

	srv.Restart()
	require.Eventually(t, func() bool {
		ok, err := s.Use(context.Background(), "c", time.Now().Add(time.Minute))
		return err == nil && ok
	}, 5*time.Second, 50*time.Millisecond, "recovers when Redis is back")
}

func TestReplayStoreTimeout(t *testing.T) {
	srv := redistest.Start(t)
	s := NewReplayStore(newClient(t, srv.Addr()), Options{Timeout: 50 * time.Millisecond})
	srv.Pause() // hung: connections accepted, no answer
	_, err := s.Use(context.Background(), "slow", time.Now().Add(time.Minute))
	require.ErrorIs(t, err, ErrUnavailable)
	// The call ended on Options.Timeout (the context's deadline, or the
	// socket deadline go-redis set from it), not when Redis came back.
	require.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded), "a hung Redis hits the timeout: %v", err)
	srv.Resume()
}

func TestNewReplayStorePanicsOnNil(t *testing.T) {
	require.PanicsWithValue(t, "redisstore: nil client", func() { NewReplayStore(nil, Options{}) })
}

func TestSigningReplayStoreConformance(t *testing.T) {
	srv := redistest.Shared(t)
	replaytest.RunSigning(t, func(t *testing.T) (replaytest.SigningStore, replaytest.SigningStore, func() time.Time) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		o := Options{Timeout: testTimeout} // as above
		return NewReplayStore(newClient(t, srv.Addr()), o), NewReplayStore(newClient(t, srv.Addr()), o), time.Now
	})
}

// TestReplayNamespaces: stores of two namespaces on one Redis and one
// Prefix (two verifiers) keep their ids, nonces and marks apart
// (mark_inflated_across_verifiers: one verifier's key dated ahead does
// not raise the other's mark for the same key ID); within a namespace a
// mark is per key ID; and no key name holds a key ID, nonce, id or
// namespace in the clear.
func TestReplayNamespaces(t *testing.T) {
	srv := redistest.Shared(t)
	c := newClient(t, srv.Addr())
	ctx := context.Background()
	base := NewReplayStore(c, Options{})
	a, b := base.WithNamespace("api-a"), base.WithNamespace("api-b")
	now := time.Now().Truncate(time.Second)
	exp := now.Add(time.Minute)

	for _, s := range []*ReplayStore{a, b, base} {
		ok, err := s.UseNonce(ctx, "device-42", "nonce-0123", now, exp)
		require.NoError(t, err)
		require.True(t, ok, "each namespace has its own nonces")
		ok, err = s.Use(ctx, "jti-0123", exp)
		require.NoError(t, err)
		require.True(t, ok, "and its own ids")
	}
	ok, err := a.UseNonce(ctx, "device-42", "nonce-0123", now, exp)
	require.NoError(t, err)
	require.False(t, ok, "a replay within the namespace")
	ok, err = a.WithNamespace("api-a").UseNonce(ctx, "device-42", "nonce-0123", now, exp)
	require.NoError(t, err)
	require.False(t, ok, "another store of the same namespace sees it")

	const slack = 5 * time.Second
	ok, err = a.Advance(ctx, "device-42", now.Add(30*time.Second), slack, time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = b.Advance(ctx, "device-42", now, slack, time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "another verifier's key of the same ID is not held back")
	ok, err = a.Advance(ctx, "device-7", now, slack, time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "another key of the same verifier is not held back")
	ok, err = a.Advance(ctx, "device-42", now, slack, time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "the key that dated ahead holds back only itself")

	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 3*2+3, "nonces and ids of three namespaces; marks of device-42 in two, device-7 in one")
	for _, k := range keys {
		require.Regexp(t, `^apiguard:(replay|nonce|mark):[0-9a-f]{64}$`, k)
	}
}

// TestReplayStoreQueuedCalls: an id used once and used again by a call
// made before it expired on the caller's clock, that reaches Redis late (a
// flood queues calls in the client's pool; here Redis is paused, so its
// clock moves on while the stamp stands still), is a replay. On the
// caller's clock (InsecureTrustCallerClock) the key used to expire on
// Redis's clock when the id did on the caller's, plus MaxClockSkew: a
// call queued for longer than that found the id forgotten whenever
// Options.Timeout exceeded MaxClockSkew. On the server's clock the
// expiry is absolute and the script refuses an id past it on the same
// clock.
func TestReplayStoreQueuedCalls(t *testing.T) {
	srv := redistest.Start(t)
	for _, mode := range []struct {
		name  string
		trust bool
		stamp func() time.Time // the stamp of every call: Options.Now stands still at it
		life  time.Duration    // the id's, from the stamp
		pause string           // DEBUG SLEEP: past the id's expiry and the skew by 200ms
	}{
		{"caller_clock", true, func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }, 100 * time.Millisecond, "0.3"},
		// Real time: the first call must reach Redis within the id's life.
		{"server_clock", false, time.Now, time.Second, "1.2"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			stamp := mode.stamp()
			s := NewReplayStore(newClient(t, srv.Addr()), Options{Prefix: mode.name + ":", Timeout: testTimeout, MaxClockSkew: time.Millisecond,
				InsecureTrustCallerClock: mode.trust, Now: func() time.Time { return stamp }})
			t.Run("queued_use_forgets_id", func(t *testing.T) {
				exp := stamp.Add(mode.life)
				ok, err := s.Use(t.Context(), "jti", exp)
				require.NoError(t, err)
				require.True(t, ok)
				// Redis's clock passes the id's expiry on the caller's
				// clock, and the skew: well within the timeout.
				_, err = srv.Do("DEBUG", "SLEEP", mode.pause)
				require.NoError(t, err)
				ok, err = s.Use(t.Context(), "jti", exp)
				require.NoError(t, err)
				require.False(t, ok, "used once, whenever the second call reaches Redis")
			})
		})
	}
}
