package attest

import (
	"context"
	"fmt"
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

// TestStoresUnderFlood sends a million distinct keys, challenges and
// subjects at the in-memory stores: each stays at its bound, and the heap
// with it (documented bound: 64 MiB for 10,000 entries of each, far above
// the few MiB measured).
func TestStoresUnderFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	const n, size = 1_000_000, 10_000
	ctx := context.Background()
	keys := NewMemoryKeyStore(size)
	chs := NewMemoryChallengeStore(size, nil)
	hist := NewMemoryHistoryStore(size, nil)
	exp := time.Now().Add(time.Hour)
	grew := heapGrowth(func() {
		for i := range n {
			id := fmt.Sprintf("flood-%d", i)
			_, _ = keys.Enroll(ctx, id, []byte(`{"app_id":"x"}`))
			_ = chs.Put(ctx, id, "", exp)
			_, _ = hist.Swap(ctx, id, []byte(`{"at":"2026-01-01T00:00:00Z"}`), time.Hour)
		}
	})
	t.Logf("heap after a million keys, challenges and subjects: %+d bytes (%d, %d, %d entries)", grew, keys.Len(), chs.Len(), hist.Len())
	require.Equal(t, size, keys.Len())
	require.Equal(t, size, chs.Len())
	require.Equal(t, size, hist.Len())
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
