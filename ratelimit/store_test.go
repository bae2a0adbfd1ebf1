package ratelimit

import (
	"testing"

	"github.com/apiguard/apiguard/internal/ratelimittest"
)

func TestMemoryStoreConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
		s := NewMemoryStore(1000, OverflowReject)
		return s, s
	})
}
