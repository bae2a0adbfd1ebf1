package redisstore

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// pxHook records the PX argument of each SET.
type pxHook struct {
	mu  sync.Mutex
	pxs []int64
}

func (h *pxHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *pxHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		for i := 0; i+1 < len(args); i++ {
			if s, ok := args[i].(string); ok && strings.EqualFold(s, "px") && strings.EqualFold(cmd.Name(), "set") {
				if v, ok := args[i+1].(int64); ok {
					h.mu.Lock()
					h.pxs = append(h.pxs, v)
					h.mu.Unlock()
				}
			}
		}
		return next(ctx, cmd)
	}
}

func (h *pxHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestNonceTTLTruncated (nonce_ttl_truncated): the key of a nonce must
// not expire in Redis before the nonce does. The client truncates a TTL
// to whole milliseconds, so a TTL of 1.9 ms was sent as 1 ms: the nonce
// was free again up to a millisecond before its signature expired, and
// a capture replayed in that last millisecond was accepted.
func TestNonceTTLTruncated(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr())
	h := &pxHook{}
	c.AddHook(h)
	exp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := exp.Add(-1900 * time.Microsecond)
	s := NewReplayStore(c, Options{Now: func() time.Time { return now }})
	for i, use := range []func() (bool, error){
		func() (bool, error) { return s.UseNonce(context.Background(), "device-a", "n", exp, exp) },
		func() (bool, error) { return s.Use(context.Background(), "jti", exp) },
	} {
		ok, err := use()
		require.NoError(t, err)
		require.True(t, ok)
		require.Len(t, h.pxs, i+1)
		require.GreaterOrEqual(t, time.Duration(h.pxs[i])*time.Millisecond, exp.Sub(now), "the key expires before the id")
	}
}
