package attest

import (
	"testing"
	"time"

	conformance "github.com/apiguard/apiguard/internal/attesttest"
)

func TestMemoryStoresConformance(t *testing.T) {
	conformance.RunHistoryStore(t, func(t *testing.T) (conformance.HistoryStore, conformance.HistoryStore) {
		s := newMemoryHistoryStore(100, time.Now)
		return s, s
	})
}
