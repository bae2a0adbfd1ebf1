package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/internal/replaytest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func newClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestReplayStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	replaytest.Run(t, func(t *testing.T) (replaytest.Store, replaytest.Store, func() time.Time) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		a := NewReplayStore(newClient(t, srv.Addr()), Options{})
		b := NewReplayStore(newClient(t, srv.Addr()), Options{})
		return a, b, time.Now
	})
}

func TestReplayStoreTTL(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr())
	s := NewReplayStore(c, Options{Prefix: "t:"})
	ok, err := s.Use(context.Background(), "jti", time.Now().Add(90*time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	ttl, err := c.PTTL(context.Background(), s.opts.key(purposeReplay, "jti")).Result()
	require.NoError(t, err)
	require.InDelta(t, 90*time.Second, ttl, float64(2*time.Second), "the key expires with the id")
}

func TestReplayStoreOutageFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := NewReplayStore(newClient(t, srv.Addr()), Options{Timeout: 200 * time.Millisecond})
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = srv.Do("DEBUG", "SLEEP", "0.5")
	}()
	require.Eventually(t, func() bool {
		start := time.Now()
		_, err := s.Use(context.Background(), "slow", time.Now().Add(time.Minute))
		return err != nil && time.Since(start) < 400*time.Millisecond
	}, 2*time.Second, 10*time.Millisecond, "a paused Redis hits the timeout, the call does not hang")
	<-done
}

func TestNewReplayStorePanicsOnNil(t *testing.T) {
	require.PanicsWithValue(t, "redisstore: nil client", func() { NewReplayStore(nil, Options{}) })
}

func TestSigningReplayStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	replaytest.RunSigning(t, func(t *testing.T) (replaytest.SigningStore, replaytest.SigningStore, func() time.Time) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		return NewReplayStore(newClient(t, srv.Addr()), Options{}), NewReplayStore(newClient(t, srv.Addr()), Options{}), time.Now
	})
}
