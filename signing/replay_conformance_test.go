package signing

import (
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/replaytest"
	"github.com/apiguard/apiguard/internal/testkit"
)

func TestMemoryReplayStoreConformance(t *testing.T) {
	replaytest.RunSigning(t, func(t *testing.T) (replaytest.SigningStore, replaytest.SigningStore, func() time.Time) {
		clk := testkit.NewClock(t0.Add(-time.Hour))
		s := NewMemoryReplayStore(1000, 5*time.Minute, clk.Now)
		clk.Advance(time.Hour)
		return s, s, clk.Now
	})
}
