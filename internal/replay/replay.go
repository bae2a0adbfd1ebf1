// Package replay is the bounded in-memory single-use cache behind the
// replay defences of auth (DPoP jti) and signing (nonces).
//
// Entries live until their expiry; the cache holds at most its size and
// evicts the least recently added entries first (a block of them at a
// time, see [Cache]). An eviction must not open a
// replay hole: when an entry is evicted before its expiry, the cache raises
// a floor to that entry's expiry, and from then on refuses every id whose
// expiry is at or below the floor, whether it was seen or not. Since
// entries expire at their use time plus a fixed window, evicted entries are
// older than new ones, so honest traffic stays above the floor; only ids as
// old as the evicted ones are refused (fail closed).
package replay

import (
	"hash/maphash"
	"math/bits"
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
// the same small size whatever the id's length. A collision can only make
// a fresh id look seen, which refuses it (fail closed), never accept a
// replay; with n entries held, a fresh id collides with probability n/2⁶⁴
// (about 5×10⁻¹⁵ for 100,000 entries).
//
// Entries are indexed in one hash table of hash to expiry (see table) and
// listed, in the order they were recorded, in blocks of up to maxBlock,
// which a golang-lru LRU keeps, the least recently filled first.
// Recording an id is a table insert and an append to the current block:
// no memory is allocated per id, and the table and blocks hold no
// pointers for the garbage collector to scan. Eviction takes the oldest block whole, a
// block's entries at once instead of one (a block is at most a
// sixteenth of the size, and one entry in caches under 32): the cache
// then holds up to a block fewer than its size, and the floor is the
// expiry of the newest evicted, as evicting them one by one would leave
// it.
type Cache struct {
	seed   maphash.Seed
	seed2  maphash.Seed // UsePair's, for the scope
	mu     sync.Mutex
	index  table                    // id hash -> expiry, unix nanoseconds
	blocks *lru.LRU[uint64, *block] // block number -> its entries, oldest first
	cur    *block                   // the block being filled (also in blocks)
	next   uint64                   // number of the next block
	spare  *block                   // an evicted block, for reuse
	size   int                      // most entries listed
	per    int                      // entries a block lists, 1 to maxBlock
	n      int                      // entries listed
	floor  int64                    // expiry of the newest entry evicted unexpired
	now    func() time.Time
	evict  int64 // now, in unix nanoseconds, during an eviction; requires mu held
}

// maxBlock is the most entries a block lists.
const maxBlock = 16

// block lists entries in the order they were recorded.
type block struct {
	entries [maxBlock]entry
	len     int
}

type entry struct {
	id  uint64
	exp int64
}

// New returns a Cache of at most size entries (size > 0), reading time from
// now (nil: time.Now). The floor starts at startFloor: a restart forgets
// every id used before it, so callers pass the start time plus their
// validity window, and every id that could have been used before the
// process started is refused.
func New(size int, startFloor time.Time, now func() time.Time) *Cache {
	if size <= 0 {
		panic("replay: size must be positive")
	}
	if now == nil {
		now = time.Now
	}
	per := min(maxBlock, max(1, size/16))
	c := &Cache{now: now, floor: startFloor.UnixNano(), seed: maphash.MakeSeed(), seed2: maphash.MakeSeed(), size: size, per: per, index: newTable(size)}
	// Every block but the current one is full, so the entries' bound is
	// reached first, and with at least two blocks the one evicted is
	// never the current one: the LRU's own bound is a backstop.
	c.blocks, _ = lru.NewLRU[uint64, *block](size/per+2, c.onEvict)
	return c
}

// onEvict drops an evicted block's entries from the index and raises the
// floor to the newest unexpired one. Requires c.mu held (simplelru calls
// it from Add and RemoveOldest).
func (c *Cache) onEvict(_ uint64, b *block) {
	for _, e := range b.entries[:b.len] {
		if i, ok := c.index.find(e.id); ok && c.index.slots[i].exp == e.exp { // not recorded again since, under a later expiry
			c.index.remove(i)
		}
		if e.exp > c.evict && e.exp > c.floor {
			c.floor = e.exp
		}
	}
	c.n -= b.len
	if b == c.cur {
		c.cur = nil
	}
	*b = block{}
	c.spare = b
}

// record lists id, expiring at exp, in the current block, and indexes it
// in slot i, which c.index.find returned for it. Requires c.mu held.
func (c *Cache) record(i int, id uint64, exp int64) {
	// Indexed first: the evictions below move entries within the table,
	// after which i would no longer be id's slot.
	c.index.put(i, id, exp)
	if c.cur == nil || c.cur.len == c.per {
		b := c.spare
		if b == nil {
			b = new(block)
		}
		c.spare = nil
		c.blocks.Add(c.next, b)
		c.next++
		c.cur = b
	}
	c.cur.entries[c.cur.len] = entry{id: id, exp: exp}
	c.cur.len++
	c.n++
	for c.n > c.size {
		c.blocks.RemoveOldest()
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
	// Each part hashed on its own, under a seed of its own, and the two
	// combined: nothing copied, and two string hashes cost less than
	// maphash.Comparable's hash of a struct of two strings. Two pairs
	// that differ get the same hash only by chance, as with any 64-bit
	// keyed hash (see Cache), and that only refuses a fresh pair.
	return c.use(maphash.String(c.seed, id)^bits.RotateLeft64(maphash.String(c.seed2, scope), 32), exp)
}

func (c *Cache) use(id uint64, exp time.Time) Result {
	if id == 0 {
		id = 1 // 0 marks an empty slot: a collision, refused at worst
	}
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
	i, ok := c.index.find(id)
	if ok && c.index.slots[i].exp > now {
		return Seen
	}
	c.evict = now
	c.record(i, id, e)
	return Fresh
}

// Len returns the number of entries held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.index.n
}

// Floor returns the current floor.
func (c *Cache) Floor() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(0, c.floor).UTC()
}
