package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readyStore is a Store whose Ready answers err, and a FailureStore too.
type readyStore struct {
	Store
	FailureStore
	err error
}

func (s *readyStore) Ready(context.Context) error { return s.err }

func TestReadyDelegatesToTheStore(t *testing.T) {
	ctx := context.Background()
	secret := bytes.Repeat([]byte{1}, 32)
	down := errors.New("redisstore: Redis at 127.0.0.1:6379 not ready: connection refused")

	mem, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Second}, Key: KeyByIP()})
	require.NoError(t, mem.Ready(ctx), "the in-memory store is always ready")
	noReady, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Second}, Key: KeyByIP(), Store: failingStore{}, KeySecret: secret})
	require.NoError(t, noReady.Ready(ctx), "a Store without Ready is taken as ready")
	memBudget, err := NewFailureBudget(FailureConfig{Key: KeyByIP(), Budget: 1, Per: time.Second})
	require.NoError(t, err)
	require.NoError(t, memBudget.Ready(ctx))

	s := &readyStore{Store: NewMemoryStore(10, OverflowReject), FailureStore: NewMemoryFailureStore(10, OverflowReject)}
	l, _, _ := newLimiter(t, Config{Name: "user", Limit: Limit{Requests: 1, Per: time.Second}, Key: KeyByIP(), Store: s, KeySecret: secret})
	b, err := NewFailureBudget(FailureConfig{Name: "otp", Key: KeyByIP(), Budget: 1, Per: time.Second, Store: s, KeySecret: secret})
	require.NoError(t, err)
	require.NoError(t, l.Ready(ctx))
	require.NoError(t, b.Ready(ctx))

	s.err = down
	err = l.Ready(ctx)
	require.ErrorIs(t, err, ErrStoreUnavailable)
	require.ErrorIs(t, err, down)
	require.EqualError(t, err, `ratelimit: store unavailable: limiter "user": `+down.Error())
	err = b.Ready(ctx)
	require.ErrorIs(t, err, ErrStoreUnavailable)
	require.EqualError(t, err, `ratelimit: store unavailable: failure budget "otp": `+down.Error())

	s.err = nil
	require.NoError(t, l.Ready(ctx), "ready again once the store is")
	require.NoError(t, b.Ready(ctx))
}
