package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// UseNonce implements signing.ReplayStore: nonce is single use per key
// until exp. The Redis key is a SHA-256 of key ID and nonce, so its size
// is bounded whatever the client sent.
func (s *ReplayStore) UseNonce(ctx context.Context, keyID, nonce string, _ time.Time, exp time.Time) (bool, error) {
	h := sha256.Sum256([]byte(keyID + "\x00" + nonce))
	return s.Use(ctx, "sig:"+hex.EncodeToString(h[:]), exp)
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
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	h := sha256.Sum256([]byte(keyID))
	key := s.opts.Prefix + "mark:" + hex.EncodeToString(h[:])
	n, err := advanceScript.Run(ctx, s.rdb, []string{key}, created.UnixMilli(), slack.Milliseconds(), max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return n == 1, nil
}
