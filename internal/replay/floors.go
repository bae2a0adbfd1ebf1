package replay

// floors is the Cache's per-scope floor table: for up to max scopes, the
// newest expiry among that scope's entries evicted before they expired.
//
// vals maps each scope to its floor. The floors are also kept in a
// min-heap, so that the lowest is found at once: it is the one to drop
// when it has passed (everything it guarded has expired), and the one to
// fold into the global floor when the table is full and another scope
// needs a floor (folding the lowest raises the global floor the least).
// The heap is lazy: raising a floor pushes the new value, and the old
// one stays behind, stale, until it reaches the top, where it is told
// apart from a current one by vals and thrown away. So no heap operation
// touches vals, and a raise is one push. When the heap reaches 2×max+16
// entries it is rebuilt from vals (one entry per floor, at most max), so
// it never grows past that, and the rebuild's work is spread over the
// max or more pushes before the next one.
type floors struct {
	vals table // scope -> floor
	heap []floorEntry
	max  int
}

// floorEntry is a scope's floor, as pushed on the heap.
type floorEntry struct {
	floor int64 // unix nanoseconds
	scope uint64
}

// newFloors returns a table of up to n floors.
func newFloors(n int) floors {
	return floors{vals: newTable(n), heap: make([]floorEntry, 0, 2*n+16), max: n}
}

// len returns the number of scopes with a floor.
func (f *floors) len() int { return f.vals.n }

// get returns scope's floor and true, or 0 and false when it has none.
func (f *floors) get(scope uint64) (int64, bool) {
	return f.vals.get(scope)
}

// current reports whether e is scope's floor now, not a stale value.
func (f *floors) current(e floorEntry) bool {
	v, ok := f.vals.get(e.scope)
	return ok && v == e.floor
}

// min returns the lowest floor and true, or false when there is none.
func (f *floors) min() (floorEntry, bool) {
	for len(f.heap) > 0 {
		if f.current(f.heap[0]) {
			return f.heap[0], true
		}
		f.pop()
	}
	return floorEntry{}, false
}

// popMin removes and returns the lowest floor. The table must not be
// empty.
func (f *floors) popMin() floorEntry {
	m, _ := f.min()
	f.pop()
	f.vals.removeKey(m.scope)
	return m
}

// raise raises scope's floor to floor (a floor never goes down), adding
// scope when it has none. It returns false, and does nothing, when scope
// has no floor and the table is full.
func (f *floors) raise(scope uint64, floor int64) bool {
	i, ok := f.vals.find(scope)
	switch {
	case ok && floor <= f.vals.slots[i].val:
		return true
	case ok:
		f.vals.slots[i].val = floor
	case f.vals.n == f.max:
		return false
	default:
		f.vals.put(i, scope, floor)
	}
	f.push(floorEntry{floor: floor, scope: scope})
	return true
}

// push adds e to the heap, compacting it first when it is full of stale
// values.
func (f *floors) push(e floorEntry) {
	if len(f.heap) >= 2*f.max+16 { // rebuilt from vals: one entry per floor
		f.heap = f.heap[:0]
		for _, s := range f.vals.slots {
			if s.key != 0 {
				f.heap = append(f.heap, floorEntry{floor: s.val, scope: s.key})
			}
		}
		for i := len(f.heap)/2 - 1; i >= 0; i-- {
			f.down(i)
		}
	}
	f.heap = append(f.heap, e)
	for i := len(f.heap) - 1; i > 0; {
		p := (i - 1) / 2
		if f.heap[p].floor <= f.heap[i].floor {
			break
		}
		f.heap[i], f.heap[p] = f.heap[p], f.heap[i]
		i = p
	}
}

// pop removes the top of the heap.
func (f *floors) pop() {
	last := len(f.heap) - 1
	f.heap[0] = f.heap[last]
	f.heap = f.heap[:last]
	f.down(0)
}

func (f *floors) down(i int) {
	n := len(f.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && f.heap[r].floor < f.heap[l].floor {
			m = r
		}
		if f.heap[i].floor <= f.heap[m].floor {
			return
		}
		f.heap[i], f.heap[m] = f.heap[m], f.heap[i]
		i = m
	}
}
