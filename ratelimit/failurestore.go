package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// FailurePolicy is what a [FailureStore] needs to know of a budget, on
// every call: Budget failures per Per; a lockout of Lockout once the
// budget is spent, doubling with each further one up to MaxLockout; and
// Lease, how long a reserved attempt may stay in flight before it is
// counted as a failure. It is an alias of a struct of standard-library
// types, so that a store can name the same type without importing this
// package.
type FailurePolicy = struct {
	Budget     int
	Per        time.Duration
	Lockout    time.Duration
	MaxLockout time.Duration
	Lease      time.Duration
}

// FailureStore keeps the state of failure budgets, with standard-library
// types only, so that implementations need not import this package.
// Implementations must be safe for concurrent use, and every method must
// decide atomically (one lock, one Lua script): the in-memory default
// ([NewMemoryFailureStore]) is bounded, and redisstore provides one that
// several instances share. The key a shared FailureStore receives is
// already a keyed hash of the caller's key, namespaced by the budget's
// name.
//
// A key's state is its recorded failures (each refills after
// Per/Budget), the attempts it has in flight, its lockout and its
// strikes (how many lockouts it had; forgotten MaxLockout after the last
// one ended). An attempt may start only while the key is not locked out
// and its unspent budget exceeds its attempts in flight, so that the
// failures recorded plus the attempts in flight never exceed the budget.
// The failure that spends the budget locks the key out. An attempt in
// flight past its lease is counted as a failure (its process may have
// died after checking the guess), and its later settlement is ignored.
type FailureStore interface {
	// Reserve reserves one attempt of key at now. It returns ok and the
	// attempt's ticket (for Settle; never 0), and the attempts left
	// after this one; or, when the key is locked out or has no attempt
	// left, ok false and wait: the time until the lockout has ended and
	// a whole failure of the budget is unspent (attempts in flight may
	// hold their places longer).
	Reserve(ctx context.Context, key string, p FailurePolicy, now time.Time) (ok bool, ticket int64, remaining int, wait time.Duration, err error)
	// Settle ends the attempt of ticket (or, with ticket 0, acts on key
	// without a reservation): failed records one failure, reset clears
	// the key's failures, lockout and strikes (attempts in flight stay),
	// neither releases the attempt. The settlement of an attempt whose
	// lease lapsed records nothing (it was counted as a failure), but a
	// reset still applies. It returns the attempts left, lockout (> 0
	// when this call locked the key out, for that long) and the key's
	// strikes.
	Settle(ctx context.Context, key string, ticket int64, failed, reset bool, p FailurePolicy, now time.Time) (remaining int, lockout time.Duration, strikes int, err error)
	// Peek returns the attempts key has left at now and, when none,
	// wait, the time until one may start.
	Peek(ctx context.Context, key string, p FailurePolicy, now time.Time) (remaining int, wait time.Duration, err error)
}

// failParams is a FailurePolicy in whole units of a store's clock
// (nanoseconds in memory, microseconds in redisstore's script, which
// mirrors this arithmetic).
type failParams struct {
	budget, iv, lockout, maxLockout, lease int64
}

func paramsOf(p FailurePolicy, unit time.Duration) failParams {
	budget := int64(max(p.Budget, 1))
	return failParams{
		budget:     budget,
		iv:         max(int64(p.Per/unit)/budget, 1),
		lockout:    max(int64(p.Lockout/unit), 1),
		maxLockout: max(int64(p.MaxLockout/unit), 1),
		lease:      max(int64(p.Lease/unit), 1),
	}
}

// failState is one key's failure budget, in a store's clock units.
type failState struct {
	spentUntil  int64 // when every recorded failure has refilled
	leaseUntil  int64 // when the attempts in flight lapse
	lockedUntil int64
	epoch       int64 // the ticket of the attempts in flight
	inflight    int64
	strikes     int64
}

// spent is the number of failures not yet refilled, rounded up.
func (s *failState) spent(p failParams, now int64) int64 {
	if s.spentUntil <= now {
		return 0
	}
	return (s.spentUntil - now + p.iv - 1) / p.iv
}

// available is the number of attempts that may start now.
func (s *failState) available(p failParams, now int64) int64 {
	if s.lockedUntil > now {
		return 0
	}
	return max(p.budget-s.spent(p, now)-s.inflight, 0)
}

// wait is the time until the lockout has ended and a whole failure of
// the budget is unspent, at least one unit (attempts in flight may hold
// their places longer).
func (s *failState) wait(p failParams, now int64) int64 {
	return max(s.lockedUntil-now, s.spentUntil-(p.budget-1)*p.iv-now, 1)
}

// fail records one failure; the failure that spends the budget (and any
// later one) locks the key out. It returns the lockout it started, or 0.
func (s *failState) fail(p failParams, now int64) int64 {
	s.spentUntil = min(max(s.spentUntil, now)+p.iv, now+p.budget*p.iv)
	if s.spent(p, now) < p.budget {
		return 0
	}
	s.strikes++
	d := p.lockout
	for i := int64(1); i < s.strikes && d < p.maxLockout; i++ {
		d *= 2
	}
	d = min(d, p.maxLockout)
	s.lockedUntil = max(s.lockedUntil, now+d)
	return d
}

// normalize forgets strikes MaxLockout after the last lockout ended, and
// counts the attempts in flight as failures once their lease has lapsed
// (new attempts get a new epoch, so that the lapsed ones' settlements are
// ignored). It returns the lockout it started, or 0.
func (s *failState) normalize(p failParams, now int64) int64 {
	if s.strikes > 0 && now-p.maxLockout >= s.lockedUntil {
		s.strikes = 0
	}
	var lockout int64
	if s.inflight > 0 && now >= s.leaseUntil {
		for range s.inflight {
			lockout = max(lockout, s.fail(p, now))
		}
		s.inflight = 0
		s.epoch = max(s.epoch+1, now)
	}
	return lockout
}

// reserve is FailureStore.Reserve on s.
func (s *failState) reserve(p failParams, now int64) (ok bool, ticket, remaining, wait int64) {
	s.normalize(p, now)
	if s.epoch == 0 {
		s.epoch = max(now, 1)
	}
	avail := s.available(p, now)
	if avail < 1 {
		return false, 0, 0, s.wait(p, now)
	}
	s.inflight++
	s.leaseUntil = max(s.leaseUntil, now+p.lease)
	return true, s.epoch, avail - 1, 0
}

// settle is FailureStore.Settle on s.
func (s *failState) settle(p failParams, ticket int64, failed, reset bool, now int64) (remaining, lockout int64) {
	lockout = s.normalize(p, now)
	stale := false
	if ticket != 0 {
		if ticket == s.epoch && s.inflight > 0 {
			s.inflight--
		} else {
			stale = true
		}
	}
	if failed && !stale {
		lockout = max(lockout, s.fail(p, now))
	}
	if reset {
		s.spentUntil, s.lockedUntil, s.strikes, lockout = 0, 0, 0, 0
	}
	return s.available(p, now), lockout
}

// peek is FailureStore.Peek on s.
func (s *failState) peek(p failParams, now int64) (remaining, wait int64) {
	s.normalize(p, now)
	if avail := s.available(p, now); avail > 0 {
		return avail, 0
	}
	return 0, s.wait(p, now)
}

// restricts reports whether s holds anything that restricts its key:
// failures not yet refilled, a lockout, attempts in flight. Such a state
// is never evicted to make room.
func (s *failState) restricts(now int64) bool {
	return s.inflight > 0 || s.spentUntil > now || s.lockedUntil > now
}

// memoryFailureStore is the bounded in-memory FailureStore: states in an
// LRU of hashed keys (raw keys are never stored), under one lock (failure
// budgets guard logins and OTP checks, not every request).
type memoryFailureStore struct {
	seed     maphash.Seed
	max      int
	overflow Overflow
	names    claims

	mu     sync.Mutex
	lru    *simplelru.LRU[uint64, *failState]
	shared failState // the overflow state of OverflowShare; its tickets are negated
}

// NewMemoryFailureStore returns a bounded in-memory FailureStore of at most
// maxKeys keys (Default when maxKeys <= 0: 100000), the default store of a
// [FailureBudget]. A state that restricts its key (failures not yet
// refilled, a lockout, attempts in flight) is never evicted to make room:
// a flood of junk failures on other keys never hands a key a fresh
// budget. Only states that restrict nothing (a key whose budget is whole
// again, which may still hold its lockout history) are evicted, oldest
// first, to make room. When the store is
// full of restricting states, a new key follows overflow: OverflowReject
// refuses its attempts (fail closed, for new keys only) until a state
// stops restricting; OverflowShare makes new keys share one budget.
// Explicit failures ([FailureBudget.Fail]) of a new key that finds no
// room are not recorded under OverflowReject (its attempts are refused
// all the same). It implements [NamespaceClaimer]. It is safe for
// concurrent use by multiple goroutines.
func NewMemoryFailureStore(maxKeys int, overflow Overflow) FailureStore {
	return newMemoryFailureStore(maxKeys, overflow)
}

func newMemoryFailureStore(maxKeys int, overflow Overflow) *memoryFailureStore {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	s := &memoryFailureStore{seed: maphash.MakeSeed(), max: maxKeys, overflow: overflow}
	// Capacity one above the bound: eviction is ours to decide.
	s.lru, _ = simplelru.NewLRU[uint64, *failState](maxKeys+1, nil)
	return s
}

// state returns key's state, making it if there is room; with create
// false it returns nil for a key without one. The bool reports the
// overflow state. Requires s.mu held.
func (s *memoryFailureStore) state(key string, create bool, now int64) (*failState, bool) {
	h := maphash.String(s.seed, key)
	if st, ok := s.lru.Get(h); ok {
		return st, false
	}
	if !create {
		return nil, false
	}
	if s.lru.Len() >= s.max && !s.evict(now) {
		if s.overflow == OverflowShare {
			return &s.shared, true
		}
		return nil, false
	}
	st := &failState{}
	s.lru.Add(h, st)
	return st, false
}

// evict drops the oldest state that does not restrict its key, looking
// at a few of the oldest and moving the ones that do to the other end.
// It reports whether it made room. Requires s.mu held.
func (s *memoryFailureStore) evict(now int64) bool {
	for range 8 {
		k, st, ok := s.lru.GetOldest()
		if !ok {
			return false
		}
		if !st.restricts(now) {
			s.lru.RemoveOldest()
			return true
		}
		s.lru.Get(k)
	}
	return false
}

// Reserve implements FailureStore.
func (s *memoryFailureStore) Reserve(_ context.Context, key string, p FailurePolicy, now time.Time) (bool, int64, int, time.Duration, error) {
	fp, t := paramsOf(p, time.Nanosecond), now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, shared := s.state(key, true, t)
	if st == nil {
		return false, 0, 0, time.Duration(fp.iv), nil
	}
	ok, ticket, remaining, wait := st.reserve(fp, t)
	if shared {
		ticket = -ticket
	}
	return ok, ticket, int(remaining), time.Duration(wait), nil
}

// Settle implements FailureStore.
func (s *memoryFailureStore) Settle(_ context.Context, key string, ticket int64, failed, reset bool, p FailurePolicy, now time.Time) (int, time.Duration, int, error) {
	fp, t := paramsOf(p, time.Nanosecond), now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	var st *failState
	if ticket < 0 {
		st, ticket = &s.shared, -ticket
	} else {
		st, _ = s.state(key, failed, t)
	}
	if st == nil { // nothing to release or reset, or no room for a failure
		return int(fp.budget), 0, 0, nil
	}
	remaining, lockout := st.settle(fp, ticket, failed, reset, t)
	return int(remaining), time.Duration(lockout), int(st.strikes), nil
}

// Peek implements FailureStore.
func (s *memoryFailureStore) Peek(_ context.Context, key string, p FailurePolicy, now time.Time) (int, time.Duration, error) {
	fp, t := paramsOf(p, time.Nanosecond), now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, _ := s.state(key, false, t)
	if st == nil {
		if s.lru.Len() < s.max || s.evict(t) {
			return int(fp.budget), 0, nil
		}
		if s.overflow != OverflowShare {
			return 0, time.Duration(fp.iv), nil // a new key would be refused
		}
		st = &s.shared
	}
	remaining, wait := st.peek(fp, t)
	return int(remaining), time.Duration(wait), nil
}

// len returns the number of keys held.
func (s *memoryFailureStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// ClaimNamespace implements [NamespaceClaimer].
func (s *memoryFailureStore) ClaimNamespace(name string) error { return s.names.claim(name) }

// ReleaseNamespace implements [NamespaceClaimer].
func (s *memoryFailureStore) ReleaseNamespace(name string) { s.names.release(name) }
