package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// AttestStore keeps App Attest keys, challenges and subjects' risk
// history in Redis: it implements appattest.KeyStore, appattest.ChallengeStore
// and attest.HistoryStore. Every call is one command or one Lua script on
// one key (a hash per attested key, with its counter swapped by a script;
// a hash per subject's history), so every decision is atomic and Redis
// Cluster safe. It needs Redis 6.2 or later (GETDEL). It is safe for
// concurrent use by multiple goroutines.
type AttestStore struct {
	rdb  redis.UniversalClient
	opts Options
}

// NewAttestStore returns an AttestStore on rdb. It panics if rdb is nil.
func NewAttestStore(rdb redis.UniversalClient, opts Options) *AttestStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &AttestStore{rdb: rdb, opts: opts}
}

func (s *AttestStore) keyKey(id string) string { return s.opts.key(purposeAttestKey, id) }

// Enroll implements appattest.KeyStore: HSETNX of the record, counter 0.
func (s *AttestStore) Enroll(ctx context.Context, keyID string, record []byte) (bool, error) {
	ok, err := call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return enrollScript.Run(ctx, s.rdb, []string{s.keyKey(keyID)}, record).Int()
	})
	if err != nil {
		return false, err
	}
	return ok == 1, nil
}

var enrollScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'counter', 0)
return 1
`)

// Lookup implements appattest.KeyStore.
func (s *AttestStore) Lookup(ctx context.Context, keyID string) ([]byte, uint32, bool, error) {
	vals, err := call(ctx, &s.opts, func(ctx context.Context) ([]any, error) {
		return s.rdb.HMGet(ctx, s.keyKey(keyID), "record", "counter").Result()
	})
	if err != nil {
		return nil, 0, false, err
	}
	rec, ok1 := vals[0].(string)
	cnt, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return nil, 0, false, nil
	}
	n, err := strconv.ParseUint(cnt, 10, 32)
	if err != nil {
		return nil, 0, false, fmt.Errorf("%w: counter %q", ErrUnavailable, cnt)
	}
	return []byte(rec), uint32(n), true, nil
}

var casScript = redis.NewScript(`
local c = redis.call('HGET', KEYS[1], 'counter')
if c == false or c ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'counter', ARGV[2])
return 1
`)

// AdvanceCounter implements appattest.KeyStore: a compare-and-swap in one
// script.
func (s *AttestStore) AdvanceCounter(ctx context.Context, keyID string, from, to uint32) (bool, error) {
	ok, err := call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return casScript.Run(ctx, s.rdb, []string{s.keyKey(keyID)}, strconv.FormatUint(uint64(from), 10), strconv.FormatUint(uint64(to), 10)).Int()
	})
	if err != nil {
		return false, err
	}
	return ok == 1, nil
}

// Put implements appattest.ChallengeStore.
func (s *AttestStore) Put(ctx context.Context, challenge, binding string, exp time.Time) error {
	// Measured on Options.Now, like every other expiry here. A challenge is
	// single use (GETDEL) whatever its TTL; an instance whose clock lags
	// keeps it that much longer, an instance ahead shortens it.
	ttl := exp.Sub(s.opts.Now())
	if ttl <= 0 {
		return nil // already expired: never takeable
	}
	return s.opts.do(ctx, func(ctx context.Context) error {
		return s.rdb.Set(ctx, s.opts.key(purposeChallenge, challenge), "b:"+binding, ttl).Err()
	})
}

// Take implements appattest.ChallengeStore: GETDEL, so a challenge is used
// once across instances.
func (s *AttestStore) Take(ctx context.Context, challenge string) (string, bool, error) {
	v, err := call(ctx, &s.opts, func(ctx context.Context) (string, error) {
		return s.rdb.GetDel(ctx, s.opts.key(purposeChallenge, challenge)).Result()
	})
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if len(v) < 2 || v[:2] != "b:" {
		return "", false, nil
	}
	return v[2:], true, nil
}

// A subject's history is one hash (Cluster safe: every script touches
// one key): the last located observation in field "rec" with its expiry
// in "rec_exp" (ms), and each attested key the subject used in a field
// "k:" + a digest of the key ID, whose value is when it was last used
// (ms). No key ID is stored in the clear.
var swapScript = redis.NewScript(`
local prev = redis.call('HMGET', KEYS[1], 'rec', 'rec_exp')
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'rec_exp', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if prev[1] and prev[2] and tonumber(prev[2]) > tonumber(ARGV[2]) then return prev[1] end
return false
`)

// Swap implements attest.HistoryStore: one script, atomic.
func (s *AttestStore) Swap(ctx context.Context, subject string, record []byte, ttl time.Duration) ([]byte, error) {
	now := s.opts.Now()
	ttlMs := max(ttl.Milliseconds(), 1)
	prev, err := call(ctx, &s.opts, func(ctx context.Context) (string, error) {
		return swapScript.Run(ctx, s.rdb, []string{s.opts.key(purposeHistory, subject)},
			record, now.UnixMilli(), now.UnixMilli()+ttlMs, ttlMs).Text()
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []byte(prev), nil
}

// addKeyScript records a key's use (ARGV[1] the field, ARGV[2] when, ms,
// never moved back), drops the keys last used at or before ARGV[3] (ms),
// keeps the ARGV[4] most recently used, refreshes the expiry (ARGV[5] ms)
// and returns how many keys remain.
var addKeyScript = redis.NewScript(`
local at = tonumber(ARGV[2])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or tonumber(cur) < at then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local all = redis.call('HGETALL', KEYS[1])
local cutoff = tonumber(ARGV[3])
local keys = {}
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, 2) == 'k:' then
    local t = tonumber(all[i + 1])
    if t <= cutoff then
      redis.call('HDEL', KEYS[1], f)
    else
      keys[#keys + 1] = {f, t}
    end
  end
end
local limit = tonumber(ARGV[4])
if #keys > limit then
  table.sort(keys, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
  for i = 1, #keys - limit do redis.call('HDEL', KEYS[1], keys[i][1]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return math.min(#keys, limit)
`)

// historyKeys is attest.MaxHistoryKeys.
const historyKeys = 16

// AddKey implements attest.HistoryStore: one script, atomic.
func (s *AttestStore) AddKey(ctx context.Context, subject, keyID string, at time.Time, ttl time.Duration) (int, error) {
	sum := sha256.Sum256([]byte(keyID))
	field := "k:" + hex.EncodeToString(sum[:16])
	return call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return addKeyScript.Run(ctx, s.rdb, []string{s.opts.key(purposeHistory, subject)},
			field, at.UnixMilli(), at.Add(-ttl).UnixMilli(), historyKeys, max(ttl.Milliseconds(), 1)).Int()
	})
}
