package appattest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
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

// TestStoresUnderFlood sends a flood of distinct keys and challenges at
// the in-memory stores: each stays at its bound, and the heap with it
// (documented bound: 64 MiB for 10,000 entries of each, far above the few
// MiB measured).
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
	keys := newMemoryKeyStore(size)
	chs := newMemoryChallengeStore(size, nil)
	exp := time.Now().Add(time.Hour)
	grew := heapGrowth(func() {
		for i := range n {
			id := fmt.Sprintf("flood-%d", i)
			_, _ = keys.Enroll(ctx, id, []byte(`{"app_id":"x"}`))
			_ = chs.Put(ctx, id, "", exp)
		}
	})
	t.Logf("heap after %d keys and challenges: %+d bytes (%d, %d entries)", n, grew, keys.len(), chs.len())
	require.Equal(t, size, keys.len())
	require.Equal(t, size, chs.len())
	require.Less(t, grew, int64(64<<20))
	_, ok, _ := chs.Take(ctx, "flood-0")
	require.False(t, ok, "an evicted challenge cannot be used")
}

// TestConcurrentAssertions sends the same device's assertions from many
// goroutines at one verifier: each counter is accepted once at most, and
// the stored counter only grows.
func TestConcurrentAssertions(t *testing.T) {
	a, ca, _ := newSynthetic(t)
	dev, _ := attesttest.NewDevice(testAppID)
	cdh := ClientDataHash([]byte("c"))
	obj, _ := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	_, err := a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh)
	require.NoError(t, err)
	assertions := make([][]byte, 200)
	for i := range assertions {
		assertions[i], _ = dev.AssertWithCounter([]byte("d"), uint32(i+1))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[uint32]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range assertions {
				as, err := a.VerifyAssertion(context.Background(), dev.KeyID, assertions[(i+g*25)%len(assertions)], []byte("d"))
				if err == nil {
					mu.Lock()
					accepted[as.Counter]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for c, n := range accepted {
		require.Equal(t, 1, n, "counter %d accepted more than once", c)
	}
	_, counter, _, _ := a.cfg.Keys.Lookup(context.Background(), keyStoreID(testAppID, dev.KeyID))
	require.Equal(t, uint32(len(assertions)), counter, "the highest counter was stored last")
}
