package redisstore

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Ready reports whether Redis answers a PING within Options.Timeout (or
// ctx's earlier deadline), for a readiness check: nil when it does.
// Otherwise the error wraps [ErrUnavailable] ([ErrBreakerOpen] while the
// store's Breaker is open, without a PING) and names the Redis address
// and the cause, never a password. The PING goes through the Breaker like
// every call: its failure counts, and while the breaker is half-open the
// PING may be the probe whose success closes it. It can be called
// concurrently with request handling.
func (s *LimitStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready].
func (s *FailureStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready].
func (s *ReplayStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready].
func (s *AttestStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }

func ready(ctx context.Context, rdb redis.UniversalClient, o *Options) error {
	err := o.do(ctx, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	if err == nil {
		return nil
	}
	addr, password := endpoint(rdb)
	msg := "redisstore: Redis at " + addr + " not ready: " + err.Error()
	if password != "" {
		// go-redis does not put the password in its errors; this holds
		// even if a server's reply or a future version did.
		msg = strings.ReplaceAll(msg, password, "[password]")
	}
	return &readyError{msg: msg, err: err}
}

// endpoint returns the address(es) rdb connects to, for messages, and its
// password, to keep it out of them.
func endpoint(rdb redis.UniversalClient) (addr, password string) {
	switch c := rdb.(type) {
	case *redis.Client:
		o := c.Options()
		return o.Addr, o.Password
	case *redis.ClusterClient:
		o := c.Options()
		return strings.Join(o.Addrs, ","), o.Password
	}
	return "(address unknown)", ""
}

// readyError is Ready's error: the message names the address and the
// cause without the password; errors.Is sees the call's error.
type readyError struct {
	msg string
	err error
}

func (e *readyError) Error() string { return e.msg }
func (e *readyError) Unwrap() error { return e.err }
