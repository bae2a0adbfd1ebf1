package replay

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// idAt returns an id whose home slot in t is h, with low bits from r: ids
// aimed at a few slots make the long runs, wrapped past the end, in which
// a deletion has to move entries back.
func idAt(t *table, h int, r *rand.Rand) uint64 {
	// home(id) = id × len / 2⁶⁴, so the ids from ⌈h × 2⁶⁴ / len⌉ on have home h.
	step := math.MaxUint64/uint64(len(t.slots)) + 1
	id := uint64(h)*step + r.Uint64N(step/2)
	if id == 0 {
		id = 1
	}
	return id
}

// checkTable fails unless t holds exactly the entries of model, each
// reachable from its home slot without crossing an empty one.
func checkTable(tb testing.TB, t *table, model map[uint64]int64) {
	tb.Helper()
	require.Equal(tb, len(model), t.n, "count")
	held := 0
	for i, e := range t.slots {
		if e.key == 0 {
			continue
		}
		held++
		require.Equal(tb, model[e.key], e.val, "slot %d holds an entry not in the model", i)
		for j := t.home(e.key); j != i; j = (j + 1) % len(t.slots) {
			require.NotZero(tb, t.slots[j].key, "entry at %d is cut off from its home %d by an empty slot at %d", i, t.home(e.key), j)
		}
	}
	require.Equal(tb, len(model), held)
	for id, exp := range model {
		i, ok := t.find(id)
		require.True(tb, ok, "%x not found", id)
		require.Equal(tb, exp, t.slots[i].val)
	}
}

// TestTableAgainstMap runs random inserts, updates and deletions on small
// tables, at up to the fill the Cache allows, with ids spread and with
// ids crowded on a few slots, against a Go map.
func TestTableAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 3, 8, 20, 100} {
		for _, crowded := range []bool{false, true} {
			tb := newTable(size)
			model := map[uint64]int64{}
			var ids []uint64
			newID := func() uint64 {
				if crowded {
					// Three homes, one of them the last slot: runs wrap.
					return idAt(&tb, []int{0, len(tb.slots) / 2, len(tb.slots) - 1}[r.IntN(3)], r)
				}
				return r.Uint64() | 1
			}
			for step := range 20_000 {
				switch op := r.IntN(3); {
				case op == 0 && len(model) < size+1: // the Cache holds size + 1 for a moment
					id := newID()
					i, ok := tb.find(id)
					_, inModel := model[id]
					require.Equal(t, inModel, ok)
					exp := int64(step)
					tb.put(i, id, exp)
					if !inModel {
						ids = append(ids, id)
					}
					model[id] = exp
				case op == 1 && len(ids) > 0: // update an entry in place
					id := ids[r.IntN(len(ids))]
					i, ok := tb.find(id)
					require.True(t, ok)
					tb.put(i, id, int64(step))
					model[id] = int64(step)
				case op == 2 && len(ids) > 0:
					k := r.IntN(len(ids))
					id := ids[k]
					i, ok := tb.find(id)
					require.True(t, ok)
					tb.remove(i)
					delete(model, id)
					ids[k] = ids[len(ids)-1]
					ids = ids[:len(ids)-1]
					_, ok = tb.find(id)
					require.False(t, ok, "removed id still found")
				}
				if step%97 == 0 || size <= 8 {
					checkTable(t, &tb, model)
				}
			}
			checkTable(t, &tb, model)
		}
	}
}

// TestTableHome: home spreads ids over every slot, the last included, for
// capacities that are not powers of two.
func TestTableHome(t *testing.T) {
	tb := newTable(21) // 42 slots
	r := rand.New(rand.NewPCG(3, 4))
	for h := range len(tb.slots) {
		require.Equal(t, h, tb.home(idAt(&tb, h, r)))
	}
	require.Equal(t, 0, tb.home(1))
	require.Equal(t, len(tb.slots)-1, tb.home(math.MaxUint64))
}

// TestTableGrow: a table that starts small and grows before each new key
// keeps every entry, and stays at most half full.
func TestTableGrow(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	tb := newTable(8)
	model := map[uint64]int64{}
	for step := range 5000 {
		id := r.Uint64() | 1
		if _, ok := tb.find(id); !ok {
			tb.grow()
		}
		tb.set(id, int64(step))
		model[id] = int64(step)
		if r.IntN(4) == 0 { // and some removals
			for k := range model {
				tb.removeKey(k)
				delete(model, k)
				break
			}
		}
		require.LessOrEqual(t, 2*tb.n, len(tb.slots))
	}
	checkTable(t, &tb, model)
}
