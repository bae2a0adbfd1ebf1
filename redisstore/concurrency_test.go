package redisstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

func TestConcurrencyStoreConformance(t *testing.T) {
	srv := redistest.Shared(t)
	ratelimittest.RunConcurrency(t, func(t *testing.T) (ratelimittest.ConcurrencyStore, ratelimittest.ConcurrencyStore) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		o := Options{Timeout: testTimeout, InsecureTrustCallerClock: true} // the suite's fake clock
		return NewConcurrencyStore(newClient(t, srv.Addr()), o), NewConcurrencyStore(newClient(t, srv.Addr()), o)
	})
}

func TestConcurrencyStoreClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	c := redistest.SharedCluster(t)
	var n atomic.Int64
	ratelimittest.RunConcurrency(t, func(t *testing.T) (ratelimittest.ConcurrencyStore, ratelimittest.ConcurrencyStore) {
		o := Options{Prefix: fmt.Sprintf("cc%d:", n.Add(1)), Timeout: testTimeout, InsecureTrustCallerClock: true}
		return NewConcurrencyStore(clusterClient(t, c), o), NewConcurrencyStore(clusterClient(t, c), o)
	})
}

// On the server's clock (the default) a lease is measured by Redis: a
// dead instance's slots free themselves once Redis's clock has passed
// them, here moved on by pausing Redis (DEBUG SLEEP).
func TestConcurrencyStoreLeaseOnServerClock(t *testing.T) {
	srv := redistest.Start(t)
	s := NewConcurrencyStore(newClient(t, srv.Addr()), Options{Timeout: testTimeout})
	for i := range 2 {
		ok, _, err := s.Acquire(t.Context(), "k", fmt.Sprint("dead", i), 2, 100*time.Millisecond, time.Time{})
		require.NoError(t, err)
		require.True(t, ok)
	}
	ok, _, err := s.Acquire(t.Context(), "k", "r", 2, 100*time.Millisecond, time.Time{})
	require.NoError(t, err)
	require.False(t, ok)
	_, err = srv.Do("DEBUG", "SLEEP", "0.2")
	require.NoError(t, err)
	ok, n, err := s.Acquire(t.Context(), "k", "r", 2, 100*time.Millisecond, time.Time{})
	require.NoError(t, err)
	require.True(t, ok, "the dead instance's leases expired on Redis's clock")
	require.Equal(t, 1, n)
}
