package appattest

import (
	"testing"

	conformance "github.com/apiguard/apiguard/internal/attesttest"
)

func TestMemoryStoresConformance(t *testing.T) {
	conformance.RunKeyStore(t, func(t *testing.T) (conformance.KeyStore, conformance.KeyStore) {
		s := newMemoryKeyStore(100)
		return s, s
	})
	conformance.RunChallengeStore(t, func(t *testing.T) (conformance.ChallengeStore, conformance.ChallengeStore) {
		s := newMemoryChallengeStore(100, nil)
		return s, s
	})
}
