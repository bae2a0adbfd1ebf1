package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// IntrospectionCache shares auth's token-introspection results (RFC
// 7662) between instances: it implements auth.IntrospectionCache and
// auth.IntrospectionLocker, so that N instances that see a new token make
// one call to the issuer's endpoint, not N. Set it as
// auth.Introspection.Cache. It is safe for concurrent use by multiple
// goroutines.
//
// Results live under the "intro" purpose for the TTL auth gives (never
// past the token's exp), locks under "intro-lock" for at most the TTL
// auth gives (its call's timeout and a second), released only by their
// holder. auth's keys are already digests that name no token; they are
// hashed once more like every key here (see Options).
//
// Outages: a call that fails returns an error wrapping [ErrUnavailable],
// fast behind the Breaker, and auth then calls the endpoint itself (one
// call per token per instance, never a refusal of a valid token for it).
// Whoever can write these keys can forge introspection answers: give
// the Redis the protection of the endpoint's credentials (ACLs, TLS, no
// shared tenants), and an eviction policy that may drop them (they are
// a cache: allkeys-lru suits, noeviction does too).
type IntrospectionCache struct {
	rdb  redis.UniversalClient
	opts Options
}

// NewIntrospectionCache returns an IntrospectionCache on rdb. It panics if
// rdb is nil.
func NewIntrospectionCache(rdb redis.UniversalClient, opts Options) *IntrospectionCache {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &IntrospectionCache{rdb: rdb, opts: opts}
}

// Get returns the value stored under key and true, false when there is
// none, or an error wrapping [ErrUnavailable].
func (c *IntrospectionCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	k := c.opts.key(purposeIntrospection, key)
	v, err := call(ctx, &c.opts, func(ctx context.Context) ([]byte, error) { return c.rdb.Get(ctx, k).Bytes() })
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// Set stores value under key for ttl (on Redis's clock); a ttl under a
// millisecond stores nothing.
func (c *IntrospectionCache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return nil
	}
	k := c.opts.key(purposeIntrospection, key)
	return c.opts.do(ctx, func(ctx context.Context) error { return c.rdb.Set(ctx, k, value, ttl).Err() })
}

// TryLock takes the lock named key for ttl (SET NX with a random value)
// and returns the function that releases it, or nil when another holder
// has it. The release deletes the lock only while it still holds this
// holder's value (one script), so a holder whose lock expired cannot
// release the next holder's; it is bounded by Options.Timeout and its
// failure is ignored (the lock expires).
func (c *IntrospectionCache) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	k := c.opts.key(purposeIntrospectionLock, key)
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	val := hex.EncodeToString(b[:])
	ok, err := call(ctx, &c.opts, func(ctx context.Context) (bool, error) {
		return c.rdb.SetNX(ctx, k, val, max(ttl, time.Millisecond)).Result()
	})
	if err != nil || !ok {
		return nil, err
	}
	return func() {
		_ = c.opts.do(context.Background(), func(ctx context.Context) error {
			return unlockScript.Run(ctx, c.rdb, []string{k}, val).Err()
		})
	}, nil
}

// unlockScript deletes KEYS[1] when it holds ARGV[1].
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready].
func (c *IntrospectionCache) Ready(ctx context.Context) error { return ready(ctx, c.rdb, &c.opts) }
