package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func newLeaseStore(t *testing.T, rdb redis.UniversalClient, o Options, cfg LeaseConfig) *LeaseStore {
	t.Helper()
	s := NewLeaseStore(rdb, o, cfg)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestLeaseStoreConformance(t *testing.T) {
	srv := redistest.Shared(t)
	ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		o := Options{Timeout: testTimeout, InsecureTrustCallerClock: true} // the suite's fake clock
		return newLeaseStore(t, newClient(t, srv.Addr()), o, LeaseConfig{}), newLeaseStore(t, newClient(t, srv.Addr()), o, LeaseConfig{})
	})
}

func TestLeaseStoreClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	c := redistest.SharedCluster(t)
	var n atomic.Int64
	ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
		o := Options{Prefix: fmt.Sprintf("lease%d:", n.Add(1)), Timeout: testTimeout, InsecureTrustCallerClock: true}
		return newLeaseStore(t, clusterClient(t, c), o, LeaseConfig{}), newLeaseStore(t, clusterClient(t, c), o, LeaseConfig{})
	})
}

func clusterClient(t *testing.T, c *redistest.Cluster) redis.UniversalClient {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: testTimeout})
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("not a cluster client: %T", rdb)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// scriptCalls is the number of EVAL and EVALSHA commands the Redis nodes
// of rdbs have run, from INFO commandstats.
func scriptCalls(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	var total int64
	each := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(info, "\n") {
			if !strings.HasPrefix(line, "cmdstat_eval:") && !strings.HasPrefix(line, "cmdstat_evalsha:") {
				continue
			}
			_, rest, _ := strings.Cut(line, "calls=")
			v, _, _ := strings.Cut(rest, ",")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return err
			}
			atomic.AddInt64(&total, n)
		}
		return nil
	}
	ctx := context.Background()
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Client:
		err = each(ctx, c)
	default:
		t.Fatalf("client %T", rdb)
	}
	require.NoError(t, err)
	return atomic.LoadInt64(&total)
}

// TestLeaseStoreEightInstances drives 8 instances (each with its own
// client) sharing one limit at five times the limit from 32 goroutines,
// on one redis-server and on the three-node Cluster, and checks the
// accounting exactly (every admitted request spent a token Redis granted;
// nothing else was admitted), the admissions against what the bucket
// allows over the run, and the round trips per request counted by Redis
// (INFO commandstats).
//
// The load is five times the limit by construction, whatever the
// machine's speed: the stores decide on the callers' clock
// (InsecureTrustCallerClock), and request i is stamped t0 + i × interval/5,
// so 40000 requests span 4 s of that clock.
func TestLeaseStoreEightInstances(t *testing.T) {
	setups := []struct {
		name string
		// client returns a func that makes a client of one Redis.
		client func(t *testing.T) func() redis.UniversalClient
	}{
		{"standalone", func(t *testing.T) func() redis.UniversalClient {
			addr := redistest.Start(t).Addr()
			return func() redis.UniversalClient { return newClient(t, addr) }
		}},
		{"cluster", func(t *testing.T) func() redis.UniversalClient {
			c := redistest.SharedCluster(t)
			return func() redis.UniversalClient { return clusterClient(t, c) }
		}},
	}
	for _, tt := range setups {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "cluster" && testing.Short() {
				t.Skip("cluster")
			}
			client := tt.client(t)
			res := driveInstances(t, client, client(), tt.name)
			t.Logf("%s: %d requests, %d admitted, allowance %.0f (over-admission %+.2f%%), worst window %+d over the bucket, %d round trips (%.4f per request)",
				tt.name, res.requests, res.admitted, res.allowance, 100*(float64(res.admitted)/res.allowance-1), res.windowExcess, res.roundTrips, float64(res.roundTrips)/float64(res.requests))
			require.Equal(t, res.granted-res.returned, res.admitted, "every admitted request spent a token Redis granted, and every unspent token went back")
			require.LessOrEqual(t, float64(res.admitted), 1.05*res.allowance, "over-admission within 5%%")
			require.LessOrEqual(t, res.windowExcess, int64(8*12), "in any window, at most Instances × L = 8 × 12 over the bucket (5 %% of the burst)")
			require.LessOrEqual(t, float64(res.roundTrips), 0.1*float64(res.requests), "at most 0.1 round trips per request")
		})
	}
}

type driveResult struct {
	requests, admitted, granted, returned, roundTrips int64
	windowExcess                                      int64 // most admitted in a window beyond the bucket's allowance
	allowance                                         float64
}

// driveInstances runs 8 LeaseStores on one limit (2000 per second, burst
// 2000: leases of up to 12 tokens) from 32 goroutines: 40000 requests
// stamped five to an interval.
func driveInstances(t *testing.T, client func() redis.UniversalClient, probe redis.UniversalClient, prefix string) driveResult {
	t.Helper()
	const (
		instances  = 8
		goroutines = 32
		interval   = 500 * time.Microsecond
		burst      = 2000
		total      = 40_000
		step       = interval / 5 // five times the limit
		key        = "hot"
	)
	o := Options{Prefix: prefix + ":", Timeout: testTimeout, InsecureTrustCallerClock: true}
	stores := make([]*LeaseStore, instances)
	for i := range stores {
		stores[i] = NewLeaseStore(client(), o, LeaseConfig{Instances: instances})
	}
	before := scriptCalls(t, probe)
	var ticket, admitted atomic.Int64
	errs := make(chan error, goroutines)
	stamps := make([][]int64, goroutines) // the tickets admitted, per goroutine
	var wg sync.WaitGroup
	for g := range goroutines {
		s := stores[g%instances]
		wg.Go(func() {
			for {
				i := ticket.Add(1)
				if i > total {
					return
				}
				ok, _, _, err := s.Take(context.Background(), key, interval, burst, leaseT0.Add(time.Duration(i)*step))
				if err != nil {
					errs <- err
					return
				}
				if ok {
					admitted.Add(1)
					stamps[g] = append(stamps[g], i)
				}
			}
		})
	}
	wg.Wait()
	res := driveResult{requests: total, admitted: admitted.Load()}
	// The most admitted in any window of w intervals, beyond what the
	// bucket allows in it (burst + w): at most Instances × L.
	all := slices.Sorted(slices.Values(slices.Concat(stamps...)))
	res.windowExcess = -burst
	for _, w := range []int64{10, 100, 1000, 4000} {
		span := w * 5 // tickets per window
		lo := 0
		for hi := range all {
			for all[hi]-all[lo] >= span {
				lo++
			}
			res.windowExcess = max(res.windowExcess, int64(hi-lo+1)-(burst+w))
		}
	}
	res.roundTrips = scriptCalls(t, probe) - before
	for _, s := range stores {
		require.NoError(t, s.Close())
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, s := range stores {
		res.granted += s.granted.Load()
		res.returned += s.returned.Load()
	}
	res.allowance = burst + float64(total*step)/float64(interval)
	return res
}

// leaseFixture is a LeaseStore on the shared server, on the caller's
// (frozen) clock, with its own prefix.
func leaseFixture(t *testing.T, cfg LeaseConfig) (*LeaseStore, func() redis.UniversalClient, Options) {
	t.Helper()
	srv := redistest.Shared(t)
	_, err := srv.Do("FLUSHALL")
	require.NoError(t, err)
	o := Options{Timeout: testTimeout, InsecureTrustCallerClock: true}
	client := func() redis.UniversalClient { return newClient(t, srv.Addr()) }
	return newLeaseStore(t, client(), o, cfg), client, o
}

var leaseT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// takeN takes n tokens of key at now and returns how many were admitted.
func takeN(t *testing.T, s *LeaseStore, key string, interval time.Duration, burst, n int, now time.Time) int {
	t.Helper()
	admitted := 0
	for range n {
		ok, _, _, err := s.Take(t.Context(), key, interval, burst, now)
		require.NoError(t, err)
		if ok {
			admitted++
		}
	}
	return admitted
}

// held is what s holds of key, spendable now or reserved.
func (s *LeaseStore) heldOf(key string) (held, next, size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys.Peek(key)
	if !ok {
		return 0, 0, 0
	}
	return e.held, e.next, e.size
}

// settle waits for s's background lease calls: it closes s's renewals
// off by waiting on the calls in flight.
func (s *LeaseStore) settle(key string) {
	for {
		s.mu.Lock()
		e, ok := s.keys.Peek(key)
		var ch chan struct{}
		if ok {
			ch = e.fetch
		}
		s.mu.Unlock()
		if ch == nil {
			return
		}
		<-ch
	}
}

func TestLeaseStoreLeaseSize(t *testing.T) {
	const interval = time.Minute // no refill while the test runs
	t.Run("key_seen_once_leases_one_token", func(t *testing.T) {
		s, _, _ := leaseFixture(t, LeaseConfig{})
		require.Equal(t, 1, takeN(t, s, "once", interval, 100_000, 1, leaseT0))
		s.settle("once")
		require.EqualValues(t, 1, s.granted.Load(), "a key seen once takes one token, not a share of a large burst")
		require.EqualValues(t, 1, s.calls.Load())
	})
	t.Run("hot_key_grows_to_its_bound", func(t *testing.T) {
		s, _, _ := leaseFixture(t, LeaseConfig{})
		const burst = 3200 // L = floor(0.05 × 3200 / 8) = 20
		require.Equal(t, 500, takeN(t, s, "hot", interval, burst, 500, leaseT0))
		s.settle("hot")
		held, next, size := s.heldOf("hot")
		require.Equal(t, 20, size)
		require.LessOrEqual(t, held+next, 20, "never more than L tokens held")
		require.EqualValues(t, 500+held+next, s.granted.Load(), "every admission spent a granted token")
		require.Less(t, s.calls.Load(), int64(500/10), "leases of up to 20: a fraction of a round trip per request")
	})
	t.Run("small_burst_leases_one_at_a_time", func(t *testing.T) {
		s, _, _ := leaseFixture(t, LeaseConfig{})
		require.Equal(t, 300, takeN(t, s, "small", interval, 300, 300, leaseT0))
		s.settle("small")
		_, _, size := s.heldOf("small")
		require.Equal(t, 1, size, "floor(0.05 × 300 / 8) = 1: exact like LimitStore")
		require.EqualValues(t, 300, s.granted.Load())
	})
	t.Run("slow_key_shrinks", func(t *testing.T) {
		s, _, _ := leaseFixture(t, LeaseConfig{})
		takeN(t, s, "k", interval, 3200, 100, leaseT0)
		s.settle("k")
		_, _, grown := s.heldOf("k")
		require.Greater(t, grown, 1)
		// Two seconds later the key is idle: its tokens go back and it
		// starts again from one.
		takeN(t, s, "k", interval, 3200, 1, leaseT0.Add(2*time.Second))
		s.settle("k")
		_, _, size := s.heldOf("k")
		require.Equal(t, 1, size)
	})
}

// An attacker floods a key that is over its limit: after one refusal the
// instance denies it locally until its next token is due, and Redis sees
// no more calls.
func TestLeaseStoreFloodOverLimitCostsRedisNothing(t *testing.T) {
	s, _, _ := leaseFixture(t, LeaseConfig{})
	const interval = time.Minute
	require.Equal(t, 5, takeN(t, s, "victim", interval, 5, 5, leaseT0))
	require.EqualValues(t, 5, s.calls.Load())
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for range 50 {
		wg.Go(func() {
			for range 20 {
				if ok, _, _, err := s.Take(context.Background(), "victim", interval, 5, leaseT0); err == nil && ok {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.Zero(t, admitted.Load())
	require.EqualValues(t, 6, s.calls.Load(), "1000 requests over the limit cost the one call that found the bucket empty")
	ok, _, _, err := s.Take(t.Context(), "victim", interval, 5, leaseT0.Add(interval))
	require.NoError(t, err)
	require.True(t, ok, "the next token, when due")
	require.EqualValues(t, 7, s.calls.Load())
}

// An attacker sends a flood of distinct keys: the local state stays within
// MaxKeys, and the tokens of forgotten keys go back to Redis.
func TestLeaseStoreDistinctKeyFloodBounded(t *testing.T) {
	s, _, _ := leaseFixture(t, LeaseConfig{MaxKeys: 64})
	const interval = time.Minute
	// A hot key holds a lease when the flood begins.
	require.Equal(t, 100, takeN(t, s, "hot", interval, 3200, 100, leaseT0))
	s.settle("hot")
	held, next, _ := s.heldOf("hot")
	require.Positive(t, held+next)
	for i := range 5000 {
		ok, _, _, err := s.Take(t.Context(), fmt.Sprintf("flood-%d", i), interval, 5, leaseT0)
		require.NoError(t, err)
		require.True(t, ok)
	}
	s.mu.Lock()
	n, pending := s.keys.Len(), len(s.pending)
	s.mu.Unlock()
	require.LessOrEqual(t, n, 64)
	require.LessOrEqual(t, pending, maxPending)
	require.NoError(t, s.sweep(false))
	require.EqualValues(t, held+next, s.returned.Load(), "the forgotten hot key's tokens went back")
}

// Unspent tokens go back, by the idle sweep or by Close: after an
// instance that spent 100 tokens of a bucket that never refills gives
// back its lease, LimitStore finds exactly the burst less 100.
func TestLeaseStoreGivesBackUnspent(t *testing.T) {
	const interval, burst = time.Minute, 3200
	for _, how := range []string{"idle_sweep", "close"} {
		t.Run(how, func(t *testing.T) {
			a, client, o := leaseFixture(t, LeaseConfig{})
			require.Equal(t, 100, takeN(t, a, "k", interval, burst, 100, leaseT0))
			a.settle("k")
			held, next, _ := a.heldOf("k")
			require.Positive(t, held+next, "a holds unspent tokens")
			if how == "close" {
				require.NoError(t, a.Close())
			} else {
				takeN(t, a, "other", interval, burst, 1, leaseT0.Add(2*time.Second)) // a's clock moves on
				require.NoError(t, a.sweep(false))
			}
			require.EqualValues(t, held+next, a.returned.Load())
			plain := NewLimitStore(client(), o)
			got := 0
			for {
				ok, _, _, err := plain.Take(t.Context(), "k", interval, burst, leaseT0)
				require.NoError(t, err)
				if !ok {
					break
				}
				got++
			}
			require.Equal(t, burst-100, got, "what a did not spend went back, exactly")
		})
	}
}

// FuzzLeaseStoreMatchesLimitStore: a bucket whose lease is one token
// (here burst 5) decides on LeaseStore exactly as on its plain twin,
// LimitStore: the same answers (allowed, remaining, wait) to any sequence
// of takes, refunds and clock steps on one instance.
func FuzzLeaseStoreMatchesLimitStore(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 7, 0, 2, 0, 0, 0x13, 0, 1})
	f.Add([]byte{2, 2, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0, 0, 2, 0, 0, 0xff, 0})
	f.Add([]byte{0, 1, 0, 1, 0, 1, 0, 0x07, 1, 0x07, 1, 0x07, 0, 2, 2, 0, 0})
	srv := redistest.Shared(f)
	const interval, burst = 100 * time.Millisecond, 5
	var round atomic.Int64
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		o := Options{Prefix: fmt.Sprintf("match%d:", round.Add(1)), Timeout: testTimeout, InsecureTrustCallerClock: true}
		rdb := newClient(t, srv.Addr())
		plain := NewLimitStore(rdb, o)
		o.Prefix += "lease:"
		lease := newLeaseStore(t, rdb, o, LeaseConfig{})
		now := leaseT0
		ctx := context.Background()
		for i, op := range ops {
			switch op % 4 {
			case 0, 1:
				ok1, rem1, wait1, err1 := plain.Take(ctx, "k", interval, burst, now)
				ok2, rem2, wait2, err2 := lease.Take(ctx, "k", interval, burst, now)
				require.NoError(t, err1)
				require.NoError(t, err2)
				require.Equal(t, []any{ok1, rem1, wait1}, []any{ok2, rem2, wait2}, "op %d", i)
			case 2:
				require.NoError(t, plain.Refund(ctx, "k", interval, burst, now))
				require.NoError(t, lease.Refund(ctx, "k", interval, burst, now))
			case 3:
				now = now.Add(time.Duration(op>>2) * interval / 8)
			}
		}
	})
}
