package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// LimitStore keeps rate-limit buckets in Redis with GCRA (the generic cell
// rate algorithm): one key and one Lua script per decision, so each
// decision is one round trip and Redis Cluster safe. It implements
// ratelimit.Store. Times are the Redis server's clock, not the callers':
// the now passed to its methods is ignored (unless
// Options.InsecureTrustCallerClock), so an instance whose clock runs
// ahead cannot see a bucket as refilled. It is safe for concurrent use by
// multiple goroutines.
type LimitStore struct {
	rdb   redis.UniversalClient
	opts  Options
	names nameClaims
}

// NewLimitStore returns a LimitStore on rdb. Give each process one
// LimitStore per Redis and share it between the limiters, so that two
// limiters of one name are found at construction (see
// ratelimit.NamespaceClaimer). It panics if rdb is nil.
func NewLimitStore(rdb redis.UniversalClient, opts Options) *LimitStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &LimitStore{rdb: rdb, opts: opts}
}

// gcraScript: KEYS[1] the bucket's theoretical arrival time (TAT, in µs
// on the Redis server's clock: see luaClock); ARGV clock
// (Options.clock), interval µs, burst, n (1 to take, -1 to refund).
// Returns {allowed, remaining, wait µs}.
var gcraScript = redis.NewScript(luaClock + `
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if n < 0 then
  local new_tat = tat - interval
  if new_tat > now then
    redis.call('SET', KEYS[1], string.format('%.0f', new_tat), px(new_tat))
  else
    redis.call('DEL', KEYS[1])
  end
  return {1, 0, 0}
end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), px(new_tat))
local tokens = (now + tolerance - new_tat) / interval
local whole = math.floor(tokens)
return {1, whole, math.ceil((whole + 1 - tokens) * interval)}
`)

func (s *LimitStore) run(ctx context.Context, key string, interval time.Duration, burst int, now time.Time, n int) ([]int64, error) {
	iv := max(interval.Microseconds(), 1)
	out, err := call(ctx, &s.opts, func(ctx context.Context) ([]int64, error) {
		return gcraScript.Run(ctx, s.rdb, []string{s.opts.key(purposeBucket, key)}, s.opts.clock(now), iv, burst, n).Int64Slice()
	})
	if err != nil {
		return nil, err
	}
	if len(out) != 3 {
		return nil, fmt.Errorf("%w: unexpected script reply", ErrUnavailable)
	}
	return out, nil
}

// Take implements ratelimit.Store.
func (s *LimitStore) Take(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) (bool, int, time.Duration, error) {
	out, err := s.run(ctx, key, interval, burst, now, 1)
	if err != nil {
		return false, 0, 0, err
	}
	return out[0] == 1, int(out[1]), time.Duration(out[2]) * time.Microsecond, nil
}

// Refund implements ratelimit.Store.
func (s *LimitStore) Refund(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) error {
	_, err := s.run(ctx, key, interval, burst, now, -1)
	return err
}

// ClaimNamespace implements ratelimit.NamespaceClaimer: it returns an
// error when a limiter of this name already uses this store.
func (s *LimitStore) ClaimNamespace(name string) error { return s.names.claim(name) }

// ReleaseNamespace implements ratelimit.NamespaceClaimer.
func (s *LimitStore) ReleaseNamespace(name string) { s.names.release(name) }
