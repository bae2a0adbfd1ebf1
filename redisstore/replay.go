package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures the stores of this package. A zero field takes the
// default in its comment.
type Options struct {
	// Prefix is prepended to every key. Default: "apiguard:".
	Prefix string
	// Timeout bounds each call to Redis, through the call's context. go-redis
	// honours a context deadline on the network only when the client is
	// made with ContextTimeoutEnabled: true (otherwise its own ReadTimeout
	// and WriteTimeout apply): set it. Default: 100ms.
	Timeout time.Duration
	// Now is the clock that expiry times are measured against. Default:
	// time.Now.
	Now func() time.Time
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
}

// ReplayStore records single-use identifiers (DPoP proof jti values,
// request nonces) in Redis with SET NX PX: the first use of an id wins,
// every later one until its expiry loses, across all instances. It
// implements auth.ReplayStore. It is safe for concurrent use by multiple
// goroutines.
type ReplayStore struct {
	rdb  redis.UniversalClient
	opts Options
}

// NewReplayStore returns a ReplayStore on rdb. It panics if rdb is nil.
func NewReplayStore(rdb redis.UniversalClient, opts Options) *ReplayStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &ReplayStore{rdb: rdb, opts: opts}
}

// ErrUnavailable wraps every error of a store call: Redis could not be
// reached or did not answer within Options.Timeout.
var ErrUnavailable = errors.New("redisstore: store unavailable")

// Use records id as used until exp. It returns true when id was not
// recorded before, false when it was or when exp has already passed, and
// an error wrapping [ErrUnavailable] when Redis did not answer; callers
// then reject the request.
func (s *ReplayStore) Use(ctx context.Context, id string, exp time.Time) (bool, error) {
	ttl := exp.Sub(s.opts.Now())
	if ttl <= 0 {
		return false, nil
	}
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	ok, err := s.rdb.SetNX(ctx, s.opts.Prefix+"replay:"+id, "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return ok, nil
}
