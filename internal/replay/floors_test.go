package replay

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFloorsAgainstMap runs random raises and pops on a small floor table
// against a map: the floors held, their positions, the heap order, and
// that popMin returns the lowest.
func TestFloorsAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	f := newFloors(20)
	model := map[uint64]int64{}
	for step := range 20_000 {
		switch op := r.IntN(4); {
		case op < 3:
			scope := uint64(1 + r.IntN(30))
			floor := int64(r.IntN(1000))
			ok := f.raise(scope, floor)
			old, had := model[scope]
			switch {
			case had:
				require.True(t, ok)
				model[scope] = max(old, floor)
			case len(model) < 20:
				require.True(t, ok)
				model[scope] = floor
			default:
				require.False(t, ok, "full")
			}
		case len(model) > 0:
			m := f.popMin()
			for _, v := range model {
				require.LessOrEqual(t, m.floor, v, "popMin returned a floor that is not the lowest")
			}
			require.Equal(t, model[m.scope], m.floor)
			delete(model, m.scope)
		}
		require.Equal(t, len(model), f.len(), step)
		checkFloors(t, &f)
		for scope, v := range model {
			got, ok := f.get(scope)
			require.True(t, ok)
			require.Equal(t, v, got)
		}
	}
}
