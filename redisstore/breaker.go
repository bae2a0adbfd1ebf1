package redisstore

import (
	"sync"
	"time"
)

// BreakerConfig configures a [Breaker]. A zero field takes the default in
// its comment.
type BreakerConfig struct {
	// Failures is the number of consecutive failed calls (Redis
	// unreachable, a timeout, an error reply; never a missing key or a
	// script's "no") that opens the breaker. Default: 5.
	Failures int
	// CoolDown is how long an open breaker refuses every call before it
	// lets one probe call through. Default: 1s.
	CoolDown time.Duration
}

// BreakerState is the state of a [Breaker].
type BreakerState int

const (
	// BreakerClosed lets every call through and counts consecutive
	// failures.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses every call with [ErrBreakerOpen], without
	// touching the network, until its cool-down has passed.
	BreakerOpen
	// BreakerHalfOpen lets one probe call through at a time and refuses
	// the others; the probe's success closes the breaker, its failure
	// opens it for another cool-down.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Breaker is a circuit breaker in front of Redis, so that a store found
// down fails fast instead of paying Options.Timeout (and go-redis's dial
// retries) on every request:
//
//   - closed: every call goes through; after BreakerConfig.Failures
//     consecutive failures the breaker opens;
//   - open: every call fails at once with [ErrBreakerOpen] (which wraps
//     [ErrUnavailable]) and no command or dial reaches the network;
//   - after BreakerConfig.CoolDown it is half-open: one probe call at a
//     time goes through, the others fail at once; a successful probe
//     closes the breaker, a failed one opens it for another cool-down.
//
// The cool-down is measured with the calling store's Options.Now; a clock
// that steps backwards restarts the cool-down rather than prolonging it.
// A call whose caller cancelled it (a client that hung up), or whose
// caller's deadline passed before Redis had been silent for a twentieth of
// Options.Timeout (a request budget spent elsewhere), counts neither as a
// failure nor as a success, so that a client cannot open the breaker for
// everyone; a caller's deadline that passes after that long counts as a
// failure, so that a hung Redis opens the breaker even when every caller
// has a short budget. Results of calls let through before the breaker last
// changed state are ignored.
//
// The breaker counts consecutive failures of the whole client: on a
// Cluster with one master down, the calls that reach the healthy masters
// keep it closed, and calls for the lost slots pay Options.Timeout (or the
// request's deadline) until the cluster fails over.
//
// Share one Breaker between the stores on one Redis by setting it in
// their Options, so that one store's failures spare the others the wait
// too; a store made without one gets its own. The zero Breaker
// is closed and uses the defaults. A Breaker is safe for concurrent use by
// multiple goroutines.
type Breaker struct {
	cfg BreakerConfig

	mu       sync.Mutex
	state    BreakerState
	failed   int       // consecutive failures while closed; requires mu
	openedAt time.Time // when it last opened; requires mu
	probing  bool      // a half-open probe is in flight; requires mu
	gen      uint64    // bumped at every change of state; requires mu
}

// NewBreaker returns a closed Breaker. Zero or negative fields of cfg take
// their defaults.
func NewBreaker(cfg BreakerConfig) *Breaker {
	return &Breaker{cfg: cfg}
}

func (b *Breaker) failures() int {
	if b.cfg.Failures <= 0 {
		return 5
	}
	return b.cfg.Failures
}

func (b *Breaker) coolDown() time.Duration {
	if b.cfg.CoolDown <= 0 {
		return time.Second
	}
	return b.cfg.CoolDown
}

// State returns the breaker's state. An open breaker whose cool-down has
// passed reports BreakerOpen until the next call makes it half-open.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// ticket is what enter hands a call that may go through, for exit.
type ticket struct {
	gen   uint64
	probe bool
}

type outcome int

const (
	outcomeSuccess outcome = iota // Redis answered
	outcomeFailure                // Redis did not answer (or answered an error)
	outcomeNeutral                // the caller gave up: says nothing about Redis
)

// enter decides whether a call may go through at now. It returns
// [ErrBreakerOpen] when it may not.
func (b *Breaker) enter(now time.Time) (ticket, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return ticket{gen: b.gen}, nil
	case BreakerOpen:
		if now.Before(b.openedAt) {
			b.openedAt = now // the clock stepped back: restart the cool-down
		}
		if now.Sub(b.openedAt) < b.coolDown() {
			return ticket{}, ErrBreakerOpen
		}
		b.state = BreakerHalfOpen
		b.gen++
	}
	// half-open
	if b.probing {
		return ticket{}, ErrBreakerOpen
	}
	b.probing = true
	return ticket{gen: b.gen, probe: true}, nil
}

// exit records the outcome of a call that enter let through.
func (b *Breaker) exit(t ticket, now time.Time, o outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.gen != b.gen {
		return // let through before the last change of state
	}
	if t.probe {
		b.probing = false
		switch o {
		case outcomeSuccess:
			b.state, b.failed = BreakerClosed, 0
			b.gen++
		case outcomeFailure:
			b.open(now)
		}
		return
	}
	switch o {
	case outcomeSuccess:
		b.failed = 0
	case outcomeFailure:
		b.failed++
		if b.failed >= b.failures() {
			b.open(now)
		}
	}
}

// open opens the breaker at now. Requires b.mu held.
func (b *Breaker) open(now time.Time) {
	b.state, b.openedAt, b.failed, b.probing = BreakerOpen, now, 0, false
	b.gen++
}
