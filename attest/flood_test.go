package attest

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// heapGrowth runs f and returns how much the live heap grew.
func heapGrowth(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

// TestStoresUnderFlood sends a flood of distinct subjects at the
// in-memory history store: it stays at its bound, and the heap with it
// (documented bound: 64 MiB for 10,000 subjects, far above the few MiB
// measured).
func TestStoresUnderFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	const n, size = floodN, 10_000
	ctx := context.Background()
	hist := newMemoryHistoryStore(size, nil)
	grew := heapGrowth(func() {
		for i := range n {
			id := fmt.Sprintf("flood-%d", i)
			_, _ = hist.Swap(ctx, id, []byte(`{"at":"2026-01-01T00:00:00Z"}`), time.Hour)
		}
	})
	t.Logf("heap after %d subjects: %+d bytes (%d entries)", n, grew, hist.len())
	require.Equal(t, size, hist.len())
	require.Less(t, grew, int64(64<<20))
}

// floodN is how many distinct subjects the flood sends.
const floodN = 1_000_000
