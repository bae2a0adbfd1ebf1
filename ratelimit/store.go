package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
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
// The default store keeps its buckets, made once and shared by every
// Handler wrap, in a bounded table of Config.MaxKeys buckets keyed by a
// per-process seeded hash (raw keys are never stored), each bucket one
// GCRA time (a token bucket's exact equivalent): it holds MaxKeys keys at
// once, at about 45 bytes a key, a key seen before allocates nothing, and
// a rate above one token per nanosecond is no limit. Only buckets that
// have refilled completely are evicted, so a flood of new keys cannot
// hand an attacker a fresh bucket; when a new key finds the store full
// and no refilled bucket near where it looks, it follows Config.Overflow
// (reject, or share one overflow bucket). A shared Store (redisstore's GCRA store) receives keys as HMACs
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

// The default store keeps one bucket per key in GCRA form (the generic
// cell rate algorithm): a single time, the theoretical arrival time (TAT),
// from which the tokens follow, exactly as in a token bucket. Buckets live
// in shardCount open-addressing tables of plain values (no pointers, so
// the garbage collector never scans them), keyed by the per-process seeded
// hash. One count across the shards bounds them at MaxKeys exactly; each
// shard's table is sized for its share of MaxKeys with headroom for uneven
// hashing, and grows past it only if a shard's share is exceeded.
const (
	shardCount = 16
	// A table grows before its load passes maxLoadNum/maxLoadDen:
	// linear probing stays short below it.
	maxLoadNum, maxLoadDen = 3, 4
	// minSlots is the size of a shard's first table (when its share is
	// larger): a store of many keys that serves few stays small.
	minSlots = 64
	// evictScan is how many slots one new key examines, from where the
	// last look stopped, for a bucket that has refilled.
	evictScan = 32
	// maxDebt bounds how far ahead of now a bucket's TAT may be (about
	// 146 years), so that no sum of times overflows: a bucket holds at
	// most the tokens that accrue in maxDebt.
	maxDebt = 1 << 62
)

// memoryStore is the bounded in-memory Store. Only buckets that have
// refilled completely are evicted, so a flood of new keys cannot hand an
// attacker a fresh bucket.
type memoryStore struct {
	seed     maphash.Seed
	epoch    time.Time // times are ns since epoch (monotonic when both readings are)
	max      int64     // MaxKeys
	live     atomic.Int64
	full     int // slots of a shard at its share of max
	overflow Overflow
	shards   [shardCount]memShard
	names    claims // the Limiters served, when shared

	sharedMu sync.Mutex
	shared   bucket // the overflow bucket, once sharedOK
	sharedOK bool
}

// memShard is an open-addressing table with linear probing. A slot whose
// h is 0 is empty (the key hash 0 is stored as 1).
type memShard struct {
	mu    sync.Mutex
	slots []slot
	n     int // slots in use
	hand  int // where the last look for an evictable bucket stopped
}

type slot struct {
	h uint64
	b bucket
}

// bucket is a token bucket of burst tokens gaining one every per ns, in
// GCRA form: tat is when it will be full again. At now it holds burst -
// max(0, tat-now)/per tokens; it is full when tat <= now.
type bucket struct {
	tat   int64
	per   int64 // ns per token; 0 is a rate above one per ns: no limit
	burst int64
}

// NewMemoryStore returns a bounded in-memory Store of at most maxKeys
// buckets (Default when maxKeys <= 0: 100000) with the given overflow
// policy, for several Limiters of one process to share. It holds maxKeys
// keys at once with no eviction, at about 45 bytes a key; a key seen
// before costs no allocation, a new one at most one (a shard's table
// growing). It implements [NamespaceClaimer]: two Limiters of one name
// cannot share it. It is safe for concurrent use by multiple goroutines.
func NewMemoryStore(maxKeys int, overflow Overflow) Store {
	return newMemoryStore(maxKeys, overflow)
}

func newMemoryStore(maxKeys int, overflow Overflow) *memoryStore {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	// A shard's share with four standard deviations of headroom (the
	// count of a shard is binomial), at maxLoad.
	share := (maxKeys + shardCount - 1) / shardCount
	keys := share + 4*int(math.Sqrt(float64(share))) + 8
	return &memoryStore{
		seed:     maphash.MakeSeed(),
		epoch:    time.Now(),
		max:      int64(maxKeys),
		full:     keys*maxLoadDen/maxLoadNum + 1,
		overflow: overflow,
	}
}

// len returns the number of buckets held.
func (s *memoryStore) len() int { return int(s.live.Load()) }

// ns is now in ns since the store's epoch, within ±maxDebt/2 (73
// years), so that a TAT (now plus at most maxDebt) never overflows.
func (s *memoryStore) ns(now time.Time) int64 {
	return min(max(int64(now.Sub(s.epoch)), -maxDebt/2), maxDebt/2)
}

// limitOf is the Limit of a bucket of burst tokens gaining one per
// interval.
func limitOf(interval time.Duration, burst int) Limit {
	return Limit{Requests: 1, Per: interval, Burst: burst}
}

// op is a bucket operation at now (ns); limit is already adopted.
type op func(b *bucket, now int64) result

// apply runs f on key h's bucket under the lock that guards it, making
// the bucket (full, of limit l) if there is room: every token taken from
// a bucket is taken under its lock, so that what the bucket held just
// before is exact. When the store is full and no bucket can be evicted, f
// runs on the shared overflow bucket under OverflowShare; under
// OverflowReject it does not run, and apply reports false.
func (s *memoryStore) apply(h uint64, l Limit, now time.Time, f op) (result, bool) {
	per := int64(l.emission())
	burst := capBurst(per, int64(l.burst()))
	t := s.ns(now)
	if h == 0 {
		h = 1
	}
	sh := &s.shards[h%shardCount]
	sh.mu.Lock()
	if b := s.bucket(sh, h, per, burst, t); b != nil {
		b.adopt(per, burst, t)
		res := f(b, t)
		sh.mu.Unlock()
		return res, true
	}
	sh.mu.Unlock()
	if s.overflow != OverflowShare {
		return result{}, false
	}
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	if !s.sharedOK {
		s.shared, s.sharedOK = bucket{tat: t, per: per, burst: burst}, true
	}
	s.shared.adopt(per, burst, t)
	return f(&s.shared, t), true
}

// bucket returns key h's bucket in sh, making a full one when there is
// room: below MaxKeys, or in place of a bucket of sh that has refilled.
// It returns nil when there is none. Requires sh.mu held.
func (s *memoryStore) bucket(sh *memShard, h uint64, per, burst, now int64) *bucket {
	i, ok := sh.find(h)
	if ok {
		return &sh.slots[i].b
	}
	switch {
	case s.reserve():
		if len(sh.slots) == 0 || (sh.n+1)*maxLoadDen > len(sh.slots)*maxLoadNum {
			sh.grow(s.full)
			i, _ = sh.find(h)
		}
	case sh.evictRefilled(now):
		i, _ = sh.find(h) // the eviction moved slots
	default:
		return nil
	}
	sh.slots[i] = slot{h: h, b: bucket{tat: now, per: per, burst: burst}}
	sh.n++
	return &sh.slots[i].b
}

// reserve counts one more bucket if the store holds fewer than MaxKeys.
func (s *memoryStore) reserve() bool {
	for {
		n := s.live.Load()
		if n >= s.max {
			return false
		}
		if s.live.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// home is the slot where h's probe starts.
func (sh *memShard) home(h uint64) int {
	i, _ := bits.Mul64(h, uint64(len(sh.slots)))
	return int(i) // #nosec G115 -- the high word of h*len is below len
}

// find returns the slot holding h, or the empty slot where h belongs,
// and whether h is there. Requires sh.mu held.
func (sh *memShard) find(h uint64) (int, bool) {
	if len(sh.slots) == 0 {
		return 0, false
	}
	for i := sh.home(h); ; {
		switch sh.slots[i].h {
		case h:
			return i, true
		case 0:
			return i, false
		}
		if i++; i == len(sh.slots) {
			i = 0
		}
	}
}

// grow moves sh to a table twice as large, or as large as its share
// (full slots) when that is between. Requires sh.mu held.
func (sh *memShard) grow(full int) {
	n := max(2*len(sh.slots), minSlots)
	if len(sh.slots) < full {
		n = min(n, full)
	}
	old := sh.slots
	sh.slots, sh.hand = make([]slot, n), 0
	for _, sl := range old {
		if sl.h != 0 {
			i, _ := sh.find(sl.h)
			sh.slots[i] = sl
		}
	}
}

// evictRefilled removes a bucket that has refilled completely, looking
// at up to evictScan slots from where the last look stopped. It reports
// whether it made room. Requires sh.mu held.
func (sh *memShard) evictRefilled(now int64) bool {
	for range min(evictScan, len(sh.slots)) {
		if sh.hand++; sh.hand >= len(sh.slots) {
			sh.hand = 0
		}
		if sl := &sh.slots[sh.hand]; sl.h != 0 && sl.b.tat <= now {
			sh.remove(sh.hand)
			return true
		}
	}
	return false
}

// remove empties slot i, moving back the slots after it that would
// otherwise no longer be found (backward-shift deletion). Requires sh.mu
// held.
func (sh *memShard) remove(i int) {
	sh.n--
	for j := i; ; {
		sh.slots[i] = slot{}
		for {
			if j++; j == len(sh.slots) {
				j = 0
			}
			if sh.slots[j].h == 0 {
				return
			}
			// Slot j stays unless its home is cyclically outside (i, j]:
			// then the hole at i would cut its probe short.
			k := sh.home(sh.slots[j].h)
			if (i <= j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
				break
			}
		}
		sh.slots[i] = sh.slots[j]
		i = j
	}
}

// capBurst is burst, or the tokens that accrue in maxDebt at per when
// fewer (a bucket that would take more than 146 years to refill), so that
// burst*per never overflows.
func capBurst(per, burst int64) int64 {
	if hi, lo := bits.Mul64(uint64(per), uint64(burst)); hi != 0 || lo > maxDebt { // #nosec G115 -- per and burst are positive (New checks them)
		return maxDebt / per
	}
	return burst
}

// debt is how far b's TAT is ahead of now: the time until it is full.
func (b *bucket) debt(now int64) int64 { return max(b.tat-now, 0) }

// adopt makes b a bucket of per and burst when LimitFor changed its key's
// limit, keeping the tokens it holds (at most the new burst), so that a
// change of limit neither mints nor burns tokens.
func (b *bucket) adopt(per, burst, now int64) {
	if b.per == per && b.burst == burst {
		return
	}
	// Missing tokens, whole (q) and fraction (r/b.per), under the new
	// burst: k + r/b.per. The debt is that many tokens at the new per,
	// rounded up.
	var q, r int64
	if b.per > 0 {
		d := b.debt(now)
		q, r = d/b.per, d%b.per
	}
	var debt int64
	if k := q + burst - b.burst; k >= 0 && per > 0 {
		// At most burst*per (<= maxDebt: capBurst), also when a clock
		// that went back left more debt than the burst.
		hi, lo := bits.Mul64(uint64(k), uint64(per)) // #nosec G115 -- k >= 0 and per > 0, checked above
		debt = burst * per
		if hi == 0 && lo < uint64(debt) { // #nosec G115 -- debt = burst*per > 0 (capBurst keeps it below maxDebt)
			debt = int64(lo) // #nosec G115 -- lo < debt, an int64
			if r > 0 {
				hi, lo := bits.Mul64(uint64(r), uint64(per)) // #nosec G115 -- 0 < r < b.per and per > 0
				f, rem := bits.Div64(hi, lo, uint64(b.per))  // #nosec G115 -- b.per > 0; hi < b.per since r < b.per
				if rem > 0 {
					f++
				}
				debt = min(debt+int64(f), burst*per) // #nosec G115 -- f < per, an int64
			}
		}
	}
	b.tat, b.per, b.burst = now+debt, per, burst
}

// missing is the whole tokens b lacks at now, rounded up, with the debt.
func (b *bucket) missing(now int64) (int64, int64) {
	d := b.debt(now)
	if d == 0 || b.per == 0 { // per 0: full, whatever the clock did
		return 0, 0
	}
	return (d + b.per - 1) / b.per, d
}

// take takes one token if b holds one.
func (b *bucket) take(now int64) result {
	m, d := b.missing(now)
	if m >= b.burst {
		return b.result(false, m, d)
	}
	b.tat = max(b.tat, now) + b.per
	return b.result(true, m+1, d+b.per)
}

// refund gives back one token, to at most the burst.
func (b *bucket) refund(now int64) result {
	b.tat = max(b.tat-b.per, now)
	return result{}
}

// result is what a bucket missing m whole tokens (rounded up), d ns from
// full, answers.
func (b *bucket) result(allowed bool, m, d int64) result {
	res := result{Allowed: allowed, Remaining: int(max(b.burst-m, 0))}
	if !allowed {
		res.RetryAfter = time.Duration(d - (b.burst-1)*b.per)
	}
	if d > 0 {
		res.NextToken = time.Duration(b.per)
		if r := d % b.per; r > 0 {
			res.NextToken = time.Duration(r)
		}
	}
	return res
}

// take takes one token from key h's bucket.
func (s *memoryStore) take(h uint64, l Limit, now time.Time) result {
	res, ok := s.apply(h, l, now, (*bucket).take)
	if !ok {
		return result{RetryAfter: l.emission()}
	}
	return res
}

// refund gives one token back to key h's bucket.
func (s *memoryStore) refund(h uint64, l Limit, now time.Time) {
	s.apply(h, l, now, (*bucket).refund)
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
