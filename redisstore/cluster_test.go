package redisstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	conformance "github.com/apiguard/apiguard/internal/attesttest"
	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/internal/replaytest"
	"github.com/redis/go-redis/v9"
)

// TestClusterConformance runs every store's conformance suite against a
// three-node Redis Cluster: each call touches one key, so every script
// runs on the node that owns that key's slot.
func TestClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	c := redistest.SharedCluster(t)
	var n atomic.Int64
	opts := func() Options {
		return Options{Prefix: fmt.Sprintf("t%d:", n.Add(1)), Timeout: testTimeout}
	}
	client := func(t *testing.T) redis.UniversalClient {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: testTimeout})
		if _, ok := rdb.(*redis.ClusterClient); !ok {
			t.Fatalf("not a cluster client: %T", rdb)
		}
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	t.Run("replay", func(t *testing.T) {
		replaytest.Run(t, func(t *testing.T) (replaytest.Store, replaytest.Store, func() time.Time) {
			o := opts()
			return NewReplayStore(client(t), o), NewReplayStore(client(t), o), time.Now
		})
	})
	t.Run("signing_replay", func(t *testing.T) {
		replaytest.RunSigning(t, func(t *testing.T) (replaytest.SigningStore, replaytest.SigningStore, func() time.Time) {
			o := opts()
			return NewReplayStore(client(t), o), NewReplayStore(client(t), o), time.Now
		})
	})
	t.Run("ratelimit", func(t *testing.T) {
		ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
			o := opts()
			o.InsecureTrustCallerClock = true // the suite's fake clock
			return NewLimitStore(client(t), o), NewLimitStore(client(t), o)
		})
	})
	t.Run("attest", func(t *testing.T) {
		pair := func(t *testing.T) (*AttestStore, *AttestStore) {
			o := opts()
			return NewAttestStore(client(t), o), NewAttestStore(client(t), o)
		}
		conformance.RunKeyStore(t, func(t *testing.T) (conformance.KeyStore, conformance.KeyStore) { return pair(t) })
		conformance.RunChallengeStore(t, func(t *testing.T) (conformance.ChallengeStore, conformance.ChallengeStore) { return pair(t) })
		conformance.RunHistoryStore(t, func(t *testing.T) (conformance.HistoryStore, conformance.HistoryStore) { return pair(t) })
	})
}
