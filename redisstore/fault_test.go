package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
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

// storeOps returns one function per store method, each making its calls
// with the i-th set of arguments.
func storeOps(replay *ReplayStore, limits *LimitStore, attest *AttestStore) []func(ctx context.Context, i int) error {
	now := time.Now
	return []func(ctx context.Context, i int) error{
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
		ContextTimeoutEnabled: true, DialTimeout: time.Second})
	// A timeout that a healthy Redis never reaches, even under -race on a
	// busy two-core machine, and a pause (DEBUG SLEEP 3) well past it.
	const timeout = time.Second
	opts := Options{Timeout: timeout}
	replay, limits, attest := NewReplayStore(rdb, opts), NewLimitStore(rdb, opts), NewAttestStore(rdb, opts)
	ops := storeOps(replay, limits, attest)
	l := startLoad(ops)
	defer l.end()
	const hang = 5 * time.Second

	ok, failed, slowest := l.phase(t, 300*time.Millisecond)
	t.Logf("healthy: %d ok, %d failed, slowest call %v", ok, failed, slowest)
	require.Positive(t, ok, "healthy")
	require.Zero(t, failed, "healthy")
	require.Less(t, slowest, hang)

	pause := make(chan struct{})
	go func() {
		defer close(pause)
		_, _ = srv.Do("DEBUG", "SLEEP", "3")
	}()
	ok, failed, slowest = l.phase(t, 2500*time.Millisecond)
	t.Logf("DEBUG SLEEP 3: %d ok, %d failed, slowest call %v (timeout %v)", ok, failed, slowest, timeout)
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

// netCounter counts what reaches the network: connections dialled (as the
// client's Dialer) and commands issued (as a go-redis hook). While gate
// is set, every command waits for it to close before it is sent.
type netCounter struct {
	dials, cmds atomic.Int64
	gate        atomic.Pointer[chan struct{}]
	entered     chan struct{} // receives once per command that waits on a gate
}

func (c *netCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (c *netCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *netCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.cmds.Add(1)
		if g := c.gate.Load(); g != nil {
			c.entered <- struct{}{}
			<-*g
		}
		return next(ctx, cmd)
	}
}

func (c *netCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// burst makes n calls of ops from each of g goroutines at once and
// returns every error (nil for a success).
func burst(ops []func(ctx context.Context, i int) error, g, n int) []error {
	out := make(chan error, g*n)
	var start, wg sync.WaitGroup
	start.Add(1)
	for w := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			for i := range n {
				out <- ops[(w+i)%len(ops)](context.Background(), w*1_000_000+i)
			}
		}()
	}
	start.Done()
	wg.Wait()
	close(out)
	errs := make([]error, 0, g*n)
	for err := range out {
		errs = append(errs, err)
	}
	return errs
}

// TestStoreDown stops a real redis-server under load from many goroutines
// and proves what a Redis that refuses connections costs: every call
// fails with ErrUnavailable; once the breaker is open, no command and no
// dial reaches the network, except one probe per cool-down; and once the
// server is back, a single probe closes the breaker. The breaker's clock
// is injected, so nothing here depends on timing.
func TestStoreDown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := redistest.Start(t)
	nc := &netCounter{entered: make(chan struct{}, 64)}
	rdb := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), Dialer: nc.dial, ContextTimeoutEnabled: true,
		MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second,
		PoolSize: 1000, // so that go-redis never starts its own background re-dial
	})
	rdb.AddHook(nc)
	defer rdb.Close()
	clock := newFakeClock()
	const coolDown = 10 * time.Second
	breaker := NewBreaker(BreakerConfig{Failures: 5, CoolDown: coolDown})
	opts := Options{Timeout: 5 * time.Second, Now: clock.Now, Breaker: breaker}
	ops := storeOps(NewReplayStore(rdb, opts), NewLimitStore(rdb, opts), NewAttestStore(rdb, opts))

	// Load from 16 goroutines until told to stop.
	const workers = 16
	var ok, unavailable, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				switch err := ops[(w+i)%len(ops)](context.Background(), w*1_000_000+i); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrUnavailable):
					unavailable.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return ok.Load() >= 200 }, 10*time.Second, time.Millisecond, "healthy load")
	srv.Stop()
	require.Eventually(t, func() bool { return breaker.State() == BreakerOpen }, 10*time.Second, time.Millisecond,
		"a stopped Redis opens the breaker under load")
	close(stop)
	wg.Wait()
	require.Zero(t, other.Load(), "every failure wraps ErrUnavailable")
	require.Positive(t, unavailable.Load())

	t.Run("store_down_fails_fast", func(t *testing.T) {
		dials, cmds := nc.dials.Load(), nc.cmds.Load()
		errs := burst(ops, workers, 100)
		require.Len(t, errs, workers*100)
		for _, err := range errs {
			require.ErrorIs(t, err, ErrBreakerOpen)
			require.ErrorIs(t, err, ErrUnavailable)
		}
		require.Equal(t, dials, nc.dials.Load(), "an open breaker dials nothing")
		require.Equal(t, cmds, nc.cmds.Load(), "an open breaker sends nothing")
	})

	t.Run("store_down_one_probe_per_cool_down", func(t *testing.T) {
		dials, cmds := nc.dials.Load(), nc.cmds.Load()
		const coolDowns = 5
		for range coolDowns {
			clock.Advance(coolDown)
			for _, err := range burst(ops, workers, 20) {
				require.ErrorIs(t, err, ErrUnavailable)
			}
			require.Equal(t, BreakerOpen, breaker.State(), "the failed probe reopens the breaker")
		}
		require.Equal(t, cmds+coolDowns, nc.cmds.Load(), "one command per cool-down reaches the network")
		require.LessOrEqual(t, nc.dials.Load()-dials, int64(coolDowns), "and at most one dial")
	})

	t.Run("probe_closes_breaker_when_store_is_back", func(t *testing.T) {
		srv.Restart()
		clock.Advance(coolDown)
		gate := make(chan struct{})
		nc.gate.Store(&gate)
		cmds := nc.cmds.Load()
		probe := make(chan error, 1)
		go func() { probe <- ops[0](context.Background(), 42) }()
		<-nc.entered // the probe is in flight, held before the network
		for _, err := range burst(ops, workers, 20) {
			require.ErrorIs(t, err, ErrBreakerOpen, "one probe at a time")
		}
		require.Equal(t, cmds+1, nc.cmds.Load(), "only the probe reached the client")
		nc.gate.Store(nil)
		close(gate)
		require.NoError(t, <-probe)
		require.Equal(t, BreakerClosed, breaker.State())
		for _, err := range burst(ops, workers, 20) {
			require.NoError(t, err)
		}
	})
}
