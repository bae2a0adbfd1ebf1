package redisstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/revoke"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func newTestRevocationList(t *testing.T, s *RevocationStore) *revoke.List {
	t.Helper()
	l, err := revoke.New(revoke.Config{Store: s, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func waitListReady(t *testing.T, l *revoke.List, ready bool) {
	t.Helper()
	require.Eventually(t, func() bool { return (l.Ready(context.Background()) == nil) == ready }, 15*time.Second, 5*time.Millisecond)
}

// TestSubscriptionDropMissingMessageStillRefuses: a revocation whose
// message an instance never receives (published while its subscription
// was down) is applied when the subscription comes back, because the
// durable set is read again.
func TestSubscriptionDropMissingMessageStillRefuses(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewRevocationStore(rdb, Options{Timeout: 10 * time.Second}, 0)
	l := newTestRevocationList(t, s)
	waitListReady(t, l, true)

	// Another instance's revocation reaches the durable set, but its
	// message is lost (it goes to a channel nobody hears).
	lost := *s
	lost.ch = s.ch + "-lost"
	other := newTestRevocationList(t, &lost)
	require.NoError(t, other.Revoke(t.Context(), revoke.Revocation{Issuer: "https://idp.example/", TokenID: "j1"}))
	require.False(t, l.Revoked("https://idp.example/", "", "", "j1", "", time.Now()), "the message was lost")

	_, err := srv.Do("CLIENT", "KILL", "TYPE", "pubsub")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return l.Stats().Syncs >= 2 }, 15*time.Second, 5*time.Millisecond, "resubscribed and read the set")
	require.True(t, l.Revoked("https://idp.example/", "", "", "j1", "", time.Now()))
}

// TestHungRedisDropsSubscription: a Redis that stops answering (SIGSTOP)
// is noticed by the subscription's ping within two health intervals: the
// list reports not ready, keeps what it holds, and catches up when Redis
// answers again.
func TestHungRedisDropsSubscription(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s := NewRevocationStore(rdb, Options{Timeout: time.Second}, 0)
	s.health = 100 * time.Millisecond
	l := newTestRevocationList(t, s)
	waitListReady(t, l, true)
	require.NoError(t, l.Revoke(t.Context(), revoke.Revocation{Issuer: "https://idp.example/", SessionID: "s1"}))

	srv.Pause()
	waitListReady(t, l, false)
	require.True(t, errors.Is(l.Ready(t.Context()), revoke.ErrNotSynced))
	require.True(t, l.Revoked("https://idp.example/", "", "s1", "", "", time.Now()))
	srv.Resume()
	waitListReady(t, l, true)
}
