package signing

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestNonceFlood sends 100,000 distinct nonces (a million with
// APIGUARD_SOAK=1) at the in-memory replay store of 10,000: the store
// stays within its size, the heap under 16 MiB, and a nonce evicted
// before its expiry is still refused (the floor). Ten times the store's
// size turns it over ten times, which is what the bounds are about; the
// million is the soak, 18 s under the race detector.
func TestNonceFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	flood := 100_000
	if os.Getenv("APIGUARD_SOAK") == "1" {
		flood = 1_000_000
	}
	clk := testkit.NewClock(t0.Add(-time.Minute))
	s := NewMemoryReplayStore(10_000, 5*time.Minute, clk.Now)
	clk.Advance(time.Minute)
	ctx := context.Background()
	first := clk.Now()
	ok, err := s.UseNonce(ctx, "device-a", "the-first-nonce", first, first.Add(5*time.Minute))
	require.NoError(t, err)
	require.True(t, ok)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range flood {
		if i%1000 == 0 {
			clk.Advance(10 * time.Millisecond) // traffic over time, all inside the window
		}
		now := clk.Now()
		_, _ = s.UseNonce(ctx, "device-"+strconv.Itoa(i%5000), "nonce-"+strconv.Itoa(i), now, now.Add(5*time.Minute))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap after %d nonces: %+d bytes, %d entries", flood, int64(after.HeapAlloc)-int64(before.HeapAlloc), s.Len())
	require.LessOrEqual(t, s.Len(), 10_000)
	require.Greater(t, s.Len(), 10_000-16, "an eviction takes one block of nonces")
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(16<<20))
	ok, err = s.UseNonce(ctx, "device-a", "the-first-nonce", first, first.Add(5*time.Minute))
	require.ErrorIs(t, err, ErrReplayFloor, "replay of an evicted nonce refused")
	require.False(t, ok)
}
