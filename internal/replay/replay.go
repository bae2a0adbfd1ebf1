// Package replay is the bounded in-memory single-use cache behind the
// replay defences of auth (DPoP jti) and signing (nonces).
//
// Entries live until their expiry; the cache holds at most its size and
// evicts the least recently added entry first. An eviction must not open a
// replay hole: when an entry is evicted before its expiry, the cache raises
// a floor to that entry's expiry, and from then on refuses every id whose
// expiry is at or below the floor, whether it was seen or not. Since
// entries expire at their use time plus a fixed window, evicted entries are
// older than new ones, so honest traffic stays above the floor; only ids as
// old as the evicted ones are refused (fail closed).
package replay

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/simplelru"
)

// Result says why [Cache.Use] accepted or refused an id.
type Result int

const (
	// Fresh: the id was not seen and is now recorded.
	Fresh Result = iota
	// Seen: the id was used before and has not expired.
	Seen
	// BelowFloor: the id's expiry is at or below the eviction floor, so
	// the cache cannot prove it unseen.
	BelowFloor
	// Expired: the id's expiry has already passed.
	Expired
)

// Cache is a bounded single-use cache. It is safe for concurrent use by
// multiple goroutines.
//
// It holds a 64-bit keyed hash of each id (maphash under a seed of its
// own, which nobody outside the process knows), not the id: an entry is
// the same small size whatever the id's length, and recording one
// allocates only the LRU's element. A collision can only make a fresh id
// look seen, which refuses it (fail closed), never accept a replay; with n
// entries held, a fresh id collides with probability n/2⁶⁴ (about 5×10⁻¹⁵
// for 100,000 entries).
type Cache struct {
	seed  maphash.Seed
	mu    sync.Mutex
	lru   *lru.LRU[uint64, int64] // id hash -> expiry, unix nanoseconds
	floor int64                   // expiry of the newest entry evicted unexpired
	now   func() time.Time
	evict int64 // now, in unix nanoseconds, during an Add; requires mu held
}

// New returns a Cache of at most size entries (size > 0), reading time from
// now (nil: time.Now). The floor starts at startFloor: a restart forgets
// every id used before it, so callers pass the start time plus their
// validity window, and every id that could have been used before the
// process started is refused.
func New(size int, startFloor time.Time, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	c := &Cache{now: now, floor: startFloor.UnixNano(), seed: maphash.MakeSeed()}
	l, err := lru.NewLRU[uint64, int64](size, c.onEvict)
	if err != nil {
		panic("replay: size must be positive")
	}
	c.lru = l
	return c
}

// onEvict raises the floor when an unexpired entry is evicted. Requires
// c.mu held (simplelru calls it from Add).
func (c *Cache) onEvict(_ uint64, exp int64) {
	if exp > c.evict && exp > c.floor {
		c.floor = exp
	}
}

// Use records id as used until exp, unless it is already recorded, expired,
// or at or below the floor.
func (c *Cache) Use(id string, exp time.Time) Result {
	return c.use(maphash.String(c.seed, id), exp)
}

// UsePair is Use of the id made of scope and id together (say, a key ID
// and a nonce), without building it: pairs differ when either part does.
func (c *Cache) UsePair(scope, id string, exp time.Time) Result {
	// The length of scope first, so that the parts cannot shift; hashed
	// from one buffer (on the stack for the usual sizes).
	var stack [320]byte
	buf := binary.LittleEndian.AppendUint64(stack[:0], uint64(len(scope)))
	buf = append(append(buf, scope...), id...)
	return c.use(maphash.Bytes(c.seed, buf), exp)
}

func (c *Cache) use(id uint64, exp time.Time) Result {
	now := c.now().UnixNano()
	e := exp.UnixNano()
	if e <= now {
		return Expired
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e <= c.floor {
		return BelowFloor
	}
	if old, ok := c.lru.Peek(id); ok && old > now {
		return Seen
	}
	c.evict = now
	c.lru.Add(id, e)
	return Fresh
}

// Len returns the number of entries held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Floor returns the current floor.
func (c *Cache) Floor() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(0, c.floor).UTC()
}
