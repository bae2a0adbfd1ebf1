package auth

import (
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/replaytest"
	"github.com/apiguard/apiguard/internal/testkit"
)

func TestMemoryReplayStoreConformance(t *testing.T) {
	replaytest.Run(t, func(t *testing.T) (replaytest.Store, replaytest.Store, func() time.Time) {
		clk := testkit.NewClock(t0)
		s := NewMemoryReplayStore(1000, clk.Now)
		return s, s, clk.Now
	})
}
