package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures the stores of this package. A zero field takes the
// default in its comment. Stores made from one Options value share its
// Breaker when one is set; every other field is copied.
//
// # Clocks
//
// Instances sharing one Redis share one time: the Redis server's.
// Rate-limit buckets (GCRA) and failure budgets are decided in Lua on the
// server's clock (TIME), and the now that ratelimit passes to
// [LimitStore] and [FailureStore] is not used, so an instance whose clock
// runs ahead can neither see the others' failures as refilled or their
// lockouts as over, nor see a drained bucket as full. A replay id
// ([ReplayStore]) is kept until an absolute time on the server's clock,
// its expiry plus Options.MaxClockSkew (1 s by default), however far
// ahead the clock of the instance that recorded it runs: an instance
// whose clock lags the server's by up to MaxClockSkew still finds the id
// until the id expires on its own clock. Keep every instance and every
// Redis node within MaxClockSkew of true time (NTP), and raise it if they
// can drift further. On a Cluster each key is decided by the clock of the
// master that owns it (after a failover, the promoted replica's), so the
// nodes need synchronised clocks too.
//
// The instance's own clock (Options.Now) still decides what is local to
// it: the Breaker's cool-down, and refusing without a round trip an id
// whose expiry has passed on it. The verifiers in auth and signing judge
// a proof's or signature's age on their own clocks, so an instance whose
// clock runs far off refuses honest traffic (or accepts it late) whatever
// the store does. Options.InsecureTrustCallerClock makes the stores use
// the callers' clocks instead, for tests with a fake clock only.
//
// # Deadlines
//
// Each store call ends at the earlier of its caller's context deadline and
// Options.Timeout from its start: the timeout never extends a deadline the
// caller set. A middleware that makes several store calls for one request
// (a risk check reads and writes history, looks a key up, advances its
// counter) should give the request one deadline for all of them, with
// context.WithTimeout on the request's context before the first call, so
// that a slow Redis costs the request that one budget and not one
// Options.Timeout per call. A call whose caller's deadline has already
// passed fails at once without touching the network.
//
// # Keys
//
// Every key is Options.Prefix, a tag naming its purpose ("replay",
// "nonce", "mark", "rl", "fb", "aa-key", "aa-ch", "aa-hist", "cc", "dk", "intro", "intro-lock", "rv"), ':' and the hex
// SHA-256 of the identifying values, each prefixed with its length (an
// HMAC-SHA-256 under Options.KeySecret when set). Keys of different
// purposes cannot collide, a value chosen by a client cannot move the
// boundary between two values, and no subject, token, jti, nonce,
// challenge or device or key ID appears in a key name. Without a
// KeySecret, whoever can list the keys can still confirm a guessed value
// by hashing it; with one they cannot, at the cost of sharing the secret
// between instances and of losing every key when it changes (see
// Options.KeySecret). Stores of different services on one Redis need
// different Prefixes.
type Options struct {
	// Prefix is prepended to every key. Default: "apiguard:".
	Prefix string
	// Timeout bounds each call to Redis, through the call's context. It
	// never extends a deadline the caller's context already has: a call
	// ends at the earlier of the two. go-redis honours a context deadline
	// on the network only when the client is made with
	// ContextTimeoutEnabled: true (otherwise its own ReadTimeout and
	// WriteTimeout apply): set it (see the package doc for the
	// recommended client configuration). Default: 100ms.
	Timeout time.Duration
	// Now is this instance's clock. The Breaker's cool-down is measured
	// on it, and ReplayStore refuses an id whose expiry has already
	// passed on it without asking Redis. Every decision the stores share
	// between instances (rate-limit buckets, failure budgets, how long a
	// replay id is kept) is measured on the Redis server's clock instead,
	// so that an instance whose clock runs ahead or behind cannot move
	// them (see Clocks above). Default: time.Now.
	Now func() time.Time
	// MaxClockSkew is how far the clock of an instance using the stores
	// may run behind the Redis server's. A replay id is kept until its
	// expiry plus MaxClockSkew on the server's clock, so that an instance
	// whose clock lags by up to this much still finds it when it checks
	// the id again just before the id expires on its own clock. Keep the
	// clocks of the instances and of the Redis servers within it (NTP).
	// Default (zero or negative): 1s.
	MaxClockSkew time.Duration
	// InsecureTrustCallerClock, when true, makes the stores measure their
	// decisions on the caller's clock (the now passed to LimitStore and
	// FailureStore, and Options.Now for ReplayStore) instead of the Redis
	// server's. It exists for tests with a fake clock: in production an
	// instance whose clock runs ahead sees the others' failures as
	// refilled and their tokens as returned, and stores replay ids that
	// expire early. Keys still expire on Redis's clock, Timeout after
	// the state they hold ends on the caller's: a fake clock that stands
	// still for longer than Timeout past that end sees the state gone
	// (give such tests a generous Timeout). Default: false (the server's
	// clock).
	InsecureTrustCallerClock bool
	// Breaker fails calls fast while Redis is found down. Stores given the
	// same *Breaker share its state: one store's failures open it for all,
	// which suits stores on one client (one Redis). Default: each store
	// gets its own breaker, made with NewBreaker(BreakerConfig{}).
	Breaker *Breaker
	// KeySecret, when set, keys the digest that names every Redis key
	// (HMAC-SHA-256 instead of SHA-256). Key names never hold a raw
	// subject, token, nonce or device ID either way; without a secret,
	// whoever can list the keys (a replica, a backup, MONITOR, another
	// tenant of a shared Redis) can still confirm a guess, such as "does
	// user-42 have risk history", by hashing it; with one, they cannot.
	// Every instance sharing the stores must use the same secret.
	// Changing it orphans every key: recorded nonces, jti values and
	// high-water marks are forgotten (a replay within their window is
	// accepted again) and budgets, counters and history start afresh, so
	// rotate it only with the stores drained (or wait out the longest
	// replay window with both verifiers refusing). Default: none (plain
	// SHA-256). The New…Store functions panic when it is set and shorter
	// than 16 bytes.
	KeySecret []byte

	hashes *keyHashes // the digests behind key, made by defaults
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = "apiguard:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = time.Second
	}
	if o.Breaker == nil {
		o.Breaker = NewBreaker(BreakerConfig{})
	}
	if len(o.KeySecret) > 0 && len(o.KeySecret) < 16 {
		panic("redisstore: Options.KeySecret shorter than 16 bytes")
	}
	o.hashes = newKeyHashes(o.KeySecret)
}

// clock is the first argument of every script that measures time: ""
// for the Redis server's clock, or, when the store trusts the caller's
// clock (InsecureTrustCallerClock), the caller's now and o.Timeout in
// microseconds, apart by a space: see luaClock for the latter.
func (o *Options) clock(now time.Time) string {
	if o.InsecureTrustCallerClock {
		return strconv.FormatInt(now.UnixMicro(), 10) + " " + strconv.FormatInt(o.Timeout.Microseconds(), 10)
	}
	return ""
}

// luaClock opens every script that measures time (see Options.clock).
// It sets now, in microseconds, to the Redis server's clock (TIME), or to
// the caller's now in ARGV[1] when the caller's clock is trusted, and
// defines px(at), the SET option pair that keeps a key until at (µs on
// that clock), and expire(key, at), which does the same for an existing
// key.
//
// On the server's clock a key's expiry is absolute (PXAT, PEXPIREAT),
// rounded up to the millisecond: a relative TTL would be counted from
// the time Redis snapshots at the start of the script, up to a
// millisecond or more before TIME, and the key would expire early. TIME
// is allowed in a script that writes from Redis 5 on (effects
// replication) and PXAT from Redis 6.2: see the package doc. A key then
// expires on the clock the script decides on, so a call that reaches
// Redis late (queued in the client's pool) decides at its arrival, and
// finds the key gone only when its state restricts nothing any more.
//
// On the caller's clock the TTL is relative (PX), counted on Redis's
// clock from the script's run, and it is lengthened by lag, the caller's
// Options.Timeout (ARGV[1] is "now lag"): now is when the caller made
// the call, which may reach Redis up to Options.Timeout later and still
// succeed (a flood queues calls in the client's pool; a test's fake clock
// stands still while real time passes). Were the key gone by then, such
// a call would find a fresh bucket, budget or id where its now says the
// state still restricts: 6 requests of a burst of 5
// (queued_calls_refill_bucket), a guess on a spent budget
// (queued_guess_finds_fresh_budget), a replayed id
// (queued_use_forgets_id). A key whose state has expired decides as an
// absent one, so the longer life changes no other decision.
const luaClock = `
local now, lag, trusted
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now, lag, trusted = tonumber(t[1]) * 1000000 + tonumber(t[2]), 0, false
else
  local c, l = string.match(ARGV[1], '^(%-?%d+) (%d+)$')
  now, lag, trusted = tonumber(c), tonumber(l), true
end
local function px(at)
  if trusted then return 'PX', math.max(math.ceil((at - now + lag) / 1000), 1) end
  return 'PXAT', string.format('%.0f', math.max(math.ceil(at / 1000), math.floor(now / 1000) + 1))
end
local function expire(key, at)
  local opt, v = px(at)
  if opt == 'PX' then
    redis.call('PEXPIRE', key, v)
  else
    redis.call('PEXPIREAT', key, v)
  end
end
`

// ErrUnavailable wraps every error of a store call: Redis could not be
// reached, did not answer within Options.Timeout (or the caller's earlier
// deadline), answered with an error, or the Breaker is open
// ([ErrBreakerOpen]).
var ErrUnavailable = errors.New("redisstore: store unavailable")

// ErrBreakerOpen is the error of a call refused by an open Breaker,
// without touching the network. It wraps [ErrUnavailable].
var ErrBreakerOpen = fmt.Errorf("%w: breaker open", ErrUnavailable)

// do runs fn, which makes the Redis commands of one store call, under the
// breaker and the per-call timeout. Every store call goes through it.
//
//   - A caller's context that is already done fails the call at once: no
//     network, and the breaker does not count it.
//   - An open breaker fails the call at once with [ErrBreakerOpen].
//   - fn's context ends at now+o.Timeout, or at the caller's deadline when
//     that is earlier: the timeout never extends a request's deadline.
//   - A nil error or redis.Nil (the server answered) is a success for the
//     breaker, and redis.Nil is returned as is for the caller to test.
//   - Any other error wraps [ErrUnavailable]. It counts as a breaker
//     failure when the caller's context is still live (Redis refused,
//     timed out on Options.Timeout, or answered an error), or when the
//     caller's deadline passed after Redis had stayed silent for at least
//     a twentieth of Options.Timeout (5 ms by default: a healthy Redis
//     answers far sooner, so this is Redis's fault however short the
//     caller's budget). It is neutral when the caller cancelled (a client
//     that hangs up) or its deadline passed sooner (a budget spent
//     elsewhere, say by a slow upload): a client must not be able to open
//     the breaker for everyone.
func (o *Options) do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	t, err := o.Breaker.enter(o.Now())
	if err != nil {
		return err
	}
	cctx := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > o.Timeout {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	start := time.Now()
	err = fn(cctx)
	switch cerr := ctx.Err(); {
	case err == nil || errors.Is(err, redis.Nil):
		o.Breaker.exit(t, o.Now(), outcomeSuccess)
		return err
	case cerr == nil,
		errors.Is(cerr, context.DeadlineExceeded) && time.Since(start) >= o.Timeout/20:
		o.Breaker.exit(t, o.Now(), outcomeFailure)
	default:
		o.Breaker.exit(t, o.Now(), outcomeNeutral)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// call is do for a command with a result: the store calls' one-liner,
//
//	ok, err := call(ctx, &s.opts, func(ctx context.Context) (bool, error) {
//		return s.rdb.SetNX(ctx, key, "1", ttl).Result()
//	})
//
// err is nil, redis.Nil, or wraps [ErrUnavailable].
func call[T any](ctx context.Context, o *Options, fn func(context.Context) (T, error)) (T, error) {
	var v T
	err := o.do(ctx, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}
