package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayStore records single-use identifiers in Redis with SET NX: the
// first use of an id wins, every later one until its expiry loses, across
// all instances. An id's key expires at a time on the Redis server's
// clock, its expiry plus Options.MaxClockSkew, whatever the clock of the
// instance that stored it: an instance whose clock runs ahead cannot
// store a key that expires early and let a correct instance accept a
// replay. It implements auth.ReplayStore (DPoP proof jti values)
// and signing.ReplayStore (request nonces and per-key high-water marks,
// the latter in one Lua script). It is safe for concurrent use by multiple
// goroutines.
//
// Redis must not evict these keys before they expire: run it with
// maxmemory-policy noeviction (or a volatile-* policy with room to
// spare). A Redis restart without persistence forgets the nonces of the
// current window.
//
// Keys (see Options) are apart by purpose ("replay", "nonce",
// "mark") and by namespace ([ReplayStore.WithNamespace]), and name no key
// ID, nonce or jti in the clear. Nonces and jti values live until their
// expiry and Options.MaxClockSkew: there is no eviction, so no floor, and nothing one key sends
// pushes out another's. A high-water mark is per key ID (and namespace):
// only that key's own accepted traffic raises it, and never further than
// the verifier lets created run ahead (signing.Config.FutureSkew).
type ReplayStore struct {
	rdb  redis.UniversalClient
	opts Options
	ns   string // see WithNamespace
}

// NewReplayStore returns a ReplayStore on rdb. It panics if rdb is nil.
func NewReplayStore(rdb redis.UniversalClient, opts Options) *ReplayStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &ReplayStore{rdb: rdb, opts: opts}
}

// WithNamespace returns a store on the same client and Options whose ids,
// nonces and high-water marks are apart from s's and from those of every
// other namespace. Give each verifier that shares a Redis and a Prefix
// with another a namespace of its own (its name): two signing.Verifiers
// whose key spaces both hold a key ID (each its own "device-42") would
// otherwise share its high-water mark, and one's traffic, dated ahead,
// could make the other refuse that key's signatures as stale for up to
// FutureSkew. The namespace is hashed into the key names with the rest.
// Stores of one namespace on several instances share everything, as they
// must.
func (s *ReplayStore) WithNamespace(namespace string) *ReplayStore {
	s2 := *s
	s2.ns = namespace
	return &s2
}

// Use records id as used until exp (plus Options.MaxClockSkew, on the
// Redis server's clock). It returns true when id was not recorded
// before, false when it was or when exp has already passed (on
// Options.Now, or past the skew on the server's clock), and an error
// wrapping [ErrUnavailable] when Redis did not answer; callers then
// reject the request.
func (s *ReplayStore) Use(ctx context.Context, id string, exp time.Time) (bool, error) {
	return s.use(ctx, s.opts.key(purposeReplay, s.ns, id), exp)
}

// use records key as used until exp, as Use does.
func (s *ReplayStore) use(ctx context.Context, key string, exp time.Time) (bool, error) {
	if !exp.After(s.opts.Now()) {
		return false, nil
	}
	// Whole microseconds, rounded up: the key must not expire before the
	// id does (a capture replayed in that last instant would be
	// accepted). useScript rounds up again to the millisecond.
	at := exp.UnixMicro()
	if exp.Nanosecond()%int(time.Microsecond) != 0 {
		at++
	}
	n, err := call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return useScript.Run(ctx, s.rdb, []string{key}, s.opts.clock(s.opts.Now()), at, s.opts.MaxClockSkew.Microseconds()).Int()
	})
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// useScript records KEYS[1] as used (SET NX) until ARGV[2] plus ARGV[3]
// (the id's expiry and Options.MaxClockSkew, µs), measured on the Redis
// server's clock (see luaClock; ARGV[1] is Options.clock). The expiry is
// absolute, so the key lives as long whatever the clock of the instance
// that stored it: an instance whose clock runs ahead cannot shorten it,
// and one whose clock lags the server's by up to MaxClockSkew still finds
// it until the id expires on its own clock. It returns 1 when the key
// was set, 0 when it was there or the expiry has passed on the server's
// clock (the caller's clock lags by more than MaxClockSkew: refusing
// keeps the promise that no id is "fresh" without being recorded).
var useScript = redis.NewScript(luaClock + `
local at = tonumber(ARGV[2]) + tonumber(ARGV[3])
if at <= now then
  return 0
end
if redis.call('SET', KEYS[1], '1', 'NX', px(at)) then
  return 1
end
return 0
`)

// UseNonce implements signing.ReplayStore: nonce is single use per key
// until exp. The Redis key is a digest of key ID and nonce, so its size
// is bounded whatever the client sent.
func (s *ReplayStore) UseNonce(ctx context.Context, keyID, nonce string, _ time.Time, exp time.Time) (bool, error) {
	return s.use(ctx, s.opts.key(purposeNonce, s.ns, keyID, nonce), exp)
}

// advanceScript checks created (ARGV[1], ms) against the key's mark minus
// the slack (ARGV[2], ms), raises the mark when created is newer, and
// keeps it for ARGV[3] ms. The check and the raise are one script, so
// concurrent calls on any instances are serialized: the mark only rises,
// ends at the newest created accepted, and a call refused saw a mark
// that was really there. One key per call: Redis Cluster safe.
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
	key := s.opts.key(purposeMark, s.ns, keyID)
	n, err := call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return advanceScript.Run(ctx, s.rdb, []string{key}, created.UnixMilli(), slack.Milliseconds(), max(ttl.Milliseconds(), 1)).Int()
	})
	if err != nil {
		return false, err
	}
	return n == 1, nil
}
