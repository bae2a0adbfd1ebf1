package attest

import (
	"testing"
	"time"

	conformance "github.com/apiguard/apiguard/internal/attesttest"
)

func TestMemoryStoresConformance(t *testing.T) {
	conformance.RunKeyStore(t, func(t *testing.T) (conformance.KeyStore, conformance.KeyStore) {
		s := NewMemoryKeyStore(100)
		return s, s
	})
	conformance.RunChallengeStore(t, func(t *testing.T) (conformance.ChallengeStore, conformance.ChallengeStore) {
		s := NewMemoryChallengeStore(100, nil)
		return s, s
	})
	conformance.RunHistoryStore(t, func(t *testing.T) (conformance.HistoryStore, conformance.HistoryStore) {
		s := NewMemoryHistoryStore(100, time.Now)
		return s, s
	})
}
