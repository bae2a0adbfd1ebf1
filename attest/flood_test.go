package attest

import (
	"context"
	"fmt"
	"os"
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
	floodStores(t, 50_000) // five times the bound: four in five inserts evict
}

// TestStoresUnderFloodSoak is the same flood with a million entries, run
// only when APIGUARD_SOAK is set (.ci/run sets it).
func TestStoresUnderFloodSoak(t *testing.T) {
	if os.Getenv("APIGUARD_SOAK") == "" {
		t.Skip("soak: set APIGUARD_SOAK=1 to flood a million entries")
	}
	floodStores(t, 1_000_000)
}

func floodStores(t *testing.T, n int) {
	t.Helper()
	const size = 10_000
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
