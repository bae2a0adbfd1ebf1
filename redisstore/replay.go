package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayStore records single-use identifiers in Redis with SET NX PX: the
// first use of an id wins, every later one until its expiry loses, across
// all instances. It implements auth.ReplayStore (DPoP proof jti values)
// and signing.ReplayStore (request nonces and per-key high-water marks,
// the latter in one Lua script). It is safe for concurrent use by multiple
// goroutines.
//
// Redis must not evict these keys before they expire: run it with
// maxmemory-policy noeviction (or a volatile-* policy with room to
// spare). A Redis restart without persistence forgets the nonces of the
// current window.
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

// Use records id as used until exp. It returns true when id was not
// recorded before, false when it was or when exp has already passed, and
// an error wrapping [ErrUnavailable] when Redis did not answer; callers
// then reject the request.
func (s *ReplayStore) Use(ctx context.Context, id string, exp time.Time) (bool, error) {
	return s.use(ctx, s.opts.key(purposeReplay, id), exp)
}

// use records key as used until exp, as Use does.
func (s *ReplayStore) use(ctx context.Context, key string, exp time.Time) (bool, error) {
	ttl := exp.Sub(s.opts.Now())
	if ttl <= 0 {
		return false, nil
	}
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	ok, err := call(ctx, &s.opts, func(ctx context.Context) (bool, error) {
		return s.rdb.SetNX(ctx, key, "1", ttl).Result()
	})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// UseNonce implements signing.ReplayStore: nonce is single use per key
// until exp. The Redis key is a digest of key ID and nonce, so its size
// is bounded whatever the client sent.
func (s *ReplayStore) UseNonce(ctx context.Context, keyID, nonce string, _ time.Time, exp time.Time) (bool, error) {
	return s.use(ctx, s.opts.key(purposeNonce, keyID, nonce), exp)
}

// advanceScript checks created (ARGV[1], ms) against the key's mark minus
// the slack (ARGV[2], ms), raises the mark when created is newer, and
// keeps it for ARGV[3] ms. One key per call: Redis Cluster safe.
var advanceScript = redis.NewScript(`
local created = tonumber(ARGV[1])
local mark = redis.call('GET', KEYS[1])
if mark then
  mark = tonumber(mark)
  if created < mark - tonumber(ARGV[2]) then
    return 0
  end
  if created <= mark then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return 1
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
`)

// Advance implements signing.ReplayStore: the per-key high-water mark of
// accepted created times, checked and raised atomically.
func (s *ReplayStore) Advance(ctx context.Context, keyID string, created time.Time, slack, ttl time.Duration) (bool, error) {
	key := s.opts.key(purposeMark, keyID)
	n, err := call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return advanceScript.Run(ctx, s.rdb, []string{key}, created.UnixMilli(), slack.Milliseconds(), max(ttl.Milliseconds(), 1)).Int()
	})
	if err != nil {
		return false, err
	}
	return n == 1, nil
}
