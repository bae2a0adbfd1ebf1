package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/problem"
)

// ConcurrencyStore keeps the requests in flight per key, with
// standard-library types only, for a [Concurrency] limiter that several
// instances share (redisstore's ConcurrencyStore). Each request holds a
// slot under an id of its own until it releases it or its lease passes,
// so the slots of an instance that dies free themselves. The key a
// ConcurrencyStore receives is a keyed hash of the caller's key.
// Implementations must be safe for concurrent use.
type ConcurrencyStore interface {
	// Acquire takes one of key's limit slots for the request id until it
	// is released or lease has passed since now. It returns whether it
	// took one, and how many are taken (with it, when it did).
	Acquire(ctx context.Context, key, id string, limit int, lease time.Duration, now time.Time) (ok bool, inFlight int, err error)
	// Release gives back id's slot of key. Releasing a slot that is not
	// held (released before, or expired) does nothing.
	Release(ctx context.Context, key, id string) error
}

// ConcurrencyConfig configures a [Concurrency] limiter. A zero field takes
// the default in its comment.
type ConcurrencyConfig struct {
	// Name is the policy name in events and rejections, and the limiter's
	// namespace in a shared Store (see [NamespaceClaimer]). Default:
	// "concurrency".
	Name string
	// Limit is how many requests of one key may be in flight at once.
	// Required: > 0.
	Limit int
	// Key names the key of a request. Required (see [KeyByIP],
	// [KeyByHeader]).
	Key KeyFunc

	// Store keeps the slots. Default: in memory, per instance, holding
	// only the keys with requests in flight, at most MaxKeys of them (a
	// request of a new key beyond that is rejected, like one over its
	// limit; a key with requests in flight is never forgotten). A shared
	// store (redisstore) makes several instances enforce one limit; it
	// needs KeySecret.
	Store ConcurrencyStore
	// MaxKeys bounds the in-memory store. Default: 100000.
	MaxKeys int
	// Lease is how long a shared Store keeps a slot whose request never
	// released it: the instance died. A request still running after it no
	// longer counts, so make it longer than the longest request (the
	// server's WriteTimeout). Default: 1 minute.
	Lease time.Duration
	// RetryAfter is the Retry-After of a rejection. Default: 1s.
	RetryAfter time.Duration
	// StorePolicy applies when Store fails or exceeds StoreTimeout: a
	// local in-memory limit per instance (FallbackLocal), FailOpen or
	// FailClosed (503). Default ([DefaultStorePolicy]): FallbackLocal.
	StorePolicy StorePolicy
	// StoreTimeout bounds each call to Store. Default: 10ms.
	StoreTimeout time.Duration
	// KeySecret keys the hash that keys are stored under in a shared
	// Store, as [Config].KeySecret. Required with a Store, at least 32
	// bytes.
	KeySecret []byte

	// Shadow decides and logs as enforce mode, but Handler never rejects:
	// for rolling a new limit out ([Config].Shadow). A request over the
	// limit goes to next without a slot, as it could not take one, so the
	// slots held are exactly enforce mode's; its rate_limited event, and
	// the ratelimit_no_key or FailClosed ratelimit_store_error event of a
	// request passed without a key or in an outage, carry shadow=true.
	// Default: false.
	Shadow bool
	// InsecureAllowNoKey lets requests without a key through unlimited.
	// Default: false, such requests are rejected with 400.
	InsecureAllowNoKey bool
	// Now is the clock of the leases. Default: time.Now.
	Now func() time.Time
	// Rand is the source of the instance's lease id prefix. Default:
	// crypto/rand.Reader.
	Rand io.Reader
	// Logger receives events (rate_limited with reason=concurrency,
	// ratelimit_no_key, ratelimit_store_error). Default: slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes rejections. Default: [Concurrency.WriteError].
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// ErrConcurrency reports that a key has as many requests in flight as its
// limit allows; the error is a *[ConcurrencyError]. It wraps [ErrLimited].
var ErrConcurrency = fmt.Errorf("%w: too many requests in flight", ErrLimited)

// ConcurrencyError is a rejection by a [Concurrency] limiter.
type ConcurrencyError struct {
	Policy     string
	Limit      int
	RetryAfter time.Duration
}

// Error names the policy.
func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("ratelimit: %q has %d requests in flight, retry after %s", e.Policy, e.Limit, e.RetryAfter)
}

// Unwrap returns ErrConcurrency.
func (e *ConcurrencyError) Unwrap() error { return ErrConcurrency }

// Concurrency bounds the requests in flight per key, as Stripe's
// concurrent-request limiter does: a slow endpoint (a search, an export,
// a password hash) cannot be held busy by one caller's parallel requests,
// whatever its rate. A request holds a slot from its admission until its
// handler returns, panics included; a client that leaves frees it as soon
// as the handler returns. Rejections are 429 with Retry-After and a
// problem+json body, logged as event=rate_limited reason=concurrency. It
// is safe for concurrent use by multiple goroutines. The zero value is
// not usable; create one with [NewConcurrency].
type Concurrency struct {
	cfg     ConcurrencyConfig
	mem     *inFlight // the store, when it is the default
	local   *inFlight // fallback for a failing shared store
	seed    maphash.Seed
	ns      []byte
	idBase  string        // this instance's lease id prefix
	seq     atomic.Uint64 // lease ids
	body429 []byte
	release func()
}

// NewConcurrency validates cfg, fills in its defaults and returns a
// Concurrency limiter.
func NewConcurrency(cfg ConcurrencyConfig) (*Concurrency, error) {
	switch {
	case cfg.Key == nil:
		return nil, errors.New("ratelimit: ConcurrencyConfig.Key is required")
	case cfg.Limit <= 0:
		return nil, fmt.Errorf("ratelimit: ConcurrencyConfig.Limit must be positive, got %d", cfg.Limit)
	case cfg.MaxKeys < 0, cfg.Lease < 0, cfg.RetryAfter < 0, cfg.StoreTimeout < 0:
		return nil, errors.New("ratelimit: ConcurrencyConfig.MaxKeys, Lease, RetryAfter and StoreTimeout must not be negative (0 means the default)")
	case cfg.Store != nil && len(cfg.KeySecret) < 32:
		return nil, errors.New("ratelimit: ConcurrencyConfig.KeySecret (32 bytes or more) is required with a shared Store")
	}
	if cfg.Name == "" {
		cfg.Name = "concurrency"
	}
	if _, err := quoteName("ConcurrencyConfig.Name", cfg.Name); err != nil {
		return nil, err
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Lease == 0 {
		cfg.Lease = time.Minute
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 10 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var id [12]byte
	if _, err := io.ReadFull(cfg.Rand, id[:]); err != nil {
		return nil, fmt.Errorf("ratelimit: ConcurrencyConfig.Rand: %w", err)
	}
	c := &Concurrency{
		cfg:     cfg,
		seed:    maphash.MakeSeed(),
		ns:      namespace("concurrency", cfg.Name),
		idBase:  base64.RawURLEncoding.EncodeToString(id[:]) + ":",
		body429: quotaBody(cfg.Name),
	}
	if cfg.Store == nil {
		c.mem = newInFlight(cfg.MaxKeys)
	} else {
		c.local = newInFlight(cfg.MaxKeys)
	}
	release, err := claim(cfg.Store, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: ConcurrencyConfig.Name: %w", err)
	}
	c.release = release
	events.WarnUnobserved(cfg.Logger, "ratelimit")
	return c, nil
}

// Close gives back the Name to a shared Store that is a
// [NamespaceClaimer], and returns nil. It is idempotent.
func (c *Concurrency) Close() error {
	c.release()
	return nil
}

// Ready reports whether the shared Store is ready, as [Limiter.Ready].
// It can be called concurrently with request handling.
func (c *Concurrency) Ready(ctx context.Context) error {
	return storeReady(ctx, c.cfg.Store, "concurrency limiter", c.cfg.Name)
}

// Acquire takes a slot for key. On success it returns the func that gives
// the slot back, to call when the request is done (once is enough; later
// calls do nothing). It returns a *[ConcurrencyError] (errors.Is
// [ErrConcurrency]) when key has Config.Limit requests in flight, and an
// error wrapping [ErrStoreUnavailable] when a shared store fails under
// FailClosed or the caller's context ends during the store call.
func (c *Concurrency) Acquire(ctx context.Context, key string) (release func(), err error) {
	if c.mem != nil {
		return c.acquireLocal(c.mem, key)
	}
	sk := storeKey(c.cfg.KeySecret, c.ns, key)
	id := c.idBase + strconv.FormatUint(c.seq.Add(1), 36)
	sctx, cancel := context.WithTimeout(ctx, c.cfg.StoreTimeout)
	ok, _, err := c.cfg.Store.Acquire(sctx, sk, id, c.cfg.Limit, c.cfg.Lease, c.cfg.Now())
	cancel()
	switch {
	case err == nil && !ok:
		return nil, c.limited()
	case err == nil:
		return c.once(func() {
			// The request is done, or its client gone: release on a
			// context of its own.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.StoreTimeout)
			defer cancel()
			if err := c.cfg.Store.Release(rctx, sk, id); err != nil {
				c.storeEvent(ctx, "release_failed", err) // the lease frees it
			}
		}), nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("%w: %w", ErrStoreUnavailable, cerr)
	}
	switch c.cfg.StorePolicy {
	case FailOpen:
		c.storeEvent(ctx, "fail_open", err)
		return func() {}, nil
	case FailClosed:
		c.storeEvent(ctx, "fail_closed", err)
		return nil, fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	c.storeEvent(ctx, "fallback_local", err)
	return c.acquireLocal(c.local, key)
}

func (c *Concurrency) acquireLocal(m *inFlight, key string) (func(), error) {
	h := maphash.String(c.seed, key)
	if !m.acquire(h, c.cfg.Limit) {
		return nil, c.limited()
	}
	return c.once(func() { m.release(h) }), nil
}

func (c *Concurrency) limited() error {
	return &ConcurrencyError{Policy: c.cfg.Name, Limit: c.cfg.Limit, RetryAfter: c.cfg.RetryAfter}
}

// once returns f made idempotent.
func (c *Concurrency) once(f func()) func() {
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			f()
		}
	}
}

func (c *Concurrency) storeEvent(ctx context.Context, reason string, err error) {
	events.Log(ctx, c.cfg.Logger, slog.LevelWarn, "ratelimit: store failed",
		slog.String("event", "ratelimit_store_error"), slog.String("reason", reason),
		slog.String("policy", c.cfg.Name), slog.String("error", err.Error()),
		slog.Bool("shadow", c.cfg.Shadow && reason == "fail_closed"))
}

// Handler returns next behind the limit: a request reaches next holding a
// slot, which it gives back when next returns or panics. Rejected
// requests are answered by Config.ErrorHandler (default 429 with
// Retry-After and a problem+json body; 400 without a key; 503 when the
// store fails under FailClosed) and logged as event=rate_limited
// reason=concurrency. With ConcurrencyConfig.Shadow, it logs them with
// shadow=true and passes them to next, holding no slot. It panics if next
// is nil.
func (c *Concurrency) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("ratelimit: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := c.cfg.Key(r)
		if err != nil {
			events.Log(r.Context(), c.cfg.Logger, slog.LevelWarn, "ratelimit: no key",
				slog.String("event", "ratelimit_no_key"), slog.String("reason", "no_key"), slog.String("policy", c.cfg.Name),
				slog.Bool("shadow", c.cfg.Shadow && !c.cfg.InsecureAllowNoKey))
			if c.cfg.InsecureAllowNoKey || c.cfg.Shadow {
				next.ServeHTTP(w, r)
				return
			}
			c.reject(w, r, fmt.Errorf("%w: %v", ErrNoKey, err))
			return
		}
		release, err := c.Acquire(r.Context(), key)
		if err != nil {
			if errors.Is(err, ErrConcurrency) {
				events.Log(r.Context(), c.cfg.Logger, slog.LevelWarn, "ratelimit: limited",
					slog.String("event", "rate_limited"), slog.String("reason", "concurrency"),
					slog.String("policy", c.cfg.Name), slog.Bool("shadow", c.cfg.Shadow))
			}
			if c.cfg.Shadow {
				next.ServeHTTP(w, r)
				return
			}
			c.reject(w, r, err)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

func (c *Concurrency) reject(w http.ResponseWriter, r *http.Request, err error) {
	if c.cfg.ErrorHandler != nil {
		c.cfg.ErrorHandler(w, r, err)
		return
	}
	c.WriteError(w, r, err)
}

// WriteError is the default ConcurrencyConfig.ErrorHandler: 429 with
// Retry-After (whole seconds, rounded up) and a problem+json body of type
// quota-exceeded naming the policy; 503 when the store fails under
// FailClosed; 400 for a request without a key.
func (c *Concurrency) WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	if ce, ok := errors.AsType[*ConcurrencyError](err); ok {
		w.Header().Set("Retry-After", strconv.FormatInt(max(ceilSeconds(ce.RetryAfter), 1), 10))
		problem.WriteEncoded(w, http.StatusTooManyRequests, c.body429)
		return
	}
	if errors.Is(err, ErrStoreUnavailable) {
		w.Header().Set("Retry-After", "1")
		problem.Write(w, probDown)
		return
	}
	problem.Write(w, probNoKey)
}

// inFlight is the in-memory count of requests in flight per key hash. It
// holds only keys with requests in flight, at most max of them, and never
// forgets one that has any.
type inFlight struct {
	mu   sync.Mutex
	max  int
	keys map[uint64]int // requires mu
}

func newInFlight(max int) *inFlight {
	return &inFlight{max: max, keys: map[uint64]int{}}
}

// acquire takes a slot of key h, unless it has limit in flight or it is a
// new key and max keys have requests in flight.
func (m *inFlight) acquire(h uint64, limit int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.keys[h]
	if n >= limit || !ok && len(m.keys) >= m.max {
		return false
	}
	m.keys[h] = n + 1
	return true
}

func (m *inFlight) release(h uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.keys[h]; n > 1 {
		m.keys[h] = n - 1
	} else {
		delete(m.keys, h)
	}
}

// len returns the number of keys with requests in flight.
func (m *inFlight) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}
