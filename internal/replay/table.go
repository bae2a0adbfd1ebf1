package replay

import "math/bits"

// table is the Cache's index: a hash table of id hash to expiry, of fixed
// capacity, with open addressing, linear probing and backward-shift
// deletion (Knuth, TAOCP vol. 3, §6.4, Algorithm R).
//
// It replaces a Go map for one reason: the Cache deletes an entry for
// every one it adds, and a Go map under that churn fills with tombstones
// that it clears by rebuilding itself, which allocates while the lock is
// held. Here a deletion moves the entries after it back instead, so the
// table never holds a tombstone and never rebuilds, and a use is one probe
// sequence where the map took two (a lookup, then an insert).
//
// The capacity is twice the entries it may hold, so that probe runs stay
// short (at most half the slots are full). Ids are maphash values under
// the Cache's own seed, which nobody outside the process knows: their
// bits are uniform, and no client can aim ids at one run of slots.
type table struct {
	slots []entry // id 0 marks an empty slot
	n     int     // slots in use
}

// newTable returns a table for up to n entries.
func newTable(n int) table {
	return table{slots: make([]entry, max(16, 2*n))}
}

// home is the slot where id's probe sequence starts: id scaled to the
// capacity (the high word of id × capacity, which is uniform when id is,
// for any capacity, not only powers of two).
func (t *table) home(id uint64) int {
	hi, _ := bits.Mul64(id, uint64(len(t.slots)))
	return int(hi) // #nosec G115 -- hi = id × len / 2⁶⁴ < len(t.slots), an int
}

// find returns the slot that holds id and true, or the empty slot where
// id would go and false. id must not be 0.
func (t *table) find(id uint64) (int, bool) {
	for i := t.home(id); ; {
		switch t.slots[i].id {
		case id:
			return i, true
		case 0:
			return i, false
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// put sets slot i, which find returned for id, to id's entry expiring at
// exp: a new entry when the slot was empty. The table must not be full.
func (t *table) put(i int, id uint64, exp int64) {
	if t.slots[i].id == 0 {
		t.n++
	}
	t.slots[i] = entry{id: id, exp: exp}
}

// remove empties slot i, which holds an entry, and moves back each
// entry after it in the same run whose probe sequence passed through i,
// so that every entry stays reachable from its home slot.
func (t *table) remove(i int) {
	t.n--
	for j := i; ; {
		t.slots[i] = entry{}
		for {
			if j++; j == len(t.slots) {
				j = 0
			}
			e := t.slots[j]
			if e.id == 0 {
				return
			}
			// The entry at j may fill the hole at i unless its home lies
			// cyclically in (i, j]: its probe sequence would then not
			// pass through i.
			h := t.home(e.id)
			if i <= j && (h <= i || h > j) || i > j && h <= i && h > j {
				t.slots[i] = e
				i = j
				break
			}
		}
	}
}
