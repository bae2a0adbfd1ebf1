package redisstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// load runs every store operation from several goroutines until stopped,
// counting successes and failures and the slowest call.
type load struct {
	ok, failed atomic.Int64
	slowest    atomic.Int64 // nanoseconds
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(ops []func(ctx context.Context, i int) error) *load {
	l := &load{stop: make(chan struct{})}
	for g := range 8 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				start := time.Now()
				err := ops[(g+i)%len(ops)](context.Background(), g*1_000_000+i)
				d := time.Since(start).Nanoseconds()
				for {
					cur := l.slowest.Load()
					if d <= cur || l.slowest.CompareAndSwap(cur, d) {
						break
					}
				}
				if err != nil {
					l.failed.Add(1)
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) phase(t *testing.T, d time.Duration) (ok, failed int64, slowest time.Duration) {
	t.Helper()
	l.ok.Store(0)
	l.failed.Store(0)
	l.slowest.Store(0)
	time.Sleep(d) // let the load run for this phase; no assertion depends on it
	return l.ok.Load(), l.failed.Load(), time.Duration(l.slowest.Load())
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

// TestFaultsUnderLoad drives every Redis store from eight goroutines while
// Redis runs, is paused with DEBUG SLEEP, is stopped and is restarted:
// calls fail (never panic) while Redis is away, none hangs past the store
// timeout (checked against a generous bound: this detects hangs, it does
// not measure speed), service resumes after the restart, and no goroutine
// is left behind.
func TestFaultsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := redistest.Start(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1,
		ContextTimeoutEnabled: true, DialTimeout: 100 * time.Millisecond})
	const timeout = 100 * time.Millisecond
	opts := Options{Timeout: timeout}
	replay, limits, attest := NewReplayStore(rdb, opts), NewLimitStore(rdb, opts), NewAttestStore(rdb, opts)
	now := time.Now
	ops := []func(ctx context.Context, i int) error{
		func(ctx context.Context, i int) error {
			_, err := replay.Use(ctx, fmt.Sprint("jti-", i), now().Add(time.Minute))
			return err
		},
		func(ctx context.Context, i int) error {
			_, err := replay.UseNonce(ctx, "dev", fmt.Sprint("n-", i), now(), now().Add(time.Minute))
			return err
		},
		func(ctx context.Context, i int) error {
			_, err := replay.Advance(ctx, fmt.Sprint("dev-", i%50), now(), time.Second, time.Minute)
			return err
		},
		func(ctx context.Context, i int) error {
			_, _, _, err := limits.Take(ctx, fmt.Sprint("k-", i%100), time.Millisecond, 100, now())
			return err
		},
		func(ctx context.Context, i int) error {
			_, _, _, err := attest.Lookup(ctx, fmt.Sprint("key-", i%10))
			return err
		},
		func(ctx context.Context, i int) error {
			if err := attest.Put(ctx, fmt.Sprint("ch-", i), "", now().Add(time.Minute)); err != nil {
				return err
			}
			_, _, err := attest.Take(ctx, fmt.Sprint("ch-", i))
			return err
		},
		func(ctx context.Context, i int) error {
			_, err := attest.Swap(ctx, fmt.Sprint("sub-", rand.IntN(50)), []byte("{}"), time.Minute)
			return err
		},
	}
	l := startLoad(ops)
	defer l.end()
	const hang = 2 * time.Second

	ok, failed, slowest := l.phase(t, 300*time.Millisecond)
	t.Logf("healthy: %d ok, %d failed, slowest call %v", ok, failed, slowest)
	require.Positive(t, ok, "healthy")
	require.Zero(t, failed, "healthy")
	require.Less(t, slowest, hang)

	pause := make(chan struct{})
	go func() {
		defer close(pause)
		_, _ = srv.Do("DEBUG", "SLEEP", "0.6")
	}()
	ok, failed, slowest = l.phase(t, 400*time.Millisecond)
	t.Logf("DEBUG SLEEP 0.6: %d ok, %d failed, slowest call %v (timeout %v)", ok, failed, slowest, timeout)
	require.Positive(t, failed, "a paused Redis times calls out")
	require.Less(t, slowest, hang, "no call waits out the pause")
	<-pause

	srv.Stop()
	ok, failed, slowest = l.phase(t, 300*time.Millisecond)
	t.Logf("stopped: %d ok, %d failed, slowest call %v", ok, failed, slowest)
	require.Positive(t, failed, "a stopped Redis fails calls")
	require.Zero(t, ok, "and none succeeds")
	require.Less(t, slowest, hang)

	srv.Restart()
	require.Eventually(t, func() bool {
		ok, _, _ := l.phase(t, 100*time.Millisecond)
		return ok > 0
	}, 10*time.Second, 10*time.Millisecond, "service resumes after the restart")
	l.end()
	l.stop = make(chan struct{}) // the deferred end is a no-op now
	require.NoError(t, rdb.Close())
}
