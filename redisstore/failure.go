package redisstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// FailurePolicy is ratelimit.FailurePolicy: an alias of the same struct
// of standard-library types, so that this package need not import
// ratelimit.
type FailurePolicy = struct {
	Budget     int
	Per        time.Duration
	Lockout    time.Duration
	MaxLockout time.Duration
	Lease      time.Duration
}

// FailureStore keeps ratelimit failure budgets in Redis, so that several
// instances enforce one budget per key instead of one each. Each decision
// (reserve an attempt, settle it, peek) is one Lua script on one key (a
// hash of the key's failures, attempts in flight, lockout and strikes),
// so it is atomic, one round trip and Redis Cluster safe; the key expires
// when it no longer restricts anything. It implements
// ratelimit.FailureStore and ratelimit.NamespaceClaimer. Times are the
// Redis server's clock, not the callers': the now passed to its methods
// is ignored (unless Options.InsecureTrustCallerClock), so an instance
// whose clock runs ahead cannot see the others' failures as refilled or
// their lockouts as over. It is safe for concurrent use by multiple
// goroutines.
//
// When Redis fails or the Breaker is open, every call returns an error
// wrapping [ErrUnavailable], and the FailureBudget applies its
// StorePolicy (fail closed by default). An attempt reserved before an
// outage and settled during it is counted as a failure when its lease
// lapses. Redis must not evict these keys early (maxmemory-policy
// noeviction, or volatile-* with room to spare): an evicted key is a
// fresh budget.
type FailureStore struct {
	rdb   redis.UniversalClient
	opts  Options
	names nameClaims
}

// NewFailureStore returns a FailureStore on rdb. Give each process one
// FailureStore per Redis and share it between the budgets, so that two
// budgets of one name are found at construction. It panics if rdb is nil.
func NewFailureStore(rdb redis.UniversalClient, opts Options) *FailureStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &FailureStore{rdb: rdb, opts: opts}
}

// purposeFailure tags the keys of FailureStore: failure budgets.
const purposeFailure = "fb"

// redisKey is the Redis key of a failure budget's key (already a keyed
// hash from ratelimit, namespaced by the budget's name).
func (s *FailureStore) redisKey(key string) string { return s.opts.key(purposeFailure, key) }

// failureScript decides one operation on KEYS[1], a hash of su (when
// every recorded failure has refilled), lu (when the attempts in flight
// lapse), lk (locked until), ep (the ticket of the attempts in flight),
// inf (attempts in flight), st (strikes); times in µs on the Redis
// server's clock (see luaClock). ARGV: clock (Options.clock), op ('r'
// reserve, 's' settle, 'p' peek), budget, interval (Per/Budget),
// lockout, max lockout, lease, ticket, failed ('1'), reset ('1'). It
// returns {ok, ticket, remaining, wait, lockout, strikes}. It mirrors
// ratelimit's failState, which the shared conformance suite holds both
// to.
var failureScript = redis.NewScript(luaClock + `
local op = ARGV[2]
local budget = tonumber(ARGV[3])
local iv = tonumber(ARGV[4])
local lockout = tonumber(ARGV[5])
local maxl = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
local ticket = tonumber(ARGV[8])
local failed = ARGV[9] == '1'
local reset = ARGV[10] == '1'
local v = redis.call('HMGET', KEYS[1], 'su', 'lu', 'lk', 'ep', 'inf', 'st')
if not v[5] and (op == 'p' or (op == 's' and not failed)) then
  return {0, 0, budget, 0, 0, 0}
end
local su = tonumber(v[1]) or 0
local lu = tonumber(v[2]) or 0
local lk = tonumber(v[3]) or 0
local ep = tonumber(v[4]) or 0
local inf = tonumber(v[5]) or 0
local st = tonumber(v[6]) or 0
local function spent(t)
  if su <= t then return 0 end
  return math.floor((su - t + iv - 1) / iv)
end
local function available()
  if lk > now then return 0 end
  local a = budget - spent(now) - inf
  if a < 0 then a = 0 end
  return a
end
local function wait()
  local w = lk - now
  local w2 = su - (budget - 1) * iv - now
  if w2 > w then w = w2 end
  if w < 1 then w = 1 end
  return w
end
local function fail(t)
  if su < t then su = t end
  su = su + iv
  if su > t + budget * iv then su = t + budget * iv end
  if spent(t) < budget then return 0 end
  st = st + 1
  local d = lockout
  local i = 1
  while i < st and d < maxl do
    d = d * 2
    i = i + 1
  end
  if d > maxl then d = maxl end
  if lk < t + d then lk = t + d end
  return d
end
-- lapse counts the attempts in flight as failures at t, their lease's end.
local function lapse(t)
  local locked = 0
  for i = 1, inf do
    local d = fail(t)
    if d > locked then locked = d end
  end
  inf = 0
  return locked
end
if st > 0 and now - maxl >= lk then st = 0 end
local locked = 0
if inf > 0 and now >= lu then
  locked = lapse(now)
  ep = math.max(ep + 1, now)
end
local ok, tk, rem, w = 0, 0, 0, 0
if op == 'r' then
  if ep == 0 then ep = math.max(now, 1) end
  local a = available()
  if a < 1 then
    w = wait()
  else
    inf = inf + 1
    if lu < now + lease then lu = now + lease end
    ok, tk, rem = 1, ep, a - 1
  end
elseif op == 's' then
  local stale = false
  if ticket ~= 0 then
    if ticket == ep and inf > 0 then inf = inf - 1 else stale = true end
  end
  if failed and not stale then
    local d = fail(now)
    if d > locked then locked = d end
  end
  if reset then su, lk, st, locked = 0, 0, 0, 0 end
  rem = available()
else
  rem = available()
  if rem < 1 then w = wait() end
end
local strikes = st
if inf == 0 and su <= now and lk <= now and st == 0 then
  redis.call('DEL', KEYS[1])
else
  local f = function(x) return string.format('%.0f', x) end
  redis.call('HSET', KEYS[1], 'su', f(su), 'lu', f(lu), 'lk', f(lk), 'ep', f(ep), 'inf', f(inf), 'st', f(st))
  -- The key lives while it restricts: until its failures refill, its
  -- lockout ends and its strikes are forgotten, as the state will be once
  -- the attempts in flight have lapsed into failures.
  if inf > 0 then lapse(lu) end
  local exp = su
  if lk > exp then exp = lk end
  if st > 0 and lk + maxl > exp then exp = lk + maxl end
  if lu > exp then exp = lu end
  expire(KEYS[1], exp)
end
return {ok, tk, rem, w, locked, strikes}
`)

func (s *FailureStore) run(ctx context.Context, key, op string, ticket int64, failed, reset bool, p FailurePolicy, now time.Time) ([]int64, error) {
	budget := int64(max(p.Budget, 1))
	us := func(d time.Duration) int64 { return max(d.Microseconds(), 1) }
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	out, err := call(ctx, &s.opts, func(ctx context.Context) ([]int64, error) {
		return failureScript.Run(ctx, s.rdb, []string{s.redisKey(key)}, s.opts.clock(now), op, budget,
			max(p.Per.Microseconds()/budget, 1), us(p.Lockout), us(p.MaxLockout), us(p.Lease),
			ticket, flag(failed), flag(reset)).Int64Slice()
	})
	if err != nil {
		return nil, err
	}
	if len(out) != 6 {
		return nil, fmt.Errorf("%w: unexpected script reply", ErrUnavailable)
	}
	return out, nil
}

// Reserve implements ratelimit.FailureStore.
func (s *FailureStore) Reserve(ctx context.Context, key string, p FailurePolicy, now time.Time) (bool, int64, int, time.Duration, error) {
	out, err := s.run(ctx, key, "r", 0, false, false, p, now)
	if err != nil {
		return false, 0, 0, 0, err
	}
	return out[0] == 1, out[1], int(out[2]), time.Duration(out[3]) * time.Microsecond, nil
}

// Settle implements ratelimit.FailureStore.
func (s *FailureStore) Settle(ctx context.Context, key string, ticket int64, failed, reset bool, p FailurePolicy, now time.Time) (int, time.Duration, int, error) {
	out, err := s.run(ctx, key, "s", ticket, failed, reset, p, now)
	if err != nil {
		return 0, 0, 0, err
	}
	return int(out[2]), time.Duration(out[4]) * time.Microsecond, int(out[5]), nil
}

// Peek implements ratelimit.FailureStore.
func (s *FailureStore) Peek(ctx context.Context, key string, p FailurePolicy, now time.Time) (int, time.Duration, error) {
	out, err := s.run(ctx, key, "p", 0, false, false, p, now)
	if err != nil {
		return 0, 0, err
	}
	return int(out[2]), time.Duration(out[3]) * time.Microsecond, nil
}

// ClaimNamespace implements ratelimit.NamespaceClaimer: it returns an
// error when a budget of this name already uses this store.
func (s *FailureStore) ClaimNamespace(name string) error { return s.names.claim(name) }

// ReleaseNamespace implements ratelimit.NamespaceClaimer.
func (s *FailureStore) ReleaseNamespace(name string) { s.names.release(name) }

// nameClaims is the set of names a store serves in this process.
type nameClaims struct {
	mu    sync.Mutex
	names map[string]bool
}

func (c *nameClaims) claim(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names[name] {
		return fmt.Errorf("redisstore: name %q already served by this store", name)
	}
	if c.names == nil {
		c.names = map[string]bool{}
	}
	c.names[name] = true
	return nil
}

func (c *nameClaims) release(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.names, name)
}
