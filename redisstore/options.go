package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures the stores of this package. A zero field takes the
// default in its comment. Stores made from one Options value share its
// Breaker when one is set; every other field is copied.
type Options struct {
	// Prefix is prepended to every key. Default: "apiguard:".
	Prefix string
	// Timeout bounds each call to Redis, through the call's context. It
	// never extends a deadline the caller's context already has: a call
	// ends at the earlier of the two. go-redis honours a context deadline
	// on the network only when the client is made with
	// ContextTimeoutEnabled: true (otherwise its own ReadTimeout and
	// WriteTimeout apply): set it (see the package doc for the
	// recommended client configuration). Default: 100ms.
	Timeout time.Duration
	// Now is the clock that expiry times and the Breaker's cool-down are
	// measured against. Default: time.Now.
	Now func() time.Time
	// Breaker fails calls fast while Redis is found down. Stores given the
	// same *Breaker share its state: one store's failures open it for all,
	// which suits stores on one client (one Redis). Default: each store
	// gets its own breaker, made with NewBreaker(BreakerConfig{}).
	Breaker *Breaker
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = "apiguard:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Breaker == nil {
		o.Breaker = NewBreaker(BreakerConfig{})
	}
}

// ErrUnavailable wraps every error of a store call: Redis could not be
// reached, did not answer within Options.Timeout (or the caller's earlier
// deadline), answered with an error, or the Breaker is open
// ([ErrBreakerOpen]).
var ErrUnavailable = errors.New("redisstore: store unavailable")

// ErrBreakerOpen is the error of a call refused by an open Breaker,
// without touching the network. It wraps [ErrUnavailable].
var ErrBreakerOpen = fmt.Errorf("%w: breaker open", ErrUnavailable)

// do runs fn, which makes the Redis commands of one store call, under the
// breaker and the per-call timeout. Every store call goes through it.
//
//   - A caller's context that is already done fails the call at once: no
//     network, and the breaker does not count it.
//   - An open breaker fails the call at once with [ErrBreakerOpen].
//   - fn's context ends at now+o.Timeout, or at the caller's deadline when
//     that is earlier: the timeout never extends a request's deadline.
//   - A nil error or redis.Nil (the server answered) is a success for the
//     breaker, and redis.Nil is returned as is for the caller to test.
//   - Any other error wraps [ErrUnavailable]; it counts as a breaker
//     failure unless the caller's own context ended meanwhile (a client
//     that hangs up, or a request deadline spent elsewhere, must not open
//     the breaker for everyone).
func (o *Options) do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	t, err := o.Breaker.enter(o.Now())
	if err != nil {
		return err
	}
	cctx := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > o.Timeout {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	err = fn(cctx)
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		o.Breaker.exit(t, o.Now(), outcomeSuccess)
		return err
	case ctx.Err() != nil:
		o.Breaker.exit(t, o.Now(), outcomeNeutral)
	default:
		o.Breaker.exit(t, o.Now(), outcomeFailure)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// call is do for a command with a result: the store calls' one-liner,
//
//	ok, err := call(ctx, &s.opts, func(ctx context.Context) (bool, error) {
//		return s.rdb.SetNX(ctx, key, "1", ttl).Result()
//	})
//
// err is nil, redis.Nil, or wraps [ErrUnavailable].
func call[T any](ctx context.Context, o *Options, fn func(context.Context) (T, error)) (T, error) {
	var v T
	err := o.do(ctx, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}
