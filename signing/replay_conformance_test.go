package signing

import (
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/replaytest"
)

func TestMemoryReplayStoreConformance(t *testing.T) {
	replaytest.RunSigning(t, func(t *testing.T) (replaytest.SigningStore, replaytest.SigningStore, func() time.Time) {
		clk := &testClock{t: t0.Add(-time.Hour)}
		s := NewMemoryReplayStore(1000, 5*time.Minute, clk.Now)
		clk.Advance(time.Hour)
		return s, s, clk.Now
	})
}
