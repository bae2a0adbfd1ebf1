package redisstore

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseConfig configures a [LeaseStore]. A zero field takes the default in
// its comment.
type LeaseConfig struct {
	// Instances is how many instances share the limits. With MaxExcess it
	// sizes the leases: no instance holds more than
	// floor(MaxExcess × burst / Instances) tokens of a bucket (at least
	// one). Default: 8.
	Instances int
	// MaxExcess bounds over-admission, as a fraction of a bucket's burst:
	// in any window, the instances together admit at most
	// MaxExcess × burst more requests than the plain [LimitStore] could
	// (see LeaseStore). Default: 0.05. It must be below 1.
	MaxExcess float64
	// MaxKeys bounds the keys held locally (leases and cached denials).
	// The least recently used key beyond it is forgotten, and the tokens
	// it held are given back to Redis. Default: 100000.
	MaxKeys int
}

// Lease sizing: a key's lease doubles while its leases are spent within
// leaseFast of being granted, and halves when one lasts longer than
// leaseSlow; unspent tokens of a key unused for leaseIdle are given back.
// Measured on the callers' now.
const (
	leaseFast = 100 * time.Millisecond
	leaseSlow = time.Second
	leaseIdle = time.Second
	// maxPending bounds the tokens of forgotten keys waiting to be given
	// back; beyond it they are dropped (Redis refills them).
	maxPending = 1024
)

// LeaseStore keeps rate-limit buckets in Redis, as [LimitStore] does (GCRA
// on the server's clock, one key and one Lua script per call, Cluster
// safe, the same keys: the two can share buckets), but each instance
// leases a share of a bucket's tokens and spends them locally, so a busy
// key costs a fraction of a round trip per request. It implements
// ratelimit.Store and ratelimit.NamespaceClaimer. It is safe for
// concurrent use by multiple goroutines.
//
// # Leases
//
// A key seen for the first time leases one token: a key seen once costs
// what it costs on LimitStore and takes no share. Each time a key's lease
// is spent within 100 ms of its grant, its next lease doubles, up to
//
//	L = max(1, floor(LeaseConfig.MaxExcess × burst / LeaseConfig.Instances))
//
// tokens; a lease that lasts over a second halves it. When a lease is down
// to a quarter, a background call renews it, so requests rarely wait on
// Redis; requests that find no token wait for the key's one call in
// flight instead of making their own. A key unused for a second gives its
// unspent tokens back.
//
// When the bucket cannot grant a lease of several tokens now, Redis
// reserves it for the time its last token is due (as x/time/rate's
// Reserve does) and the instance denies the key locally until then,
// without a round trip: instances contending for a drained bucket queue
// up instead of polling it. A reservation is made only when it is due
// within Instances leases; otherwise, and for a lease of one token, the
// instance denies the key locally until the lease can be granted or
// reserved. Either way a flood of a key over its limit costs Redis one
// call per lease per instance, whatever the flood's size.
//
// # Accuracy
//
// Leased tokens are taken from the bucket in Redis before they are spent,
// and reserved ones are spent only once due, so over the life of a bucket
// the instances never admit more than Redis grants: exactly, each admitted
// request spends a granted token, and every token not spent is given back
// or lost. What leases change is when: a token leased before a window may
// be spent within it. An instance holds at most L tokens of a key, so in
// any window the instances admit at most what LimitStore would, plus
//
//	excess ≤ Instances × L ≤ MaxExcess × burst
//
// (5 % of the burst by default; with more instances than
// LeaseConfig.Instances the bound grows in proportion). A bucket whose L
// is 1 (burst < 320 with the defaults) leases one token at a time and
// decides as LimitStore does, but that a rejection is remembered by its
// instance until the next token is due (a refund there lifts it). The
// costs: an instance
// may deny while another holds unspent tokens; tokens reserved or held by
// an instance whose traffic stops are given back after a second, and
// those of an instance that dies are lost until the bucket refills.
// Remaining, in Take's answer, is Redis's count at the key's last lease
// plus what this instance holds.
//
// # Outages
//
// A Take that needs Redis and cannot reach it returns an error wrapping
// [ErrUnavailable], as LimitStore's does, and ratelimit applies its
// StorePolicy; tokens already leased are spent meanwhile. When Redis
// returns, the next request of each key leases afresh: local denials last
// at most until their reservation is due, so the instances converge within
// one lease of Redis's return. Tokens leased before Redis lost its data
// and given back after are given to the fresh buckets (never past their
// burst): at most L per instance and key, once.
//
// Local state is bounded by LeaseConfig.MaxKeys keys; a forgotten key's
// tokens are given back. Close stops the background work and gives back
// the unspent tokens.
type LeaseStore struct {
	rdb   redis.UniversalClient
	opts  Options
	cfg   LeaseConfig
	names nameClaims

	mu      sync.Mutex
	keys    keyLRU     // requires mu
	pending []giveBack // tokens of forgotten keys; requires mu
	lastNow time.Time  // the newest now seen; requires mu
	closed  bool       // requires mu

	wg       sync.WaitGroup // background lease calls and the sweeper
	stop     chan struct{}
	closeErr error
	once     sync.Once

	// granted and returned count tokens leased and given back, and calls
	// the round trips, for tests.
	granted, returned, calls atomic.Int64
}

// lease is one key's local state.
type lease struct {
	key       string
	interval  time.Duration
	burst     int
	held      int           // tokens leased, spendable now
	next      int           // tokens leased, spendable from nextAt
	nextAt    time.Time     // when next may be spent
	until     time.Time     // no lease call before: a refusal's wait
	remaining int           // Redis's remaining at the last lease
	nextToken time.Time     // when Redis's bucket gains its next token
	size      int           // tokens the next lease asks for
	grantedAt time.Time     // when the last lease was granted
	lastUsed  time.Time     // when a token was last spent
	touched   time.Time     // when the key was last asked for
	fetch     chan struct{} // closed when the lease call in flight ends
}

// idle reports whether e's tokens have sat unused for leaseIdle at now.
func (e *lease) idle(now time.Time) bool {
	last := e.lastUsed
	if e.grantedAt.After(last) {
		last = e.grantedAt
	}
	if e.next > 0 && e.nextAt.After(last) {
		last = e.nextAt
	}
	return now.Sub(last) >= leaseIdle
}

// giveBack is tokens to return to a bucket.
type giveBack struct {
	key      string
	interval time.Duration
	burst    int
	n        int
}

// NewLeaseStore returns a LeaseStore on rdb and starts its background
// goroutine, which Close stops. Give each process one LeaseStore per Redis
// and share it between the limiters. It panics if rdb is nil or
// cfg.MaxExcess is not below 1.
func NewLeaseStore(rdb redis.UniversalClient, opts Options, cfg LeaseConfig) *LeaseStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	if cfg.MaxExcess >= 1 {
		panic("redisstore: LeaseConfig.MaxExcess must be below 1")
	}
	if cfg.Instances <= 0 {
		cfg.Instances = 8
	}
	if cfg.MaxExcess <= 0 {
		cfg.MaxExcess = 0.05
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	opts.defaults()
	s := &LeaseStore{rdb: rdb, opts: opts, cfg: cfg, stop: make(chan struct{})}
	s.keys = keyLRU{max: cfg.MaxKeys, m: map[string]*list.Element{}, evict: s.forget}
	s.wg.Go(s.sweeper)
	return s
}

// forget queues the tokens of a forgotten key to be given back. Requires
// s.mu held (simplelru calls it from Add).
func (s *LeaseStore) forget(key string, e *lease) {
	s.giveBack(key, e, e.held+e.next)
	e.held, e.next = 0, 0
}

// giveBack queues n tokens of e's bucket to be given back; beyond
// maxPending they are dropped (the bucket refills them). Requires s.mu
// held.
func (s *LeaseStore) giveBack(key string, e *lease, n int) {
	if n > 0 && len(s.pending) < maxPending {
		s.pending = append(s.pending, giveBack{key, e.interval, e.burst, n})
	}
}

// maxLease is the largest lease of a bucket of burst tokens.
func (s *LeaseStore) maxLease(burst int) int {
	return max(1, int(s.cfg.MaxExcess*float64(burst)/float64(s.cfg.Instances)))
}

// entry returns key's state, made or reset for this limit. Requires s.mu
// held.
func (s *LeaseStore) entry(key string, interval time.Duration, burst int) *lease {
	e, ok := s.keys.Get(key)
	if ok && e.interval == interval && e.burst == burst {
		return e
	}
	if ok { // the limit changed (ratelimit's LimitFor): start afresh
		s.forget(key, e)
	}
	e = &lease{key: key, interval: interval, burst: burst, size: 1}
	s.keys.Add(key, e)
	return e
}

// leaseScript: KEYS[1] the bucket's TAT, as gcraScript's; ARGV clock
// (Options.clock), interval µs, burst, want, horizon µs. It takes want
// tokens and returns {want, remaining, 0, µs until one more token
// accrues} when they are all available; otherwise it reserves them,
// as x/time/rate's Reserve does, when the last of them is available
// within horizon, and returns {want, 0, µs until they are, 0}; otherwise
// it takes none and returns {0, 0, µs until such a reservation can be
// made, 0}. A negative want gives -want tokens back (never past the
// burst) and returns zeros. With want = 1 and horizon 0 it decides and
// answers as gcraScript does.
var leaseScript = redis.NewScript(luaClock + `
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if want < 0 then
  local new_tat = tat + want * interval
  if new_tat > now then
    redis.call('SET', KEYS[1], string.format('%.0f', new_tat), px(new_tat))
  else
    redis.call('DEL', KEYS[1])
  end
  return {0, 0, 0, 0}
end
local new_tat = tat + want * interval
local at = new_tat - tolerance
if at > now + horizon then
  return {0, 0, at - now - horizon, 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), px(new_tat))
if at > now then
  return {want, 0, at - now, 0}
end
local tokens = (now + tolerance - new_tat) / interval
local whole = math.floor(tokens)
return {want, whole, 0, math.ceil((whole + 1 - tokens) * interval)}
`)

// call runs leaseScript for key: want tokens, or gives -want back.
func (s *LeaseStore) call(ctx context.Context, key string, interval time.Duration, burst, want int, now time.Time) (a answer, err error) {
	iv := max(interval.Microseconds(), 1)
	// A lease of several tokens may be reserved as far ahead as the
	// leases of every instance; a single token is not reserved, so that a
	// key whose lease is one token decides as on LimitStore.
	var horizon int64
	if want > 1 {
		horizon = int64(s.cfg.Instances) * int64(want) * iv
	}
	s.calls.Add(1)
	out, err := call(ctx, &s.opts, func(ctx context.Context) ([]int64, error) {
		return leaseScript.Run(ctx, s.rdb, []string{s.opts.key(purposeBucket, key)}, s.opts.clock(now), iv, burst, want, horizon).Int64Slice()
	})
	if err != nil {
		return answer{}, err
	}
	if len(out) != 4 {
		return answer{}, fmt.Errorf("%w: unexpected script reply", ErrUnavailable)
	}
	if want > 0 {
		s.granted.Add(out[0])
	} else {
		s.returned.Add(int64(-want))
	}
	return answer{n: int(out[0]), remaining: int(out[1]), wait: time.Duration(out[2]) * time.Microsecond, next: time.Duration(out[3]) * time.Microsecond}, nil
}

// answer is leaseScript's reply.
type answer struct {
	n         int           // tokens leased
	remaining int           // left in the bucket
	wait      time.Duration // until the lease is due, or until one can be made (n = 0)
	next      time.Duration // until one more token accrues
}

// Take implements ratelimit.Store: it spends a leased token, or denies
// until the key's reserved lease is due, or leases from Redis (waiting
// for the key's call in flight when there is one).
func (s *LeaseStore) Take(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) (bool, int, time.Duration, error) {
	s.mu.Lock()
	if now.After(s.lastNow) {
		s.lastNow = now
	}
	for {
		e := s.entry(key, interval, burst)
		e.touched = now
		if (e.held > 0 || e.next > 0) && e.idle(now) {
			// Left unused: give it back and lease afresh, so that what
			// this instance answers is not long out of date.
			s.forget(key, e)
			e.size = 1
		}
		if e.next > 0 && !now.Before(e.nextAt) {
			e.held, e.next = e.held+e.next, 0
		}
		if e.held > 0 {
			e.held--
			e.lastUsed = now
			rem := min(e.remaining+e.held, burst)
			var next time.Duration
			switch {
			case rem >= burst:
			case e.nextToken.After(now):
				next = e.nextToken.Sub(now)
			default:
				next = interval
			}
			s.renew(key, e, now)
			s.mu.Unlock()
			return true, rem, next, nil
		}
		if e.next > 0 {
			wait := e.nextAt.Sub(now) // read under s.mu: a lease call in flight may set it
			s.mu.Unlock()
			return false, 0, wait, nil
		}
		if now.Before(e.until) {
			wait := e.until.Sub(now)
			s.mu.Unlock()
			return false, 0, wait, nil
		}
		if ch := e.fetch; ch != nil {
			s.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return false, 0, 0, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
			}
			s.mu.Lock()
			continue
		}
		want := s.grow(e, now)
		ch := make(chan struct{})
		e.fetch = ch
		s.mu.Unlock()
		a, err := s.call(ctx, key, interval, burst, want, now)
		s.mu.Lock()
		e.fetch = nil
		close(ch)
		if err != nil {
			s.mu.Unlock()
			return false, 0, 0, err
		}
		s.record(key, e, a, now)
	}
}

// grow adapts e's lease size to how fast its last lease was spent, and
// returns it. Requires s.mu held.
func (s *LeaseStore) grow(e *lease, now time.Time) int {
	if !e.grantedAt.IsZero() {
		switch age := now.Sub(e.grantedAt); {
		case age < leaseFast:
			e.size = min(2*e.size, s.maxLease(e.burst))
		case age > leaseSlow:
			e.size = max(1, e.size/2)
		}
	}
	return e.size
}

// record records in e a lease call's answer at now: tokens, spendable
// after a.wait, or a refusal for a.wait when there are none. Requires
// s.mu held.
func (s *LeaseStore) record(key string, e *lease, a answer, now time.Time) {
	n := a.n
	switch {
	case n == 0:
		e.until = now.Add(a.wait)
		return
	case s.closed:
		s.giveBack(key, e, n)
		return
	}
	switch cur, ok := s.keys.Peek(key); {
	case !ok:
		// Forgotten during the call: keep it again, so that the lease
		// is spent or given back.
		s.keys.Add(key, e)
	case cur != e:
		// Replaced by a lease of another limit: this one is void.
		s.giveBack(key, e, n)
		return
	}
	e.grantedAt = now
	if a.wait > 0 {
		e.next, e.nextAt, e.remaining = n, now.Add(a.wait), 0
		return
	}
	e.held += n
	e.remaining = a.remaining
	e.nextToken = now.Add(a.next)
}

// renew starts a background lease call for e when its lease runs low.
// Requires s.mu held.
func (s *LeaseStore) renew(key string, e *lease, now time.Time) {
	if e.size <= 1 || e.held > e.size/4 || e.next > 0 || e.fetch != nil || now.Before(e.until) || s.closed {
		return
	}
	want := s.grow(e, now) - e.held
	if want <= 0 {
		return
	}
	ch := make(chan struct{})
	e.fetch = ch
	s.wg.Go(func() {
		a, err := s.call(context.Background(), key, e.interval, e.burst, want, now)
		s.mu.Lock()
		defer s.mu.Unlock()
		e.fetch = nil
		close(ch)
		if err == nil { // else the next request that finds no token asks
			s.record(key, e, a, now)
		}
	})
}

// Refund implements ratelimit.Store: it gives the token back to Redis,
// with the key's reservation here (so that the next request finds the
// token instead of waiting for the reservation), and lifts the key's
// local denial.
func (s *LeaseStore) Refund(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) error {
	n := 1
	s.mu.Lock()
	if e, ok := s.keys.Peek(key); ok && e.interval == interval && e.burst == burst {
		n += e.next
		e.next, e.until = 0, time.Time{}
	}
	s.mu.Unlock()
	_, err := s.call(ctx, key, interval, burst, -n, now)
	return err
}

// sweeper gives back, every leaseIdle, the tokens of keys unused for as
// long, and those of forgotten keys.
func (s *LeaseStore) sweeper() {
	t := time.NewTicker(leaseIdle)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.sweep(false)
		}
	}
}

// sweep gives back the tokens of forgotten keys and of keys unused for
// leaseIdle before the newest now seen (all of them when all is set), and
// returns the first error.
func (s *LeaseStore) sweep(all bool) error {
	s.mu.Lock()
	backs := s.pending
	s.pending = nil
	now := s.lastNow
	// From the least recently asked for, up to the first key asked for
	// within leaseIdle: the keys after it are not idle.
	for el := s.keys.l.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*lease)
		key := e.key
		if !all && now.Sub(e.touched) < leaseIdle {
			break
		}
		if n := e.held + e.next; n > 0 && (all || e.idle(now)) {
			backs = append(backs, giveBack{key, e.interval, e.burst, n})
			e.held, e.next, e.size = 0, 0, 1
		}
	}
	s.mu.Unlock()
	var first error
	for _, b := range backs {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		_, err := s.call(ctx, b.key, b.interval, b.burst, -b.n, now)
		cancel()
		if first == nil {
			first = err
		}
	}
	return first
}

// Close stops the background goroutine, waits for the lease calls in
// flight, and gives the unspent tokens back to Redis. It returns the
// first error of giving them back (the tokens are then lost until the
// buckets refill). Close is idempotent; the store must not be used after
// it.
func (s *LeaseStore) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.wg.Wait()
		if err := s.sweep(true); err != nil && !errors.Is(err, redis.Nil) {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready].
func (s *LeaseStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }

// ClaimNamespace implements ratelimit.NamespaceClaimer.
func (s *LeaseStore) ClaimNamespace(name string) error { return s.names.claim(name) }

// ReleaseNamespace implements ratelimit.NamespaceClaimer.
func (s *LeaseStore) ReleaseNamespace(name string) { s.names.release(name) }

// keyLRU holds at most max leases, forgetting the least recently used
// (through evict) to make room. It is not safe for concurrent use.
type keyLRU struct {
	max   int
	m     map[string]*list.Element
	l     list.List // of *lease, most recently used first
	evict func(key string, e *lease)
}

// Get returns key's lease and marks it used.
func (c *keyLRU) Get(key string) (*lease, bool) {
	el, ok := c.m[key]
	if !ok {
		return nil, false
	}
	c.l.MoveToFront(el)
	return el.Value.(*lease), true
}

// Peek returns key's lease.
func (c *keyLRU) Peek(key string) (*lease, bool) {
	el, ok := c.m[key]
	if !ok {
		return nil, false
	}
	return el.Value.(*lease), true
}

// Add sets key's lease, forgetting the least recently used one when full.
func (c *keyLRU) Add(key string, e *lease) {
	if el, ok := c.m[key]; ok {
		el.Value = e
		c.l.MoveToFront(el)
		return
	}
	if c.l.Len() >= c.max {
		old := c.l.Back()
		c.l.Remove(old)
		oe := old.Value.(*lease)
		delete(c.m, oe.key)
		c.evict(oe.key, oe)
	}
	c.m[key] = c.l.PushFront(e)
}

// Len returns the number of leases held.
func (c *keyLRU) Len() int { return c.l.Len() }
