package redisstore

import (
	"testing"
	"time"

	conformance "github.com/apiguard/apiguard/internal/attesttest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

func TestAttestStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	pair := func(t *testing.T) (*AttestStore, *AttestStore) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		// A generous timeout: the concurrency tests run 64 goroutines on a
		// loaded machine, and a slow answer must not open the breaker.
		o := Options{Timeout: 5 * time.Second}
		return NewAttestStore(newClient(t, srv.Addr()), o), NewAttestStore(newClient(t, srv.Addr()), o)
	}
	conformance.RunKeyStore(t, func(t *testing.T) (conformance.KeyStore, conformance.KeyStore) { return pair(t) })
	conformance.RunChallengeStore(t, func(t *testing.T) (conformance.ChallengeStore, conformance.ChallengeStore) { return pair(t) })
	conformance.RunHistoryStore(t, func(t *testing.T) (conformance.HistoryStore, conformance.HistoryStore) { return pair(t) })
}
