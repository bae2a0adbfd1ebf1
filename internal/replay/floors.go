package replay

// floors is the Cache's per-scope floor table: for up to max scopes, the
// newest expiry among that scope's entries evicted before they expired.
// The floors are kept in a min-heap, so that the lowest is found at once:
// it is the one to drop when it has passed (everything it guarded has
// expired), and the one to fold into the global floor when the table is
// full and another scope needs a floor (folding the lowest raises the
// global floor the least). pos maps each scope to its position in the
// heap.
type floors struct {
	heap []floorEntry
	pos  table // scope -> index in heap
	max  int
}

// floorEntry is one scope's floor.
type floorEntry struct {
	floor int64 // unix nanoseconds
	scope uint64
}

// newFloors returns a table of up to n floors.
func newFloors(n int) floors {
	return floors{heap: make([]floorEntry, 0, n), pos: newTable(n), max: n}
}

// get returns scope's floor and true, or 0 and false when it has none.
func (f *floors) get(scope uint64) (int64, bool) {
	p, ok := f.pos.get(scope)
	if !ok {
		return 0, false
	}
	return f.heap[p].floor, true
}

// popMin removes and returns the lowest floor. The table must not be
// empty.
func (f *floors) popMin() floorEntry {
	top := f.heap[0]
	f.pos.removeKey(top.scope)
	last := len(f.heap) - 1
	if last > 0 {
		f.heap[0] = f.heap[last]
		f.pos.set(f.heap[0].scope, 0)
	}
	f.heap = f.heap[:last]
	f.down(0)
	return top
}

// raise raises scope's floor to floor (a floor never goes down), adding
// scope when it has none. It returns false, and does nothing, when scope
// has no floor and the table is full.
func (f *floors) raise(scope uint64, floor int64) bool {
	if p, ok := f.pos.get(scope); ok {
		if floor > f.heap[p].floor {
			f.heap[p].floor = floor
			f.down(int(p))
		}
		return true
	}
	if len(f.heap) == f.max {
		return false
	}
	f.heap = append(f.heap, floorEntry{floor: floor, scope: scope})
	i := len(f.heap) - 1
	f.pos.set(scope, int64(i))
	f.up(i)
	return true
}

func (f *floors) swap(i, j int) {
	f.heap[i], f.heap[j] = f.heap[j], f.heap[i]
	f.pos.set(f.heap[i].scope, int64(i))
	f.pos.set(f.heap[j].scope, int64(j))
}

func (f *floors) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if f.heap[p].floor <= f.heap[i].floor {
			return
		}
		f.swap(i, p)
		i = p
	}
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
		f.swap(i, m)
		i = m
	}
}
