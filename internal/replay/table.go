package replay

import "math/bits"

// table is a hash table of uint64 keys to int64 values, of fixed
// capacity, with open addressing, linear probing and backward-shift
// deletion (Knuth, TAOCP vol. 3, §6.4, Algorithm R). The Cache keeps
// three: its index (id hash to expiry), its scopes (scope hash to the
// scope's list tail and entry count) and the position of each per-scope
// floor in the floors' heap.
//
// It replaces a Go map for one reason: the Cache deletes an entry for
// every one it adds, and a Go map under that churn fills with tombstones
// that it clears by rebuilding itself, which allocates while the lock is
// held. Here a deletion moves the entries after it back instead, so the
// table never holds a tombstone and never rebuilds, and a use is one probe
// sequence where the map took two (a lookup, then an insert).
//
// # Deletion
//
// An entry is found by walking from its home slot to the right (wrapping
// at the end) until the key or an empty slot turns up. So the one rule a
// deletion must keep is that no entry is cut off from its home by an
// empty slot. Emptying slot i could cut off any entry further right in
// the same run (the full slots up to the next empty one) whose walk
// passed through i: one whose home is not in (i, j], where j is its
// slot, counted cyclically. remove therefore looks at each entry after i
// in the run, in order; the first one whose home is outside (i, j] is
// moved back into the hole at i, and its old slot j becomes the hole,
// which the same rule is then applied to. An entry whose home is inside
// (i, j] stays where it is: its walk never passed through i. The run
// ends at an empty slot, and so does the work. Nothing is marked deleted,
// so a lookup never walks over a dead slot, and the table never needs
// rebuilding: after any sequence of puts and removes it is exactly as if
// the entries held had been inserted into an empty table in some order.
//
// Moving entries changes their slots, so a slot number from find is good
// only until the next remove; callers find again after one.
//
// The capacity is twice the entries it may hold, so that probe runs stay
// short (at most half the slots are full). Keys are maphash values under
// the Cache's own seeds, which nobody outside the process knows: their
// bits are uniform, and no client can aim keys at one run of slots.
type table struct {
	slots []slot64 // key 0 marks an empty slot
	n     int      // slots in use
}

// slot64 is one slot of a table.
type slot64 struct {
	key uint64
	val int64
}

// newTable returns a table for up to n entries.
func newTable(n int) table {
	return table{slots: make([]slot64, max(16, 2*n))}
}

// grow makes room for one more entry, doubling the capacity (rebuilding
// the table, with every entry in it) when that entry would fill more
// than half of it. Slot numbers from find are stale after it. It is for
// tables that start small and grow with their use, up to a bound their
// owner keeps.
func (t *table) grow() {
	if 2*(t.n+1) <= len(t.slots) {
		return
	}
	old := t.slots
	t.slots, t.n = make([]slot64, 2*len(old)), 0
	for _, e := range old {
		if e.key != 0 {
			t.set(e.key, e.val)
		}
	}
}

// home is the slot where key's probe sequence starts: key scaled to the
// capacity (the high word of key × capacity, which is uniform when key
// is, for any capacity, not only powers of two).
func (t *table) home(key uint64) int {
	hi, _ := bits.Mul64(key, uint64(len(t.slots)))
	return int(hi) // #nosec G115 -- hi = key × len / 2⁶⁴ < len(t.slots), an int
}

// find returns the slot that holds key and true, or the empty slot where
// key would go and false. key must not be 0.
func (t *table) find(key uint64) (int, bool) {
	for i := t.home(key); ; {
		switch t.slots[i].key {
		case key:
			return i, true
		case 0:
			return i, false
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// get returns key's value and true, or 0 and false.
func (t *table) get(key uint64) (int64, bool) {
	i, ok := t.find(key)
	return t.slots[i].val, ok
}

// put sets slot i, which find returned for key, to key's entry with value
// val: a new entry when the slot was empty. The table must not be full.
func (t *table) put(i int, key uint64, val int64) {
	if t.slots[i].key == 0 {
		t.n++
	}
	t.slots[i] = slot64{key: key, val: val}
}

// set sets key's value to val, adding key if it is not there.
func (t *table) set(key uint64, val int64) {
	i, _ := t.find(key)
	t.put(i, key, val)
}

// remove empties slot i, which holds an entry, and moves back each
// entry after it in the same run whose probe sequence passed through i,
// so that every entry stays reachable from its home slot (see Deletion
// in the type's comment).
func (t *table) remove(i int) {
	t.n--
	for j := i; ; {
		t.slots[i] = slot64{}
		for {
			if j++; j == len(t.slots) {
				j = 0
			}
			e := t.slots[j]
			if e.key == 0 {
				return
			}
			// The entry at j may fill the hole at i unless its home lies
			// cyclically in (i, j]: its probe sequence would then not
			// pass through i.
			h := t.home(e.key)
			if i <= j && (h <= i || h > j) || i > j && h <= i && h > j {
				t.slots[i] = e
				i = j
				break
			}
		}
	}
}

// removeKey removes key when it is there.
func (t *table) removeKey(key uint64) {
	if i, ok := t.find(key); ok {
		t.remove(i)
	}
}
