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
	srv := redistest.Start(t)
	ratelimittest.RunFailure(t, func(t *testing.T) (ratelimittest.FailureStore, ratelimittest.FailureStore) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		// The suite's fake clock decides: the stores trust it.
		o := Options{Timeout: time.Second, InsecureTrustCallerClock: true}
		return NewFailureStore(newClient(t, srv.Addr()), o), NewFailureStore(newClient(t, srv.Addr()), o)
	})
}

// TestFailureStoreClusterConformance runs the suite on a three-node Redis
// Cluster: each decision is one script on one key.
func TestFailureStoreClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	c := redistest.StartCluster(t)
	var n atomic.Int64
	ratelimittest.RunFailure(t, func(t *testing.T) (ratelimittest.FailureStore, ratelimittest.FailureStore) {
		o := Options{Prefix: fmt.Sprintf("t%d:", n.Add(1)), Timeout: time.Second, InsecureTrustCallerClock: true}
		client := func() redis.UniversalClient {
			rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
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
	srv := redistest.Start(t)
	rdb := newClient(t, srv.Addr())
	s := NewFailureStore(rdb, Options{Prefix: "p:", InsecureTrustCallerClock: true}) // the calls below move now
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
	require.InDelta(t, float64(31*time.Second), float64(ttl), float64(100*time.Millisecond),
		"kept for the lease of the attempt in flight, and the refill of the failure it lapses into")
	// A call just before the lease ends must not let the key expire with
	// it: the lapsed attempt is a failure that the key must still hold.
	_, _, err = s.Peek(t.Context(), "hashed-key", p, now.Add(time.Second-time.Millisecond))
	require.NoError(t, err)
	ttl, err = rdb.PTTL(t.Context(), key).Result()
	require.NoError(t, err)
	require.InDelta(t, float64(30*time.Second), float64(ttl), float64(100*time.Millisecond))
	_, _, _, err = s.Settle(t.Context(), "hashed-key", ticket, false, false, p, now)
	require.NoError(t, err)
	n, err := rdb.Exists(t.Context(), key).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a key that restricts nothing is deleted")
	_, _, _, err = s.Settle(t.Context(), "hashed-key", 0, true, false, p, now)
	require.NoError(t, err)
	ttl, err = rdb.PTTL(t.Context(), key).Result()
	require.NoError(t, err)
	require.InDelta(t, float64(30*time.Second), float64(ttl), float64(100*time.Millisecond), "kept until the failure refills")
}

// TestFailureStoreKeyOnServerClock: a failure recorded by an instance
// whose clock runs an hour ahead is kept until it refills on the Redis
// server's clock, neither an hour too long nor, seen from an instance an
// hour behind, already refilled.
func TestFailureStoreKeyOnServerClock(t *testing.T) {
	srv := redistest.Start(t)
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
