package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// fakeClock is an injected clock that moves only when told to.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var errDown = errors.New("connection refused")

// TestBreakerStateMachine walks the breaker through every transition with
// an injected clock: no sleep, exact counts.
func TestBreakerStateMachine(t *testing.T) {
	clock := newFakeClock()
	b := NewBreaker(BreakerConfig{Failures: 3, CoolDown: time.Second})
	o := Options{Now: clock.Now, Breaker: b, Timeout: time.Second}
	o.defaults()
	ctx := context.Background()
	fail := func(context.Context) error { return errDown }
	succeed := func(context.Context) error { return nil }
	var ran atomic.Int64
	counting := func(fn func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error { ran.Add(1); return fn(ctx) }
	}

	t.Run("not_found_is_an_answer", func(t *testing.T) {
		for range 10 {
			err := o.do(ctx, func(context.Context) error { return redis.Nil })
			require.ErrorIs(t, err, redis.Nil)
			require.NotErrorIs(t, err, ErrUnavailable)
		}
		require.Equal(t, BreakerClosed, b.State())
	})
	t.Run("success_resets_the_count", func(t *testing.T) {
		for range 2 {
			require.ErrorIs(t, o.do(ctx, fail), ErrUnavailable)
		}
		require.NoError(t, o.do(ctx, succeed))
		for range 2 {
			require.ErrorIs(t, o.do(ctx, fail), ErrUnavailable)
		}
		require.Equal(t, BreakerClosed, b.State(), "failures must be consecutive")
	})
	t.Run("caller_hangup_does_not_open", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for range 10 {
			err := o.do(cctx, func(context.Context) error { cancel(); return context.Canceled })
			require.ErrorIs(t, err, ErrUnavailable)
		}
		require.Equal(t, BreakerClosed, b.State(), "a client that hangs up says nothing about Redis")
		ran.Store(0)
		require.ErrorIs(t, o.do(cctx, counting(succeed)), ErrUnavailable)
		require.Zero(t, ran.Load(), "a done context never reaches the network")
	})
	t.Run("store_down_opens", func(t *testing.T) {
		require.ErrorIs(t, o.do(ctx, fail), ErrUnavailable) // third in a row
		require.Equal(t, BreakerOpen, b.State())
		ran.Store(0)
		for range 100 {
			require.ErrorIs(t, o.do(ctx, counting(succeed)), ErrBreakerOpen)
		}
		require.Zero(t, ran.Load(), "an open breaker touches nothing")
		clock.Advance(time.Second - time.Nanosecond)
		require.ErrorIs(t, o.do(ctx, counting(succeed)), ErrBreakerOpen)
		require.Zero(t, ran.Load(), "still cooling down")
	})
	t.Run("failed_probe_reopens", func(t *testing.T) {
		clock.Advance(time.Nanosecond)
		ran.Store(0)
		require.ErrorIs(t, o.do(ctx, counting(fail)), ErrUnavailable)
		require.Equal(t, int64(1), ran.Load(), "one probe")
		require.Equal(t, BreakerOpen, b.State())
		require.ErrorIs(t, o.do(ctx, counting(succeed)), ErrBreakerOpen)
		require.Equal(t, int64(1), ran.Load(), "a new cool-down")
	})
	t.Run("clock_stepping_back_restarts_cool_down", func(t *testing.T) {
		clock.Advance(-time.Hour)
		require.ErrorIs(t, o.do(ctx, succeed), ErrBreakerOpen)
		clock.Advance(time.Second)
		require.NoError(t, o.do(ctx, succeed), "one cool-down after the step, not an hour")
		require.Equal(t, BreakerClosed, b.State())
	})
	t.Run("probe_success_closes", func(t *testing.T) {
		for range 3 {
			require.ErrorIs(t, o.do(ctx, fail), ErrUnavailable)
		}
		require.Equal(t, BreakerOpen, b.State())
		clock.Advance(time.Second)
		require.NoError(t, o.do(ctx, succeed))
		require.Equal(t, BreakerClosed, b.State())
		ran.Store(0)
		for range 10 {
			require.NoError(t, o.do(ctx, counting(succeed)))
		}
		require.Equal(t, int64(10), ran.Load())
	})
}

// TestBreakerSingleProbe: once the cool-down has passed, exactly one of
// many concurrent calls reaches Redis; the others fail at once while the
// probe is in flight, and the probe's success lets everyone through again.
func TestBreakerSingleProbe(t *testing.T) {
	t.Run("breaker_single_probe", func(t *testing.T) {
		clock := newFakeClock()
		b := NewBreaker(BreakerConfig{Failures: 1, CoolDown: time.Minute})
		o := Options{Now: clock.Now, Breaker: b}
		o.defaults()
		require.ErrorIs(t, o.do(context.Background(), func(context.Context) error { return errDown }), ErrUnavailable)
		require.Equal(t, BreakerOpen, b.State())
		clock.Advance(time.Minute)

		const callers = 200
		var ran atomic.Int64
		inProbe, release := make(chan struct{}), make(chan struct{})
		results := make(chan error, callers)
		var start sync.WaitGroup
		start.Add(1)
		for range callers {
			go func() {
				start.Wait()
				results <- o.do(context.Background(), func(context.Context) error {
					ran.Add(1)
					close(inProbe) // a second probe would panic here
					<-release
					return nil
				})
			}()
		}
		start.Done()
		<-inProbe
		// The probe holds until released: every other caller's answer
		// arrives first, and each is a refusal.
		for range callers - 1 {
			require.ErrorIs(t, <-results, ErrBreakerOpen)
		}
		require.Equal(t, int64(1), ran.Load(), "exactly one probe in flight")
		require.Equal(t, BreakerHalfOpen, b.State())
		close(release)
		require.NoError(t, <-results, "the probe")
		require.Equal(t, BreakerClosed, b.State(), "the probe's success closes the breaker")
	})
	t.Run("neutral_probe_frees_the_slot", func(t *testing.T) {
		clock := newFakeClock()
		b := NewBreaker(BreakerConfig{Failures: 1, CoolDown: time.Second})
		o := Options{Now: clock.Now, Breaker: b}
		o.defaults()
		_ = o.do(context.Background(), func(context.Context) error { return errDown })
		clock.Advance(time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		err := o.do(ctx, func(context.Context) error { cancel(); return context.Canceled })
		require.ErrorIs(t, err, ErrUnavailable)
		require.Equal(t, BreakerHalfOpen, b.State(), "a probe whose caller hung up proves nothing")
		require.NoError(t, o.do(context.Background(), func(context.Context) error { return nil }), "the next call probes")
		require.Equal(t, BreakerClosed, b.State())
	})
}

// TestBreakerOpensAtExactCount: concurrent failures open the breaker at
// exactly BreakerConfig.Failures, and late results of calls let through
// before it opened do not close it.
func TestBreakerOpensAtExactCount(t *testing.T) {
	clock := newFakeClock()
	const threshold = 50
	b := NewBreaker(BreakerConfig{Failures: threshold, CoolDown: time.Minute})
	o := Options{Now: clock.Now, Breaker: b}
	o.defaults()
	var wg sync.WaitGroup
	for range threshold - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = o.do(context.Background(), func(context.Context) error { return errDown })
		}()
	}
	wg.Wait()
	require.Equal(t, BreakerClosed, b.State(), "one short of the threshold")

	// A call let through while closed, answering only after the breaker
	// opened, must not close it.
	late, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- o.do(context.Background(), func(context.Context) error { close(late); <-release; return nil })
	}()
	<-late
	require.ErrorIs(t, o.do(context.Background(), func(context.Context) error { return errDown }), ErrUnavailable)
	require.Equal(t, BreakerOpen, b.State())
	close(release)
	require.NoError(t, <-done)
	require.Equal(t, BreakerOpen, b.State(), "a stale success does not close an open breaker")
}

// TestOneDeadline: the per-call timeout never extends the caller's earlier
// deadline, and bounds a call whose caller has none or a later one.
func TestOneDeadline(t *testing.T) {
	o := Options{Timeout: time.Hour}
	o.defaults()
	t.Run("timeout_never_extends_request_deadline", func(t *testing.T) {
		want := time.Now().Add(time.Minute)
		ctx, cancel := context.WithDeadline(context.Background(), want)
		defer cancel()
		var got time.Time
		require.NoError(t, o.do(ctx, func(ctx context.Context) error {
			var ok bool
			got, ok = ctx.Deadline()
			require.True(t, ok)
			return nil
		}))
		require.True(t, got.Equal(want), "the call ends with the request: %v, want %v", got, want)
	})
	t.Run("timeout_bounds_a_call_without_deadline", func(t *testing.T) {
		o := Options{Timeout: time.Minute}
		o.defaults()
		before := time.Now()
		var got time.Time
		require.NoError(t, o.do(context.Background(), func(ctx context.Context) error {
			var ok bool
			got, ok = ctx.Deadline()
			require.True(t, ok, "every call has a deadline")
			return nil
		}))
		require.False(t, got.Before(before.Add(time.Minute)))
		require.False(t, got.After(time.Now().Add(time.Minute)))
	})
	t.Run("timeout_shortens_a_later_deadline", func(t *testing.T) {
		o := Options{Timeout: time.Minute}
		o.defaults()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		var got time.Time
		require.NoError(t, o.do(ctx, func(ctx context.Context) error { got, _ = ctx.Deadline(); return nil }))
		require.False(t, got.After(time.Now().Add(time.Minute)))
	})
	t.Run("spent_request_deadline_makes_no_call", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		ran := false
		err := o.do(ctx, func(context.Context) error { ran = true; return nil })
		require.ErrorIs(t, err, ErrUnavailable)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.False(t, ran)
		require.Equal(t, BreakerClosed, o.Breaker.State(), "and counts no failure")
	})
}

// TestBreakerCallerDeadlines: a request deadline that passes early says
// nothing about Redis, one that passes after Redis stayed silent does.
func TestBreakerCallerDeadlines(t *testing.T) {
	wait := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	t.Run("request_deadline_spent_elsewhere_does_not_open", func(t *testing.T) {
		o := Options{Timeout: time.Hour, Breaker: NewBreaker(BreakerConfig{Failures: 1})}
		o.defaults()
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		require.ErrorIs(t, o.do(ctx, wait), ErrUnavailable)
		require.Equal(t, BreakerClosed, o.Breaker.State(), "an attacker's slow upload must not open the breaker")
	})
	t.Run("hung_redis_under_short_request_deadlines_opens", func(t *testing.T) {
		o := Options{Timeout: time.Second, Breaker: NewBreaker(BreakerConfig{Failures: 1})}
		o.defaults()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond) // > Timeout/20
		defer cancel()
		require.ErrorIs(t, o.do(ctx, wait), ErrUnavailable)
		require.Equal(t, BreakerOpen, o.Breaker.State(), "Redis silent for the whole budget is down")
	})
	t.Run("own_timeout_opens", func(t *testing.T) {
		o := Options{Timeout: time.Millisecond, Breaker: NewBreaker(BreakerConfig{Failures: 1})}
		o.defaults()
		require.ErrorIs(t, o.do(context.Background(), wait), context.DeadlineExceeded)
		require.Equal(t, BreakerOpen, o.Breaker.State())
	})
}

func TestBreakerStateString(t *testing.T) {
	require.Equal(t, "closed", BreakerClosed.String())
	require.Equal(t, "open", BreakerOpen.String())
	require.Equal(t, "half-open", BreakerHalfOpen.String())
	require.Equal(t, "unknown", BreakerState(9).String())
}

func TestZeroBreakerUsesDefaults(t *testing.T) {
	var b Breaker
	clock := newFakeClock()
	for range 4 {
		tk, err := b.enter(clock.Now())
		require.NoError(t, err)
		b.exit(tk, clock.Now(), outcomeFailure)
	}
	require.Equal(t, BreakerClosed, b.State())
	tk, _ := b.enter(clock.Now())
	b.exit(tk, clock.Now(), outcomeFailure)
	require.Equal(t, BreakerOpen, b.State(), "five failures by default")
	clock.Advance(time.Second)
	_, err := b.enter(clock.Now())
	require.NoError(t, err, "a one-second cool-down by default")
}
