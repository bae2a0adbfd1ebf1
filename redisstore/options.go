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
	// KeySecret, when set, keys the digest that names every Redis key
	// (HMAC-SHA-256 instead of SHA-256). Key names never hold a raw
	// subject, token, nonce or device ID either way; without a secret,
	// whoever can list the keys (a replica, a backup, MONITOR, another
	// tenant of a shared Redis) can still confirm a guess, such as "does
	// user-42 have risk history", by hashing it; with one, they cannot.
	// Every instance sharing the stores must use the same secret.
	// Changing it orphans every key: recorded nonces, jti values and
	// high-water marks are forgotten (a replay within their window is
	// accepted again) and budgets, counters and history start afresh, so
	// rotate it only with the stores drained (or wait out the longest
	// replay window with both verifiers refusing). Default: none (plain
	// SHA-256). The New…Store functions panic when it is set and shorter
	// than 16 bytes.
	KeySecret []byte

	hashes *keyHashes // the digests behind key, made by defaults
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
	if len(o.KeySecret) > 0 && len(o.KeySecret) < 16 {
		panic("redisstore: Options.KeySecret shorter than 16 bytes")
	}
	o.hashes = newKeyHashes(o.KeySecret)
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
//   - Any other error wraps [ErrUnavailable]. It counts as a breaker
//     failure when the caller's context is still live (Redis refused,
//     timed out on Options.Timeout, or answered an error), or when the
//     caller's deadline passed after Redis had stayed silent for at least
//     a twentieth of Options.Timeout (5 ms by default: a healthy Redis
//     answers far sooner, so this is Redis's fault however short the
//     caller's budget). It is neutral when the caller cancelled (a client
//     that hangs up) or its deadline passed sooner (a budget spent
//     elsewhere, say by a slow upload): a client must not be able to open
//     the breaker for everyone.
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
	start := time.Now()
	err = fn(cctx)
	switch cerr := ctx.Err(); {
	case err == nil || errors.Is(err, redis.Nil):
		o.Breaker.exit(t, o.Now(), outcomeSuccess)
		return err
	case cerr == nil,
		errors.Is(cerr, context.DeadlineExceeded) && time.Since(start) >= o.Timeout/20:
		o.Breaker.exit(t, o.Now(), outcomeFailure)
	default:
		o.Breaker.exit(t, o.Now(), outcomeNeutral)
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
