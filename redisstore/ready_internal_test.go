package redisstore

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestReadyErrorHidesThePassword: should a cause ever carry the client's
// password (a dialer's error here), Ready's message does not.
func TestReadyErrorHidesThePassword(t *testing.T) {
	const password = "pw-0123456789" // gitleaks:allow -- a made-up password the test proves never reaches an error
	cause := errors.New("proxy refused AUTH " + password)
	rdb := redis.NewClient(&redis.Options{Addr: "redis.internal:6379", Password: password, MaxRetries: -1, DialerRetries: 1,
		Dialer: func(context.Context, string, string) (net.Conn, error) { return nil, cause }})
	t.Cleanup(func() { _ = rdb.Close() })
	err := NewReplayStore(rdb, Options{}).Ready(context.Background())
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorIs(t, err, cause, "the cause stays in the chain for errors.Is")
	require.EqualError(t, err, "redisstore: Redis at redis.internal:6379 not ready: redisstore: store unavailable: proxy refused AUTH [password]")
}
