package playintegrity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

// readyNonces is a nonce store with a Ready method, like redisstore's.
type readyNonces struct {
	NonceStore
	err error
}

func (s readyNonces) Ready(context.Context) error { return s.err }

// TestReady: the API fails, so calls to it are backed off and Ready says
// so until the back-off ends; it comes back and Ready is nil. A nonce
// store that says it is not ready makes the verifier not ready. Ready
// never calls Google.
func TestReady(t *testing.T) {
	hash := RequestHash("POST", "/premium", "", nil)
	api := newFlakyAPI(t, attesttest.Verdict(pkg, "", hash, synthNow.Add(-time.Second).UnixMilli(), certDigest))
	clock := synthNow
	nonces := &readyNonces{NonceStore: newMemoryNonces(100, func() time.Time { return clock })}
	play, _ := newPlay(t, nil, func(c *Config) {
		c.APIBaseURL, c.HTTPClient, c.Nonces = api.srv.URL, api.srv.Client(), nonces
		c.Now = func() time.Time { return clock }
	})
	ctx := context.Background()
	require.NoError(t, play.Ready(ctx), "before any call")

	api.set(true, nil) // the API answers 503
	_, err := play.VerifyStandard(ctx, "t1", hash)
	require.ErrorIs(t, err, ErrVendor)
	err = play.Ready(ctx)
	require.ErrorIs(t, err, ErrVendor, "backed off after the failure")
	require.ErrorContains(t, err, "status 503")
	ue, ok := errors.AsType[*UnavailableError](err)
	require.True(t, ok)
	calls := api.calls.Load()

	api.set(false, nil)
	clock = clock.Add(ue.RetryAfter)
	require.NoError(t, play.Ready(ctx), "the back-off is over: the next call may be made")
	_, err = play.VerifyStandard(ctx, "t2", hash)
	require.NoError(t, err)
	require.NoError(t, play.Ready(ctx))
	require.Equal(t, calls+1, api.calls.Load(), "Ready itself never calls the API")

	nonces.err = errors.New("dial tcp: connection refused")
	err = play.Ready(ctx)
	require.ErrorIs(t, err, ErrStore)
	require.ErrorContains(t, err, "nonce store")
}

// TestReadyClassicOnly: a verifier without an HTTPClient never calls
// Google and is ready as its nonce store is.
func TestReadyClassicOnly(t *testing.T) {
	play, _ := newPlay(t, nil, nil)
	require.NoError(t, play.Ready(context.Background()))
}
