// Package replay is the bounded in-memory single-use cache behind the
// replay defences of auth (DPoP jti), signing (nonces) and attest (Play
// Integrity nonces).
//
// Entries live until their expiry; the cache holds at most its size. An
// eviction must not open a replay hole: when an entry is evicted before
// its expiry, a floor is raised to that entry's expiry, and from then on
// every id whose expiry is at or below the floor is refused, whether it
// was seen or not (fail closed). There is one global floor, which starts
// where the caller says (a restart forgets every id used before it), and
// one floor per scope.
//
// # Scopes
//
// An id may be recorded in a scope: the key that vouches for it (a device
// key ID, a DPoP proof key's thumbprint). Scopes keep one key's traffic,
// however much of it and however far ahead its timestamps, from raising a
// floor that another key's honest traffic must clear:
//
//   - Share. While the cache has room, a scope records as much as it
//     likes. When it is full, an entry whose eviction refuses nothing new
//     goes first: the oldest of the cache if it has expired, or the
//     oldest entry of a scope whose floor (below) already covers it,
//     which is dead weight (its id is refused whether it is held or not).
//     Else the scope over its share (size/64, and at least 64 or the
//     whole of a smaller cache) holding the most entries gives up its
//     oldest; only when no scope holds more than its share is the oldest
//     entry of the cache evicted. So one key, however much it sends,
//     evicts only its own entries, and another key's unexpired entries
//     are evicted only when the cache is full of keys at or under their
//     share: 64 keys' worth of entries (fewer keys when some hold less,
//     then more keys each), or when that key holds more than any other
//     and more than its share.
//   - Per-scope floors. Evicting a scoped entry before its expiry raises
//     its scope's floor, not the global one: only that key's ids at or
//     below it are refused. A scope's floor is dropped once it has passed
//     (everything it guarded has expired).
//   - Overflow. At most max(16, size/16) scopes have a floor at once.
//     When that many live floors are held and another scope needs one,
//     the lowest of them and the new one is folded into the global floor
//     (which rises to it); a folded floor of the table leaves it. The
//     global floor is thus never above the lowest of more live floors
//     than the table holds: raising it to a level takes more distinct
//     keys, each with its own entries evicted above that level, than the
//     table holds; never one key.
//
// Time never goes back for the cache: each use takes the latest time any
// use has read, so an id evicted as expired stays expired even for a use
// whose clock reading is older (it waited for the lock, or the wall clock
// stepped back).
//
// Ids recorded without a scope ([Cache.Use]) have no share, and their
// evictions raise the global floor, as for a cache of one scope.
//
// # Structure
//
// Entries live in a slab of size slots, allocated once, on two intrusive
// lists: every entry on the list of the whole cache, in the order it was
// recorded (doubly linked, so that an entry can leave from the middle),
// and every scoped entry on its scope's list, in the same order (a
// circular singly linked list through its tail, so that a scope needs
// only its tail and count). Since both are in recording order, the
// oldest entry of the cache is the oldest of its scope. Eviction is a
// direct call with the current time (evict), made under the lock by the
// use that needs the room: there is no callback and no LRU library. Ids
// and scopes are found in hash tables (see table.go) of their 64-bit
// keyed hashes, and the floors in a min-heap (see floors.go). Nothing is
// allocated per id, and none of it holds a pointer for the garbage
// collector to scan.
//
// Memory: 40 bytes of slab and 32 of index per entry, allocated at New;
// 64 per floor (at most size/16 of them, so 4 bytes per entry), allocated
// on the first scoped use; and 32 to 64 per scope with entries, in a table
// that grows with them (doubling, so a few rebuilds in the life of a
// cache): from 76 bytes per entry when few keys hold many entries, to 140
// when every entry has a key of its own.
package replay

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
)

// Result says why [Cache.Use] accepted or refused an id.
type Result int

const (
	// Fresh: the id was not seen and is now recorded.
	Fresh Result = iota
	// Seen: the id was used before and has not expired.
	Seen
	// BelowFloor: the id's expiry is at or below the global floor or its
	// scope's floor, so the cache cannot prove it unseen.
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
// (about 5×10⁻¹⁵ for 100,000 entries). Scopes are hashed the same way,
// under a second seed; two scopes whose hashes collide share their count
// and floor, which no client can arrange.
type Cache struct {
	seed  maphash.Seed // ids'
	seed2 maphash.Seed // scopes'
	now   func() time.Time
	size  int // most entries held
	share int // entries a scope holds before it is the first to give way

	mu      sync.Mutex
	slots   []entry // the slab; slots[:fresh] have been used
	fresh   int32   // slots never used yet start here
	free    int32   // a free slot, linked through next; none when -1
	used    int     // entries listed
	oldest  int32   // the list of all entries, oldest first; empty when -1
	newest  int32
	index   table        // id hash -> expiry of its newest entry, unix nanoseconds
	scopes  table        // scope hash -> tail<<32 | count, for scopes with entries
	floors  floors       // per-scope floors
	nFloors int          // most per-scope floors
	floor   int64        // the global floor, unix nanoseconds
	last    int64        // the latest time read under mu (see tick)
	heavy   []scopeCount // the scopes holding more than their share (fewer than size/share)
	// Scopes whose floor rose lately (see victim): a ring of the latest
	// nCovered notes, the latest at topCovered.
	covered    [maxCovered]uint64
	nCovered   int
	topCovered int
}

// scopeCount is a scope and its number of entries.
type scopeCount struct {
	scope uint64
	count int32
}

// entry is one recorded id. An entry whose id has since been recorded
// again (after it expired) stays listed, stale, until it is evicted: the
// index holds the newest entry's expiry, so a stale entry is told apart
// by its own.
type entry struct {
	id         uint64
	exp        int64  // unix nanoseconds
	scope      uint64 // 0: unscoped
	prev, next int32  // the list of all entries (next: the free list, for a free slot)
	snext      int32  // the scope's circular list: the next newer entry, or the oldest after the tail
}

// New returns a Cache of at most size entries (size > 0), reading time from
// now (nil: time.Now). The global floor starts at startFloor: a restart
// forgets every id used before it, so callers that must refuse those pass
// the start time plus their validity window, and every id that could have
// been used before the process started is refused.
func New(size int, startFloor time.Time, now func() time.Time) *Cache {
	if size <= 0 {
		panic("replay: size must be positive")
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{
		seed: maphash.MakeSeed(), seed2: maphash.MakeSeed(), now: now,
		size: size, share: max(size/64, min(size, 64)), nFloors: max(16, size/16),
		slots: make([]entry, size), free: -1, oldest: -1, newest: -1,
		index: newTable(size), floor: startFloor.UnixNano(),
	}
}

// Use records id as used until exp, unless it is already recorded, expired,
// or at or below the global floor. It has no scope: its eviction raises
// the global floor.
func (c *Cache) Use(id string, exp time.Time) Result {
	return c.use(0, maphash.String(c.seed, id), exp)
}

// UseScoped records id in scope as used until exp, unless it is already
// recorded in scope, expired, or at or below the global floor or scope's
// floor (see Scopes in the package doc). The same id in two scopes is two
// ids.
func (c *Cache) UseScoped(scope, id string, exp time.Time) Result {
	// Each part hashed on its own, under a seed of its own, and the two
	// combined: nothing copied. Two pairs that differ get the same id
	// hash only by chance, as with any 64-bit keyed hash (see Cache), and
	// that only refuses a fresh pair.
	s := maphash.String(c.seed2, scope)
	if s == 0 {
		s = 1 // 0 means unscoped
	}
	return c.use(s, maphash.String(c.seed, id)^bits.RotateLeft64(s, 32), exp)
}

func (c *Cache) use(scope, id uint64, exp time.Time) Result {
	if id == 0 {
		id = 1 // 0 marks an empty slot: a collision, refused at worst
	}
	now := c.now().UnixNano()
	e := exp.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	now = c.tick(now)
	if e <= now {
		return Expired
	}
	c.dropFloors(now)
	if e <= c.floor {
		return BelowFloor
	}
	if scope != 0 && c.floors.max != 0 {
		if f, ok := c.floors.get(scope); ok && e <= f {
			return BelowFloor
		}
	}
	if exp, ok := c.index.get(id); ok && exp > now {
		return Seen
	}
	c.record(scope, id, e, now)
	return Fresh
}

// tick returns now, or the latest time a use has seen if that is later,
// and notes it. Decisions under the lock never go back in time: an id
// evicted as expired (which raises no floor) stays expired for every
// later use, even one whose clock was read before the eviction and that
// waited for the lock, or one after the wall clock stepped back.
// Requires c.mu held.
func (c *Cache) tick(now int64) int64 {
	if now < c.last {
		return c.last
	}
	c.last = now
	return now
}

// dropFloors drops the per-scope floors that no longer refuse anything:
// those that have passed (every id at or below them has expired) and
// those at or below the global floor. Requires c.mu held.
func (c *Cache) dropFloors(now int64) {
	for {
		m, ok := c.floors.min()
		if !ok || m.floor > now && m.floor > c.floor {
			return
		}
		c.floors.popMin()
	}
}

// record lists id, in scope, expiring at e, making room first when the
// cache is full: the heaviest scope over its share gives up its oldest
// entry, or else the cache its oldest. Requires c.mu held.
func (c *Cache) record(scope, id uint64, e, now int64) {
	if c.used == c.size {
		c.evict(c.victim(now), now)
	}
	x := c.alloc()
	c.slots[x] = entry{id: id, exp: e, scope: scope, prev: c.newest, next: -1}
	if c.newest >= 0 {
		c.slots[c.newest].next = x
	} else {
		c.oldest = x
	}
	c.newest = x
	c.used++
	c.index.set(id, e) // found again: the eviction above may have moved entries
	if scope == 0 {
		return
	}
	if c.floors.max == 0 { // the first scoped use
		c.scopes, c.floors = newTable(8), newFloors(c.nFloors)
		c.heavy = make([]scopeCount, 0, c.size/c.share+1)
	}
	i, ok := c.scopes.find(scope)
	if !ok {
		// A new scope: the table grows with the scopes held (at most
		// one per entry), rather than taking room for size of them at
		// once.
		c.scopes.grow()
		c.slots[x].snext = x
		c.scopes.set(scope, pack(x, 1))
		c.counted(scope, 1)
		return
	}
	tail, count := unpack(c.scopes.slots[i].val)
	c.slots[x].snext = c.slots[tail].snext // the oldest, after the new tail
	c.slots[tail].snext = x
	c.scopes.slots[i].val = pack(x, count+1)
	c.counted(scope, count+1)
}

// counted notes that scope now holds n entries, in c.heavy when that is
// over its share. Requires c.mu held.
func (c *Cache) counted(scope uint64, n int32) {
	if int(n) < c.share { // not heavy, nor was it before this step of one
		return
	}
	for k := range c.heavy {
		if c.heavy[k].scope != scope {
			continue
		}
		if int(n) > c.share {
			c.heavy[k].count = n
			return
		}
		last := len(c.heavy) - 1
		c.heavy[k] = c.heavy[last]
		c.heavy = c.heavy[:last]
		return
	}
	if int(n) > c.share {
		c.heavy = append(c.heavy, scopeCount{scope: scope, count: n})
	}
}

// victim returns the entry to evict from a full cache. First one whose
// eviction refuses nothing new: the oldest of the cache if it has
// expired, or the oldest entry of a scope whose floor rose lately, if
// that floor (or the global one) covers it (such entries are dead
// weight: their ids are refused whether they are held or not, so a
// flood whose own floor covers its entries loses them first). Else the
// oldest entry of the scope over its share that holds the most (at once
// if it has expired); else, when no scope holds more than its share, the
// oldest of the cache. Requires c.mu held.
func (c *Cache) victim(now int64) int32 {
	if c.slots[c.oldest].exp <= now {
		return c.oldest
	}
	for ; c.nCovered > 0; c.nCovered, c.topCovered = c.nCovered-1, (c.topCovered+maxCovered-1)%maxCovered {
		scope := c.covered[c.topCovered] // the latest first
		if v, ok := c.scopes.get(scope); ok {
			tail, _ := unpack(v)
			x := c.slots[tail].snext // the scope's oldest, after its tail
			e := c.slots[x].exp
			if f, ok := c.floors.get(scope); e <= now || e <= c.floor || ok && e <= f {
				return x
			}
		}
		// No entries, or the oldest is not covered: nothing free here
		// (entries are evicted oldest first) until its floor rises again.
	}
	best, bestCount := int32(-1), int32(0)
	for _, h := range c.heavy {
		v, _ := c.scopes.get(h.scope)
		tail, _ := unpack(v)
		x := c.slots[tail].snext
		if c.slots[x].exp <= now {
			return x
		}
		if h.count > bestCount {
			best, bestCount = x, h.count
		}
	}
	if best >= 0 {
		return best
	}
	return c.oldest
}

// noteCovered notes that scope's floor rose, so its oldest entries may be
// covered by it (see victim). The list keeps the latest maxCovered
// notes, the oldest overwritten first; a scope noted twice in a row is
// noted once. Requires c.mu held.
func (c *Cache) noteCovered(scope uint64) {
	if c.nCovered > 0 && c.covered[c.topCovered] == scope {
		return
	}
	c.topCovered = (c.topCovered + 1) % maxCovered
	c.covered[c.topCovered] = scope
	c.nCovered = min(c.nCovered+1, maxCovered)
}

// maxCovered bounds the list of scopes whose floor rose lately.
const maxCovered = 64

// alloc returns a free slot. There must be one (c.used < c.size).
// Requires c.mu held.
func (c *Cache) alloc() int32 {
	if x := c.free; x >= 0 {
		c.free = c.slots[x].next
		return x
	}
	x := c.fresh
	c.fresh++
	return x
}

// evict removes entry x, which must be the oldest of its scope (the
// oldest of the cache is), at time now: it leaves both lists and, unless
// stale, the index; if it had not expired, its scope's floor (or the
// global one, for an unscoped entry) rises to its expiry. Requires c.mu
// held.
func (c *Cache) evict(x int32, now int64) {
	s := c.slots[x]
	if s.scope != 0 {
		i, _ := c.scopes.find(s.scope)
		tail, count := unpack(c.scopes.slots[i].val)
		if count == 1 {
			c.scopes.remove(i)
		} else {
			c.slots[tail].snext = s.snext // x was the oldest, after the tail
			c.scopes.slots[i].val = pack(tail, count-1)
		}
		c.counted(s.scope, count-1)
	}
	if s.prev >= 0 {
		c.slots[s.prev].next = s.next
	} else {
		c.oldest = s.next
	}
	if s.next >= 0 {
		c.slots[s.next].prev = s.prev
	} else {
		c.newest = s.prev
	}
	if i, ok := c.index.find(s.id); ok && c.index.slots[i].val == s.exp { // not recorded again since, under a later expiry
		c.index.remove(i)
	}
	c.used--
	c.slots[x] = entry{next: c.free}
	c.free = x
	if s.exp > now {
		c.raise(s.scope, s.exp)
	}
}

// raise raises scope's floor (the global one for scope 0) to e. When the
// floor table is full, the lowest floor is folded into the global floor
// first (see Overflow in the package doc). Requires c.mu held.
func (c *Cache) raise(scope uint64, e int64) {
	if e <= c.floor {
		return // the global floor already refuses everything up to e
	}
	if scope == 0 {
		c.floor = e
		return
	}
	if f, ok := c.floors.get(scope); ok && e <= f {
		return
	}
	c.noteCovered(scope)
	if c.floors.raise(scope, e) {
		return
	}
	// Full of live floors (dropFloors ran at the start of this use, and
	// a floor raised since is above now): fold the lowest of them and
	// the new one. Folding one of the table's while the new one is lower
	// would let as many keys as the table holds, dated ahead, lift the
	// global floor above every other key's traffic as soon as any other
	// key needed a floor.
	if m, _ := c.floors.min(); e <= m.floor {
		c.floor = e
		return
	}
	if m := c.floors.popMin(); m.floor > c.floor {
		c.floor = m.floor
	}
	if e > c.floor {
		c.floors.raise(scope, e)
	}
}

func pack(tail, count int32) int64 {
	return int64(uint64(uint32(tail))<<32 | uint64(uint32(count))) // #nosec G115 -- bit packing of two int32s
}

func unpack(v int64) (tail, count int32) {
	return int32(uint64(v) >> 32), int32(uint32(v)) // #nosec G115 -- bit unpacking of two int32s
}

// Len returns the number of ids held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.index.n
}

// Floor returns the global floor.
func (c *Cache) Floor() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Unix(0, c.floor).UTC()
}

// ScopeFloor returns scope's own floor and true, or false when it has
// none (the global floor applies to it all the same).
func (c *Cache) ScopeFloor(scope string) (time.Time, bool) {
	s := maphash.String(c.seed2, scope)
	if s == 0 {
		s = 1
	}
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropFloors(c.tick(now))
	if c.floors.max == 0 {
		return time.Time{}, false
	}
	f, ok := c.floors.get(s)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, f).UTC(), true
}

// Floors returns the number of scopes with a floor of their own.
func (c *Cache) Floors() int {
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropFloors(c.tick(now))
	return c.floors.len()
}
