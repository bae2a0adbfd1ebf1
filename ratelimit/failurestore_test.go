package ratelimit

import (
	"testing"

	"github.com/apiguard/apiguard/internal/ratelimittest"
)

func TestMemoryFailureStoreConformance(t *testing.T) {
	ratelimittest.RunFailure(t, func(t *testing.T) (ratelimittest.FailureStore, ratelimittest.FailureStore) {
		s := NewMemoryFailureStore(1000, OverflowReject)
		return s, s
	})
}
