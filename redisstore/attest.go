package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// AttestStore keeps App Attest keys, challenges and subjects' risk
// history in Redis: it implements attest.KeyStore, attest.ChallengeStore
// and attest.HistoryStore. Every call touches one key (a hash per attested
// key, with its counter swapped by one Lua script), so it is Redis Cluster
// safe. It is safe for concurrent use by multiple goroutines.
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

// Enroll implements attest.KeyStore: HSETNX of the record, counter 0.
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

// Lookup implements attest.KeyStore.
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

// AdvanceCounter implements attest.KeyStore: a compare-and-swap in one
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

// Put implements attest.ChallengeStore.
func (s *AttestStore) Put(ctx context.Context, challenge, binding string, exp time.Time) error {
	ttl := time.Until(exp)
	if ttl <= 0 {
		return nil // already expired: never takeable
	}
	return s.opts.do(ctx, func(ctx context.Context) error {
		return s.rdb.Set(ctx, s.opts.key(purposeChallenge, challenge), "b:"+binding, ttl).Err()
	})
}

// Take implements attest.ChallengeStore: GETDEL, so a challenge is used
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

// Swap implements attest.HistoryStore: SET with GET, atomic.
func (s *AttestStore) Swap(ctx context.Context, subject string, record []byte, ttl time.Duration) ([]byte, error) {
	prev, err := call(ctx, &s.opts, func(ctx context.Context) (string, error) {
		return s.rdb.SetArgs(ctx, s.opts.key(purposeHistory, subject), record, redis.SetArgs{TTL: ttl, Get: true}).Result()
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []byte(prev), nil
}
