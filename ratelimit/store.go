package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// result is what a store answers for one request.
type result struct {
	// Allowed reports whether a token was taken.
	Allowed bool
	// Remaining is the whole number of tokens left.
	Remaining int
	// RetryAfter is, when not allowed, how long until one request passes.
	RetryAfter time.Duration
	// NextToken is how long until one more token accrues (0 when the
	// bucket is full).
	NextToken time.Duration
}

// Store keeps token buckets, with standard-library types only, so that
// implementations need not import this package. Implementations must be
// safe for concurrent use; the in-memory default is bounded, and
// redisstore provides one that several instances share (GCRA in one Lua
// script per decision). The key a Store receives is already a keyed hash
// of the caller's key.
//
// A bucket holds up to burst tokens and gains one every interval.
//
// The default store keeps golang.org/x/time/rate limiters, made once and
// shared by every Handler wrap, in a bounded structure of Config.MaxKeys
// buckets keyed by a per-process seeded hash (raw keys are never stored).
// Only buckets that have refilled completely are evicted, so a flood of new
// keys cannot hand an attacker a fresh bucket; when every bucket is still
// refilling, new keys follow Config.Overflow (reject, or share one overflow
// bucket). A shared Store (redisstore's GCRA store) receives keys as HMACs
// under Config.KeySecret.
type Store interface {
	// Take takes one token from key's bucket at time now. It returns
	// whether a token was taken, the whole tokens left, and wait: when no
	// token was taken, the time until one is; otherwise the time until one
	// more accrues (0 when the bucket is full).
	Take(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) (ok bool, remaining int, wait time.Duration, err error)
	// Refund gives one token back to key's bucket, for a request that
	// another of its limits rejected.
	Refund(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) error
}

// Overflow says what happens to a new key when the in-memory store is at
// MaxKeys and no bucket can be evicted (every one is still refilling).
type Overflow int

const (
	// OverflowReject rejects requests of new keys until a bucket has
	// refilled and can be evicted. Default.
	OverflowReject Overflow = iota
	// OverflowShare makes new keys share one overflow bucket of the
	// configured limit.
	OverflowShare
)

const shardCount = 16

// memoryStore is the bounded in-memory Store: x/time/rate limiters in
// sharded LRUs. Only buckets that have refilled completely are evicted, so
// a flood of new keys cannot hand an attacker a fresh bucket.
type memoryStore struct {
	seed     maphash.Seed
	overflow Overflow
	shards   [shardCount]memShard
	names    claims // the Limiters served, when shared

	sharedMu sync.Mutex
	shared   *bucket // the overflow bucket, made on first use
}

type memShard struct {
	mu  sync.Mutex
	max int
	lru *simplelru.LRU[uint64, *bucket]
}

type bucket struct {
	lim   *rate.Limiter
	limit Limit
}

// NewMemoryStore returns a bounded in-memory Store of at most maxKeys
// buckets (Default when maxKeys <= 0: 100000) with the given overflow
// policy, for several Limiters of one process to share. It implements
// [NamespaceClaimer]: two Limiters of one name cannot share it. It is safe
// for concurrent use by multiple goroutines.
func NewMemoryStore(maxKeys int, overflow Overflow) Store {
	return newMemoryStore(maxKeys, overflow)
}

func newMemoryStore(maxKeys int, overflow Overflow) *memoryStore {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	s := &memoryStore{seed: maphash.MakeSeed(), overflow: overflow}
	for i := range s.shards {
		// The shards' bounds add up to maxKeys exactly (a shard may hold
		// none when maxKeys is small).
		n := maxKeys / shardCount
		if i < maxKeys%shardCount {
			n++
		}
		s.shards[i].max = n
		// Capacity one above the bound: eviction is ours to decide.
		s.shards[i].lru, _ = simplelru.NewLRU[uint64, *bucket](n+1, nil)
	}
	return s
}

func newBucket(l Limit, now time.Time) *bucket {
	b := &bucket{lim: rate.NewLimiter(l.rate(), l.burst()), limit: l}
	b.lim.SetLimitAt(now, l.rate()) // anchor the bucket at now, full
	return b
}

// len returns the number of buckets held.
func (s *memoryStore) len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += s.shards[i].lru.Len()
		s.shards[i].mu.Unlock()
	}
	return n
}

// update runs f on key h's bucket, creating it if there is room, under
// the lock that guards the bucket: every token taken from a bucket is
// taken under its lock, so that what the bucket held just before is
// exact. When the store is full and no bucket can be evicted, f runs on
// the shared overflow bucket under OverflowShare; under OverflowReject it
// does not run, and update reports false.
func (s *memoryStore) update(h uint64, l Limit, now time.Time, f func(*bucket)) bool {
	sh := &s.shards[h%shardCount]
	sh.mu.Lock()
	// Peek, not Get: the order is insertion order, and eviction below
	// touches the buckets it cannot evict, so hot buckets move away from
	// the eviction end without a list move on every request.
	b, ok := sh.lru.Peek(h)
	if !ok && (sh.lru.Len() < sh.max || sh.evictFull(now)) {
		b, ok = newBucket(l, now), true
		sh.lru.Add(h, b)
	}
	if ok {
		b.adopt(l, now)
		f(b)
	}
	sh.mu.Unlock()
	if ok {
		return true
	}
	if s.overflow != OverflowShare {
		return false
	}
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	if s.shared == nil {
		s.shared = newBucket(l, now)
	}
	s.shared.adopt(l, now)
	f(s.shared)
	return true
}

// adopt makes b follow l when LimitFor changed its key's limit. Requires
// b's lock held.
func (b *bucket) adopt(l Limit, now time.Time) {
	if b.limit != l {
		b.lim.SetLimitAt(now, l.rate())
		b.lim.SetBurstAt(now, l.burst())
		b.limit = l
	}
}

// evictFull evicts the oldest bucket that has refilled completely, looking
// at a few of the oldest and moving the ones still refilling to the other
// end. It reports whether it made room. Requires sh.mu held.
func (sh *memShard) evictFull(now time.Time) bool {
	for range 4 {
		k, oldest, ok := sh.lru.GetOldest()
		if !ok {
			return false
		}
		if oldest.lim.TokensAt(now) >= float64(oldest.lim.Burst()) {
			sh.lru.RemoveOldest()
			return true
		}
		sh.lru.Get(k) // still refilling: keep it, look at the next
	}
	return false
}

// take takes one token from key h's bucket. The tokens are read first and
// the token taken only when there is one, under the bucket's lock: so the
// bucket holds exactly one token fewer than was read, and a rejection
// costs one read of the bucket.
func (s *memoryStore) take(h uint64, l Limit, now time.Time) result {
	var tokens float64
	var allowed bool
	if !s.update(h, l, now, func(b *bucket) {
		tokens = b.lim.TokensAt(now)
		allowed = tokens >= 1 && b.lim.AllowN(now, 1)
	}) {
		return result{RetryAfter: l.emission()}
	}
	if allowed {
		tokens--
	}
	return resultOf(allowed, tokens, l)
}

func resultOf(allowed bool, tokens float64, l Limit) result {
	res := result{Allowed: allowed}
	if tokens > 0 {
		res.Remaining = int(math.Floor(tokens))
	}
	perToken := l.emission()
	if !allowed {
		res.RetryAfter = time.Duration((1 - tokens) * float64(perToken))
	}
	if tokens < float64(l.burst()) {
		res.NextToken = time.Duration((math.Floor(tokens) + 1 - tokens) * float64(perToken))
	}
	return res
}

// reserve takes one token through a reservation, so that a caller
// holding several limits can cancel it when another limit rejects.
func (s *memoryStore) reserve(h uint64, l Limit, now time.Time) (*rate.Reservation, result) {
	var r *rate.Reservation
	var tokens float64
	if !s.update(h, l, now, func(b *bucket) {
		if tokens = b.lim.TokensAt(now); tokens >= 1 {
			r = b.lim.ReserveN(now, 1)
		}
	}) {
		return nil, result{RetryAfter: l.emission()}
	}
	if r == nil || !r.OK() {
		return nil, resultOf(false, tokens, l)
	}
	return r, resultOf(true, tokens-1, l)
}

func (s *memoryStore) refund(h uint64, l Limit, now time.Time) {
	s.update(h, l, now, func(b *bucket) {
		if b.lim.TokensAt(now)+1 > float64(l.burst()) {
			return
		}
		// A reservation of -1 tokens adds one: x/time/rate subtracts n
		// from the bucket. The conformance suite pins this behaviour.
		b.lim.ReserveN(now, -1)
	})
}

// limitOf is the Limit of a bucket of burst tokens gaining one per
// interval.
func limitOf(interval time.Duration, burst int) Limit {
	return Limit{Requests: 1, Per: interval, Burst: burst}
}

// Take implements Store.
func (s *memoryStore) Take(_ context.Context, key string, interval time.Duration, burst int, now time.Time) (bool, int, time.Duration, error) {
	res := s.take(maphash.String(s.seed, key), limitOf(interval, burst), now)
	if res.Allowed {
		return true, res.Remaining, res.NextToken, nil
	}
	return false, res.Remaining, res.RetryAfter, nil
}

// ClaimNamespace implements [NamespaceClaimer].
func (s *memoryStore) ClaimNamespace(name string) error { return s.names.claim(name) }

// ReleaseNamespace implements [NamespaceClaimer].
func (s *memoryStore) ReleaseNamespace(name string) { s.names.release(name) }

// Refund implements Store.
func (s *memoryStore) Refund(_ context.Context, key string, interval time.Duration, burst int, now time.Time) error {
	s.refund(maphash.String(s.seed, key), limitOf(interval, burst), now)
	return nil
}
