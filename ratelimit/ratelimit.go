package ratelimit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/problem"
)

// Limit is a token bucket: Requests per Per on average, with bursts of up
// to Burst. "100 per minute, burst 20" is Limit{Requests: 100, Per:
// time.Minute, Burst: 20}.
type Limit struct {
	// Requests is the number of requests per Per. Required: > 0.
	Requests int
	// Per is the window. Required: > 0.
	Per time.Duration
	// Burst is the bucket size: how many requests may come at once.
	// Default (0): Requests. A negative Burst is an error at New.
	Burst int
}

// check returns nil when l is valid, or an error naming field (such as
// "Config.Limit") and what is wrong with it: each invalid part has its
// own message, so that the error names the fix.
func (l Limit) check(field string) error {
	switch {
	case l == Limit{}:
		return fmt.Errorf("ratelimit: %s is required: Requests and Per must be positive", field)
	case l.Requests <= 0:
		return fmt.Errorf("ratelimit: %s.Requests must be positive, got %d", field, l.Requests)
	case l.Per < 0:
		return fmt.Errorf("ratelimit: %s.Per must not be negative, got %s", field, l.Per)
	case l.Per == 0:
		return fmt.Errorf("ratelimit: %s.Per is required: the window must be positive", field)
	case l.Burst < 0:
		return fmt.Errorf("ratelimit: %s.Burst must not be negative, got %d (0 means Requests)", field, l.Burst)
	}
	return nil
}

func (l Limit) burst() int {
	if l.Burst == 0 {
		return l.Requests
	}
	return l.Burst
}

// emission is the time one token takes to accrue.
func (l Limit) emission() time.Duration { return l.Per / time.Duration(l.Requests) }

// KeyFunc names the bucket of a request. It returns [ErrNoKey] (or any
// error) when the request has no key; such requests are rejected unless
// Config.InsecureAllowNoKey is set.
type KeyFunc func(r *http.Request) (string, error)

// StorePolicy says what a Limiter or a FailureBudget does when its Store
// fails or exceeds its StoreTimeout: FallbackLocal (the Limiter's default:
// a local in-memory limiter, per instance, until the store answers),
// FailOpen, or FailClosed (the FailureBudget's default: 503). Each failure
// is logged as event=ratelimit_store_error. [Limiter.Ready] and
// [FailureBudget.Ready] report whether a shared store that has a
// Ready(context.Context) error method (redisstore's) answers, for a
// readiness endpoint; the in-memory stores are always ready.
type StorePolicy int

const (
	// DefaultStorePolicy is the zero value: the default of the config it
	// is in, FallbackLocal for a Limiter and FailClosed for a
	// FailureBudget.
	DefaultStorePolicy StorePolicy = iota
	// FallbackLocal decides with a local in-memory store, per instance,
	// until the store answers again. The default for a Limiter.
	FallbackLocal
	// FailOpen allows the request.
	FailOpen
	// FailClosed rejects the request with 503. The default for a
	// FailureBudget.
	FailClosed
)

// Rule is one further limit a Limiter enforces with its main one, all or
// nothing: a request rejected by one limit charges none.
type Rule struct {
	// Name is the policy name in headers and events, and names the
	// rule's buckets apart from every other rule's. Required.
	Name string
	// Limit is the limit. Required.
	Limit Limit
	// Key names the bucket. Required.
	Key KeyFunc
	// LimitFor, when set, returns the limit for a key at run time.
	LimitFor func(r *http.Request, key string) Limit
}

// Config configures a [Limiter]. A zero field takes the default in its
// comment.
type Config struct {
	// Name is the policy name in the RateLimit fields and events, and the
	// limiter's namespace in a shared Store: two Limiters on one Store
	// must have different names (New returns an error when a Store that
	// implements [NamespaceClaimer] already serves the name in this
	// process). Default: "api".
	Name string
	// Limit is the limit. Required.
	Limit Limit
	// Key names the bucket of a request. Required: there is no safe
	// default (see [KeyByIP], [KeyByHeader]).
	Key KeyFunc
	// LimitFor, when set, returns the limit for a key at run time (tighter
	// for a risky device, looser for a paid tier); an existing bucket
	// adopts a changed limit. Default: Limit for every key.
	LimitFor func(r *http.Request, key string) Limit
	// Rules are further limits enforced with this one, all or nothing.
	// Each rule has buckets of its own: two rules never share a bucket,
	// even when their keys are equal.
	Rules []Rule

	// Store keeps the buckets. Default: the in-memory store of MaxKeys
	// buckets. A shared store (redisstore) makes several instances
	// enforce one limit; it needs KeySecret.
	Store Store
	// MaxKeys bounds the default store: it holds that many keys at
	// once, at about 45 bytes a key. Default: 100000.
	MaxKeys int
	// Overflow is the default store's policy when it is full of buckets
	// that are still refilling. Default: OverflowReject.
	Overflow Overflow
	// StorePolicy applies when Store fails or exceeds StoreTimeout.
	// Default ([DefaultStorePolicy]): FallbackLocal.
	StorePolicy StorePolicy
	// StoreTimeout bounds each call to a Store other than the default.
	// Default: 10ms.
	StoreTimeout time.Duration
	// KeySecret keys the hash that keys are stored under in a shared
	// Store, so that tokens, device IDs and addresses are never stored
	// raw, and every instance computes the same hash. The hash covers the
	// limiter's Name and the rule's name with the key, so that limiters
	// and rules sharing one Store and one KeySecret never share a bucket.
	// Required with a Store, at least 32 bytes. (The default store keys
	// its buckets with a per-process seeded hash, one seed per rule.)
	KeySecret []byte

	// Shadow decides, logs and counts, but never rejects for a limit or a
	// missing key: for rolling a new limit out. Buckets are charged as in
	// enforce mode; the rate_limited and ratelimit_no_key events carry
	// shadow=true, which telemetry counts with the attribute
	// shadow="true" (the would-deny count). A store failure under
	// FailClosed passes too, its ratelimit_store_error event marked
	// shadow=true: as in auth, signing and attest, a control on trial
	// must not make the API less available than it was without it.
	// Default: false.
	Shadow bool
	// InsecureAllowNoKey lets requests without a key through unlimited.
	// Default: false, such requests are rejected with 400.
	InsecureAllowNoKey bool
	// QuietAllow leaves the RateLimit fields off allowed responses.
	// Default: false, every response carries them.
	QuietAllow bool
	// LegacyHeaders also sends X-RateLimit-Limit, X-RateLimit-Remaining
	// and X-RateLimit-Reset. Default: false.
	LegacyHeaders bool

	// Now is the clock. Default: with a shared Store, time.Now (instances
	// must agree on the time); with the in-memory store, a clock that
	// reads only the monotonic clock, which is cheaper and unmoved by
	// steps of the wall clock (see [MonotonicClock]).
	Now func() time.Time
	// Logger receives events (rate_limited, ratelimit_no_key,
	// ratelimit_store_error). Default: slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes rejections. Default: [Limiter.WriteError].
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// Errors.
var (
	// ErrLimited reports that a limit is exhausted; the error is a
	// *[LimitError].
	ErrLimited = errors.New("ratelimit: limit exceeded")
	// ErrNoKey is what a KeyFunc returns when the request has no key.
	ErrNoKey = errors.New("ratelimit: no key for the request")
	// ErrStoreUnavailable reports a store failure under FailClosed, and a
	// shared store's call that failed after the caller's context ended
	// (whatever the StorePolicy: a client that hangs up never takes the
	// local store, or no store, instead of the shared one).
	ErrStoreUnavailable = errors.New("ratelimit: store unavailable")
	// ErrNamespaceTaken is what New returns (wrapped) when its Store
	// already serves a Limiter or FailureBudget of the same Name.
	ErrNamespaceTaken = errors.New("ratelimit: name already served by this store")
)

// LimitError is a rejection: which policy, and when to retry.
type LimitError struct {
	Policy     string
	Limit      Limit
	RetryAfter time.Duration
}

// Error names the policy and when to retry.
func (e *LimitError) Error() string {
	return fmt.Sprintf("ratelimit: limit %q exceeded, retry after %s", e.Policy, e.RetryAfter)
}

// Unwrap returns ErrLimited.
func (e *LimitError) Unwrap() error { return ErrLimited }

// Decision is the outcome of [Limiter.Allow].
type Decision struct {
	Allowed bool
	// Policy is the deciding policy: the one that rejected, or the main
	// one when allowed.
	Policy string
	Limit  Limit
	// Remaining is the whole number of requests left in the bucket.
	Remaining int
	// RetryAfter is, when rejected, how long until a request passes.
	RetryAfter time.Duration
	// NextToken is how long until one more request accrues.
	NextToken time.Duration
}

// Limiter is a rate-limiting middleware and its buckets, created once in
// New and shared by every Handler wrap. It is safe for concurrent use by
// multiple goroutines. The zero value is not usable; create one with
// [New].
type Limiter struct {
	cfg     Config
	rules   []rule
	mem     *memoryStore // the store, when it is the default
	local   *memoryStore // fallback for a failing shared store
	release func()       // gives back the Name claimed on a shared Store

	// fields caches RateLimit values of the main rule for small r and t,
	// so that the common answer allocates nothing. Each is set once.
	fields [fieldCacheR][fieldCacheT]atomic.Pointer[[]string]
}

const (
	fieldCacheR = 65
	fieldCacheT = 9
)

type rule struct {
	name     string
	limit    Limit
	key      KeyFunc
	limitFor func(*http.Request, string) Limit
	body429  []byte   // the problem+json body of its rejections
	quoted   string   // name as an sf-string, for the RateLimit fields
	policy   []string // the RateLimit-Policy member of limit, shared

	// seed hashes the rule's keys in the in-memory stores: each rule has
	// its own, so that equal keys of two rules name two buckets, with no
	// string built per request.
	seed maphash.Seed
	// ns is the rule's namespace in a shared Store's key hash: the
	// purpose, the limiter's Name and the rule's name, each
	// length-prefixed so that no two pairs of names give one namespace.
	ns []byte
}

// New validates cfg, fills in its defaults and returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	if cfg.Key == nil {
		return nil, errors.New("ratelimit: Config.Key is required")
	}
	if err := cfg.Limit.check("Config.Limit"); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = "api"
	}
	if cfg.StoreTimeout < 0 {
		return nil, fmt.Errorf("ratelimit: Config.StoreTimeout must not be negative, got %s (0 means 10ms)", cfg.StoreTimeout)
	}
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: Config.MaxKeys must not be negative, got %d (0 means 100000)", cfg.MaxKeys)
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 10 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
		if cfg.Store == nil {
			cfg.Now = MonotonicClock()
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Store != nil && len(cfg.KeySecret) < 32 {
		return nil, errors.New("ratelimit: Config.KeySecret (32 bytes or more) is required with a shared Store")
	}
	l := &Limiter{cfg: cfg}
	l.rules = append(l.rules, rule{name: cfg.Name, limit: cfg.Limit, key: cfg.Key, limitFor: cfg.LimitFor})
	names := map[string]bool{cfg.Name: true}
	for i, r := range cfg.Rules {
		if r.Name == "" || r.Key == nil {
			return nil, fmt.Errorf("ratelimit: Config.Rules[%d] needs a Name and a Key", i)
		}
		if err := r.Limit.check(fmt.Sprintf("Config.Rules[%d].Limit", i)); err != nil {
			return nil, err
		}
		if names[r.Name] {
			return nil, fmt.Errorf("ratelimit: policy name %q used twice", r.Name)
		}
		names[r.Name] = true
		l.rules = append(l.rules, rule{name: r.Name, limit: r.Limit, key: r.Key, limitFor: r.LimitFor})
	}
	if cfg.Store == nil {
		l.mem = newMemoryStore(cfg.MaxKeys, cfg.Overflow)
	} else {
		l.local = newMemoryStore(cfg.MaxKeys, cfg.Overflow)
	}
	for i := range l.rules {
		rl := &l.rules[i]
		field := "Config.Name"
		if i > 0 {
			field = fmt.Sprintf("Config.Rules[%d].Name", i-1)
		}
		q, err := quoteName(field, rl.name)
		if err != nil {
			return nil, err
		}
		rl.quoted = q
		rl.policy = []string{policyField(rl.quoted, rl.limit)}
		rl.body429 = quotaBody(rl.name)
		rl.seed = maphash.MakeSeed()
		rl.ns = namespace("ratelimit", cfg.Name, rl.name)
	}
	release, err := claim(cfg.Store, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: Config.Name: %w", err)
	}
	l.release = release
	events.WarnUnobserved(l.cfg.Logger, "ratelimit")
	return l, nil
}

// NamespaceClaimer is implemented by a shared store that can tell, within
// one process, that two Limiters (or two FailureBudgets) would share a
// namespace on it: New claims its Name with ClaimNamespace and fails when
// the store already serves that name; Close gives it back with
// ReleaseNamespace. The stores of this package and redisstore implement
// it. Instances of one service in several processes share a store on
// purpose, under one name each; two different limiters under one name in
// several processes cannot be detected and must be avoided by
// configuration.
//
// Every bucket belongs to one limiter and one rule. In the in-memory
// stores each rule hashes its keys with a seed of its own; in a shared
// Store the HMAC covers the limiter's Name and the rule's name with the
// key. So two rules with the same key (per second and per hour) keep two
// buckets, a rule keyed by a client-chosen value (a device header) never
// reaches another rule's buckets (an address key), and two limiters on one
// Redis with one KeySecret never share a bucket. Within one rule, a
// KeyFunc that returns keys of several kinds (a subject, or an address
// when there is none) must tag each kind so that no two kinds give one
// key, as [KeyByIP]'s "ip4:" and "ip6:" do; [KeyJoin] combines keys
// without ambiguity.
type NamespaceClaimer interface {
	// ClaimNamespace records that name is served, and returns an error
	// when it already is.
	ClaimNamespace(name string) error
	// ReleaseNamespace forgets a name that ClaimNamespace recorded.
	ReleaseNamespace(name string)
}

// claim claims name on store when it is a NamespaceClaimer, and returns
// the func that releases it (once).
func claim(store any, name string) (func(), error) {
	c, ok := store.(NamespaceClaimer)
	if !ok {
		return func() {}, nil
	}
	if err := c.ClaimNamespace(name); err != nil {
		if !errors.Is(err, ErrNamespaceTaken) {
			err = fmt.Errorf("%w: %w", ErrNamespaceTaken, err)
		}
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { c.ReleaseNamespace(name) }) }, nil
}

// namespace is the length-prefixed concatenation of parts.
func namespace(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(b, ':')
		b = append(b, p...)
	}
	return b
}

// claims is the set of names a store serves in this process, for the
// in-memory stores' NamespaceClaimer.
type claims struct {
	mu    sync.Mutex
	names map[string]bool
}

func (c *claims) claim(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names[name] {
		return fmt.Errorf("%w: %q", ErrNamespaceTaken, name)
	}
	if c.names == nil {
		c.names = map[string]bool{}
	}
	c.names[name] = true
	return nil
}

func (c *claims) release(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.names, name)
}

// MonotonicClock returns a clock for in-process buckets: each reading is
// the time of the call to MonotonicClock plus the monotonic time elapsed
// since, so it reads only the monotonic clock (about half the cost of
// time.Now) and never jumps when the wall clock is stepped. Its readings
// carry a monotonic component, which is what buckets measure with; their
// wall-clock part drifts from the system's when the system clock is
// adjusted, so do not use it where instances must agree on the time.
func MonotonicClock() func() time.Time {
	base := time.Now()
	return func() time.Time { return base.Add(time.Since(base)) }
}

// Close gives back the Limiter's Name to its shared Store when that Store
// is a [NamespaceClaimer] (so that a new Limiter may take the name), and
// returns nil. That claim is all a Limiter holds: it starts no goroutine,
// and with the default in-memory store Close does nothing. Close is
// idempotent; the Limiter must not be used after it.
func (l *Limiter) Close() error {
	l.release()
	return nil
}

// Allow takes one token for key under the main limit (Config.Limit, or
// Config.LimitFor with a nil request), shorthand for AllowAt with
// Config.Now. It returns an error only when a shared store fails under
// FailClosed.
func (l *Limiter) Allow(ctx context.Context, key string) (Decision, error) {
	return l.AllowAt(ctx, key, l.cfg.Now())
}

// AllowAt is Allow at time now.
func (l *Limiter) AllowAt(ctx context.Context, key string, now time.Time) (Decision, error) {
	r := &l.rules[0]
	if l.mem != nil && r.limitFor == nil { // the common case, kept short
		res := l.mem.take(maphash.String(r.seed, key), r.limit, now)
		return Decision{Allowed: res.Allowed, Policy: r.name, Limit: r.limit, Remaining: res.Remaining, RetryAfter: res.RetryAfter, NextToken: res.NextToken}, nil
	}
	lim := r.limit
	if r.limitFor != nil {
		lim = r.limitFor(nil, key)
	}
	res, err := l.take(ctx, r, key, lim, now)
	if err != nil {
		return Decision{Policy: r.name, Limit: lim}, err
	}
	return decision(r.name, lim, res), nil
}

func decision(name string, lim Limit, res result) Decision {
	return Decision{Allowed: res.Allowed, Policy: name, Limit: lim, Remaining: res.Remaining, RetryAfter: res.RetryAfter, NextToken: res.NextToken}
}

// take takes one token from the bucket of rule r and key, in the default
// store or the shared one with its failure policy.
func (l *Limiter) take(ctx context.Context, r *rule, key string, lim Limit, now time.Time) (result, error) {
	if l.mem != nil {
		return l.mem.take(maphash.String(r.seed, key), lim, now), nil
	}
	sctx, cancel := context.WithTimeout(ctx, l.cfg.StoreTimeout)
	ok, remaining, wait, err := l.cfg.Store.Take(sctx, l.storeKey(r, key), lim.emission(), lim.burst(), now)
	cancel()
	if err == nil {
		res := result{Allowed: ok, Remaining: remaining}
		if ok {
			res.NextToken = wait
		} else {
			res.RetryAfter = wait
		}
		return res, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		// The caller is gone (a client that hung up) or out of time: the
		// store did not fail, so its outage policy does not apply, or a
		// client could take a local bucket, or none, at will.
		return result{}, fmt.Errorf("%w: %w", ErrStoreUnavailable, cerr)
	}
	return l.storeFailed(ctx, r, key, lim, now, err)
}

func (l *Limiter) storeFailed(ctx context.Context, r *rule, key string, lim Limit, now time.Time, err error) (result, error) {
	var reason string
	var res result
	var out error
	switch l.cfg.StorePolicy {
	case FailOpen:
		reason, res = "fail_open", result{Allowed: true, Remaining: lim.burst()}
	case FailClosed:
		reason, out = "fail_closed", fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	default:
		reason = "fallback_local"
		res = l.local.take(maphash.String(r.seed, key), lim, now)
	}
	events.Log(ctx, l.cfg.Logger, slog.LevelWarn, "ratelimit: store failed",
		slog.String("event", "ratelimit_store_error"), slog.String("reason", reason),
		slog.String("policy", r.name), slog.String("error", err.Error()),
		slog.Bool("shadow", l.cfg.Shadow && out != nil))
	return res, out
}

// storeKey is the keyed hash the key of rule r is stored under in a
// shared store: namespaced by the limiter's and the rule's names.
func (l *Limiter) storeKey(r *rule, key string) string {
	return storeKey(l.cfg.KeySecret, r.ns, key)
}

// storeKey is the keyed hash of ns and key under secret.
func storeKey(secret, ns []byte, key string) string {
	m := hmac.New(sha256.New, secret)
	m.Write(ns)
	m.Write([]byte(key))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:18])
}

// decide applies every rule to r, all or nothing.
func (l *Limiter) decide(r *http.Request, now time.Time) (Decision, error) {
	ctx := r.Context()
	if len(l.rules) == 1 {
		rl := &l.rules[0]
		key, err := rl.key(r)
		if err != nil {
			return Decision{Policy: rl.name}, fmt.Errorf("%w: %v", ErrNoKey, err)
		}
		lim := rl.limit
		if rl.limitFor != nil {
			lim = rl.limitFor(r, key)
		}
		res, err := l.take(ctx, rl, key, lim, now)
		return decision(rl.name, lim, res), err
	}
	return l.decideAll(r, now)
}

// decideAll takes a token under each rule; when one rejects, the tokens
// already taken are given back.
func (l *Limiter) decideAll(r *http.Request, now time.Time) (Decision, error) {
	ctx := r.Context()
	type taken struct {
		cancel func()
	}
	var done []taken
	var first Decision
	for i := range l.rules {
		rl := &l.rules[i]
		key, err := rl.key(r)
		if err != nil {
			for _, t := range done {
				t.cancel()
			}
			return Decision{Policy: rl.name}, fmt.Errorf("%w: %v", ErrNoKey, err)
		}
		lim := rl.limit
		if rl.limitFor != nil {
			lim = rl.limitFor(r, key)
		}
		var res result
		var cancel func()
		if l.mem != nil {
			h := maphash.String(rl.seed, key)
			if res = l.mem.take(h, lim, now); res.Allowed {
				cancel = func() { l.mem.refund(h, lim, now) }
			}
		} else {
			res, err = l.take(ctx, rl, key, lim, now)
			if err != nil {
				for _, t := range done {
					t.cancel()
				}
				return decision(rl.name, lim, res), err
			}
			if res.Allowed {
				sk := l.storeKey(rl, key)
				cancel = func() {
					sctx, c := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.StoreTimeout)
					defer c()
					_ = l.cfg.Store.Refund(sctx, sk, lim.emission(), lim.burst(), now)
				}
			}
		}
		d := decision(rl.name, lim, res)
		if !res.Allowed {
			for _, t := range done {
				t.cancel()
			}
			return d, nil
		}
		if i == 0 {
			first = d
		}
		done = append(done, taken{cancel: cancel})
	}
	return first, nil
}

// Handler returns next behind the limits. Allowed requests reach next
// with RateLimit fields on the response (unless Config.QuietAllow);
// rejected ones are answered by Config.ErrorHandler (default 429 with
// Retry-After, RateLimit, RateLimit-Policy and a problem+json body) and
// logged as event=rate_limited. It panics if next is nil.
func (l *Limiter) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("ratelimit: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := l.decide(r, l.cfg.Now())
		switch {
		case errors.Is(err, ErrNoKey):
			events.Log(r.Context(), l.cfg.Logger, slog.LevelWarn, "ratelimit: no key",
				slog.String("event", "ratelimit_no_key"), slog.String("reason", "no_key"), slog.String("policy", d.Policy),
				slog.Bool("shadow", l.cfg.Shadow && !l.cfg.InsecureAllowNoKey))
			if l.cfg.InsecureAllowNoKey || l.cfg.Shadow {
				next.ServeHTTP(w, r)
				return
			}
			l.reject(w, r, err)
			return
		case err != nil:
			if l.cfg.Shadow && errors.Is(err, ErrStoreUnavailable) {
				next.ServeHTTP(w, r)
				return
			}
			l.reject(w, r, err)
			return
		}
		if !d.Allowed {
			events.Log(r.Context(), l.cfg.Logger, slog.LevelWarn, "ratelimit: limited",
				slog.String("event", "rate_limited"), slog.String("reason", "quota"),
				slog.String("policy", d.Policy), slog.Bool("shadow", l.cfg.Shadow))
			if !l.cfg.Shadow {
				l.reject(w, r, &LimitError{Policy: d.Policy, Limit: d.Limit, RetryAfter: d.RetryAfter})
				return
			}
		}
		if !l.cfg.QuietAllow && !l.cfg.Shadow {
			l.setFields(w.Header(), d)
		}
		next.ServeHTTP(w, r)
	})
}

func (l *Limiter) reject(w http.ResponseWriter, r *http.Request, err error) {
	if l.cfg.ErrorHandler != nil {
		l.cfg.ErrorHandler(w, r, err)
		return
	}
	l.WriteError(w, r, err)
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

var (
	probNoKey = problem.Problem{Type: problem.TypeBase + "rate-limit-key-missing", Title: "Request cannot be rate limited", Status: http.StatusBadRequest, Detail: "The request lacks what this endpoint's rate limit is keyed by."}
	probDown  = problem.Problem{Type: problem.TypeBase + "rate-limit-unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: "Rate limits cannot be checked right now; retry later."}
)

// quotaExceeded is the problem type of draft-ietf-httpapi-ratelimit-headers.
const quotaExceeded = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// quotaBody is the problem+json body of a rejection by policy.
func quotaBody(policy string) []byte {
	return problem.Marshal(problem.Problem{
		Type: quotaExceeded, Title: "Request cannot be satisfied as assigned quota has been exceeded",
		Status: http.StatusTooManyRequests, Detail: "Too many requests; retry after the time in Retry-After.",
		Extensions: map[string]any{"violated-policies": []string{policy}},
	})
}

func quotaBodyFor(rules []rule, policy string) []byte {
	for i := range rules {
		if rules[i].name == policy {
			return rules[i].body429
		}
	}
	return quotaBody(policy)
}

// WriteError is the default Config.ErrorHandler: 429 with Retry-After
// (whole seconds, rounded up), RateLimit and RateLimit-Policy, and a
// problem+json body of type quota-exceeded naming the violated policy;
// 400 for a request without a key; 503 when the store fails under
// FailClosed.
func (l *Limiter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	if le, ok := errors.AsType[*LimitError](err); ok {
		d := Decision{Policy: le.Policy, Limit: le.Limit, RetryAfter: le.RetryAfter}
		l.setFields(w.Header(), d)
		w.Header().Set("Retry-After", strconv.FormatInt(max(ceilSeconds(le.RetryAfter), 1), 10))
		body := quotaBodyFor(l.rules, le.Policy)
		problem.WriteEncoded(w, http.StatusTooManyRequests, body)
		return
	}
	if errors.Is(err, ErrStoreUnavailable) {
		w.Header().Set("Retry-After", "1")
		problem.Write(w, probDown)
		return
	}
	problem.Write(w, probNoKey)
}

// readier is a store that can tell whether it is reachable, as
// redisstore's stores can.
type readier interface {
	Ready(ctx context.Context) error
}

// Ready reports whether the Limiter's store is ready, for a readiness
// check: nil with the default in-memory store (always ready) or a Store
// without a Ready(context.Context) error method; otherwise the Store's
// Ready, whose error is wrapped with [ErrStoreUnavailable] and the
// limiter's Name. It is bounded by ctx and by the Store's own timeout.
// While the Store is not ready, requests follow Config.StorePolicy (by
// default a local limit per instance). It can be called concurrently
// with request handling.
func (l *Limiter) Ready(ctx context.Context) error {
	return storeReady(ctx, l.cfg.Store, "limiter", l.cfg.Name)
}

func storeReady(ctx context.Context, store any, kind, name string) error {
	r, ok := store.(readier)
	if !ok {
		return nil
	}
	if err := r.Ready(ctx); err != nil {
		return fmt.Errorf("%w: %s %q: %w", ErrStoreUnavailable, kind, name, err)
	}
	return nil
}
