package redisstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestFailurePurposeIsATagOfItsOwn(t *testing.T) {
	require.True(t, validPurpose(purposeFailure))
	require.NotContains(t, allPurposes, purposeFailure)
}

func TestFailureStoreConformance(t *testing.T) {
	srv := redistest.Shared(t)
	ratelimittest.RunFailure(t, func(t *testing.T) (ratelimittest.FailureStore, ratelimittest.FailureStore) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		// The suite's fake clock decides: the stores trust it. The
		// timeout is generous (-race on a busy two-core machine), and the
		// suite's clock stands still while a case runs, for up to the
		// timeout past a key's state on Redis's clock.
		o := Options{Timeout: testTimeout, InsecureTrustCallerClock: true}
		return NewFailureStore(newClient(t, srv.Addr()), o), NewFailureStore(newClient(t, srv.Addr()), o)
	})
}

// TestFailureStoreClusterConformance runs the suite on a three-node Redis
// Cluster: each decision is one script on one key.
func TestFailureStoreClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	c := redistest.SharedCluster(t)
	var n atomic.Int64
	ratelimittest.RunFailure(t, func(t *testing.T) (ratelimittest.FailureStore, ratelimittest.FailureStore) {
		o := Options{Prefix: fmt.Sprintf("t%d:", n.Add(1)), Timeout: testTimeout, InsecureTrustCallerClock: true}
		client := func() redis.UniversalClient {
			rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: testTimeout})
			if _, ok := rdb.(*redis.ClusterClient); !ok {
				t.Fatalf("not a cluster client: %T", rdb)
			}
			t.Cleanup(func() { _ = rdb.Close() })
			return rdb
		}
		return NewFailureStore(client(), o), NewFailureStore(client(), o)
	})
}

// TestFailureStoreKeys: the key name holds no raw key, and expires once it
// no longer restricts.
func TestFailureStoreKeys(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := newClient(t, srv.Addr())
	s := NewFailureStore(rdb, Options{Prefix: "p:", Timeout: testTimeout, InsecureTrustCallerClock: true}) // the calls below move now
	// On the caller's clock, a key outlives the state it holds by the
	// timeout.
	lag := testTimeout
	// near: PTTL only falls while the test runs, so it is at most the
	// expected TTL (rounded up to whole milliseconds), and a loaded
	// machine may have spent some of it.
	near := func(want, ttl time.Duration, msg ...any) {
		t.Helper()
		require.LessOrEqual(t, ttl, want+lag+time.Millisecond, msg...)
		require.Greater(t, ttl, want+lag-400*time.Millisecond, msg...)
	}
	p := FailurePolicy{Budget: 2, Per: time.Minute, Lockout: time.Minute, MaxLockout: time.Hour, Lease: time.Second}
	now := time.Now()
	ok, ticket, _, _, err := s.Reserve(t.Context(), "hashed-key", p, now)
	require.NoError(t, err)
	require.True(t, ok)
	keys, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	key := keys[0]
	require.Regexp(t, `^p:fb:[0-9a-f]{64}$`, key, "prefix, purpose, digest: nothing raw")
	require.Equal(t, s.opts.key(purposeFailure, "hashed-key"), key)
	ttl, err := rdb.PTTL(t.Context(), key).Result()
	require.NoError(t, err)
	near(31*time.Second, ttl,
		"kept for the lease of the attempt in flight, and the refill of the failure it lapses into")
	// A call just before the lease ends must not let the key expire with
	// it: the lapsed attempt is a failure that the key must still hold.
	_, _, err = s.Peek(t.Context(), "hashed-key", p, now.Add(time.Second-time.Millisecond))
	require.NoError(t, err)
	ttl, err = rdb.PTTL(t.Context(), key).Result()
	require.NoError(t, err)
	near(30*time.Second, ttl)
	_, _, _, err = s.Settle(t.Context(), "hashed-key", ticket, false, false, p, now)
	require.NoError(t, err)
	n, err := rdb.Exists(t.Context(), key).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a key that restricts nothing is deleted")
	_, _, _, err = s.Settle(t.Context(), "hashed-key", 0, true, false, p, now)
	require.NoError(t, err)
	ttl, err = rdb.PTTL(t.Context(), key).Result()
	require.NoError(t, err)
	near(30*time.Second, ttl, "kept until the failure refills")
}

// TestFailureStoreKeyOnServerClock: a failure recorded by an instance
// whose clock runs an hour ahead is kept until it refills on the Redis
// server's clock, neither an hour too long nor, seen from an instance an
// hour behind, already refilled.
func TestFailureStoreKeyOnServerClock(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := newClient(t, srv.Addr())
	s := NewFailureStore(rdb, Options{})
	p := FailurePolicy{Budget: 2, Per: time.Minute, Lockout: time.Minute, MaxLockout: time.Hour, Lease: time.Second}
	before, err := rdb.Time(t.Context()).Result()
	require.NoError(t, err)
	_, _, _, err = s.Settle(t.Context(), "k", 0, true, false, p, time.Now().Add(time.Hour))
	require.NoError(t, err)
	after, err := rdb.Time(t.Context()).Result()
	require.NoError(t, err)
	at, err := rdb.Do(t.Context(), "PEXPIRETIME", s.redisKey("k")).Int64()
	require.NoError(t, err)
	require.False(t, time.UnixMilli(at).Before(before.Add(30*time.Second)), "kept until the failure refills")
	require.False(t, time.UnixMilli(at).After(after.Add(30*time.Second+time.Millisecond)), "on the server's clock, not the caller's")
	rem, _, err := s.Peek(t.Context(), "k", p, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, rem, "one failure spent, whatever the caller's clock")
}

// TestFailureStoreQueuedCalls: a guess stamped while the budget is spent
// that reaches Redis late (a flood queues the calls in the client's pool;
// here Redis is paused, so its clock moves on while the stamp stands
// still) is refused. On the caller's clock (InsecureTrustCallerClock, the
// conformance suites' mode), the key used to expire on Redis's clock when
// the failures refilled on the caller's, and a queued guess then found a
// fresh budget. On the server's clock, the stamp is ignored and the key
// expires on the clock that decides.
func TestFailureStoreQueuedCalls(t *testing.T) {
	srv := redistest.Start(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, mode := range []struct {
		name  string
		trust bool
		per   time.Duration // on the server's clock, long enough that the pause refills nothing
	}{
		{"caller_clock", true, 400 * time.Millisecond},
		{"server_clock", false, time.Hour},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := NewFailureStore(newClient(t, srv.Addr()), Options{Prefix: mode.name + ":", Timeout: testTimeout, InsecureTrustCallerClock: mode.trust})
			p := FailurePolicy{Budget: 2, Per: mode.per, Lockout: time.Microsecond, MaxLockout: time.Microsecond, Lease: time.Second}
			t.Run("queued_guess_finds_fresh_budget", func(t *testing.T) {
				for range 2 {
					_, _, _, err := s.Settle(t.Context(), "victim", 0, true, false, p, t0)
					require.NoError(t, err)
				}
				// Redis's clock passes the refill on the caller's clock
				// (t0+400ms) by 200ms: well within the timeout a queued
				// call may take.
				_, err := srv.Do("DEBUG", "SLEEP", "0.6")
				require.NoError(t, err)
				ok, _, rem, _, err := s.Reserve(t.Context(), "victim", p, t0)
				require.NoError(t, err)
				require.False(t, ok, "the budget is spent, whenever the guess reaches Redis")
				require.Zero(t, rem)
			})
		})
	}
}
