package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ConcurrencyStore keeps the requests in flight per key in Redis, for
// ratelimit's Concurrency limiter on several instances: a sorted set per
// key whose members are the requests' lease ids, scored by when each
// lease expires on the Redis server's clock. Acquire drops the expired
// leases, counts the rest and adds one in one Lua script on one key
// (Cluster safe); Release removes its id. The slots of an instance that
// dies free themselves when their leases expire, and the key expires with
// its last lease. It implements ratelimit.ConcurrencyStore and
// ratelimit.NamespaceClaimer. It is safe for concurrent use by multiple
// goroutines.
type ConcurrencyStore struct {
	rdb   redis.UniversalClient
	opts  Options
	names nameClaims
}

// NewConcurrencyStore returns a ConcurrencyStore on rdb. It panics if rdb
// is nil.
func NewConcurrencyStore(rdb redis.UniversalClient, opts Options) *ConcurrencyStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &ConcurrencyStore{rdb: rdb, opts: opts}
}

// acquireScript: KEYS[1] the key's leases; ARGV clock (Options.clock),
// limit, lease µs, id. Returns {taken, in flight}.
var acquireScript = redis.NewScript(luaClock + `
local limit = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  return {0, n}
end
local at = now + lease
redis.call('ZADD', KEYS[1], string.format('%.0f', at), ARGV[4])
expire(KEYS[1], at)
return {1, n + 1}
`)

// Acquire implements ratelimit.ConcurrencyStore. Its lease is measured on
// the Redis server's clock (now is ignored unless
// Options.InsecureTrustCallerClock).
func (s *ConcurrencyStore) Acquire(ctx context.Context, key, id string, limit int, lease time.Duration, now time.Time) (bool, int, error) {
	out, err := call(ctx, &s.opts, func(ctx context.Context) ([]int64, error) {
		return acquireScript.Run(ctx, s.rdb, []string{s.opts.key(purposeInFlight, key)}, s.opts.clock(now), limit, max(lease.Microseconds(), 1), id).Int64Slice()
	})
	if err != nil {
		return false, 0, err
	}
	if len(out) != 2 {
		return false, 0, fmt.Errorf("%w: unexpected script reply", ErrUnavailable)
	}
	return out[0] == 1, int(out[1]), nil
}

// Release implements ratelimit.ConcurrencyStore.
func (s *ConcurrencyStore) Release(ctx context.Context, key, id string) error {
	_, err := call(ctx, &s.opts, func(ctx context.Context) (int64, error) {
		return s.rdb.ZRem(ctx, s.opts.key(purposeInFlight, key), id).Result()
	})
	return err
}

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready].
func (s *ConcurrencyStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }

// ClaimNamespace implements ratelimit.NamespaceClaimer.
func (s *ConcurrencyStore) ClaimNamespace(name string) error { return s.names.claim(name) }

// ReleaseNamespace implements ratelimit.NamespaceClaimer.
func (s *ConcurrencyStore) ReleaseNamespace(name string) { s.names.release(name) }
