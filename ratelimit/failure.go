package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/apiguard/apiguard/internal/events"
)

// FailureConfig configures a [FailureBudget]. A zero field takes the
// default in its comment.
type FailureConfig struct {
	// Name is the policy name in headers and events, and the budget's
	// namespace in a shared Store (see [Config.Name]). Default:
	// "failures".
	Name string
	// Key names whose failures are counted: an account, an address, a
	// device. Required. A budget keyed by account alone lets anyone lock
	// that account out by failing on purpose; [KeyJoin] keys by account
	// and device or address (see the package documentation).
	Key KeyFunc
	// Budget is how many failures are allowed per Per: the failure that
	// spends it locks the key out, and no more than what is left of it
	// may be attempted at once. Required: > 0.
	Budget int
	// Per is the window of the budget: each failure is forgotten Per/Budget
	// after the last one before it. Required: > 0.
	Per time.Duration
	// Lockout is the first lockout; each further one doubles, up to
	// MaxLockout. Default: Per.
	Lockout time.Duration
	// MaxLockout caps the lockout, and is how long a key's lockouts are
	// remembered after the last one ended. Default: 24 hours.
	MaxLockout time.Duration
	// IsFailure says which statuses of the wrapped handler are failures.
	// Default: 401 and 403.
	IsFailure func(status int) bool
	// ResetOnSuccess clears a key's failures and lockout history when the
	// wrapped handler answers 2xx. Default: false.
	ResetOnSuccess bool
	// AttemptTimeout is how long an attempt may stay in flight (the
	// wrapped handler running) before it is counted as a failure, which
	// frees its place: set it above the handler's longest run. Default:
	// one minute.
	AttemptTimeout time.Duration

	// Store keeps the budgets. Default: an in-memory store of MaxKeys
	// keys ([NewMemoryFailureStore]). A shared store (redisstore's
	// FailureStore) makes several instances enforce one budget, instead
	// of one each; it needs KeySecret.
	Store FailureStore
	// MaxKeys bounds the default store. Default: 100000.
	MaxKeys int
	// Overflow is the default store's policy when it is full of keys that
	// are still restricted. Default: OverflowReject (new keys are refused
	// until there is room).
	Overflow Overflow
	// StorePolicy applies when Store fails or exceeds StoreTimeout.
	// Default ([DefaultStorePolicy]): FailClosed, 503 with Retry-After, as
	// a defence against guessing must not open when its store is away.
	// FallbackLocal gives each instance a budget of its own until the
	// store answers; FailOpen lets attempts through unbudgeted.
	StorePolicy StorePolicy
	// StoreTimeout bounds each call to a Store other than the default.
	// Default: 100ms (longer than a Limiter's: a failure budget guards
	// logins, not every request, and its outages fail closed).
	StoreTimeout time.Duration
	// KeySecret keys the hash that keys are stored under in a shared
	// Store, with the budget's Name. Required with a Store, at least 32
	// bytes.
	KeySecret []byte

	// Shadow decides and logs as enforce mode, but Handler never rejects:
	// for rolling a new budget out ([Config].Shadow). The request of a
	// locked-out key goes to next holding no place, and its outcome is
	// not recorded, as enforce mode would not have run it: failures and
	// lockouts are counted exactly as in enforce mode. Its rate_limited
	// event, and the ratelimit_no_key or FailClosed ratelimit_store_error
	// event of a request passed without a key or in an outage, carry
	// shadow=true. Default: false.
	Shadow bool
	// Now is the clock. Default: with a shared Store, time.Now; otherwise
	// [MonotonicClock]().
	Now func() time.Time
	// Logger receives events (failure_budget_exhausted, rate_limited,
	// ratelimit_no_key, ratelimit_store_error). Default: slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes rejections of locked-out keys. Default: 429 with
	// Retry-After and problem+json, as [Limiter.WriteError] (503 when the
	// store fails under FailClosed, 400 without a key).
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// FailureBudget counts only failures (credential stuffing, PIN and OTP
// guessing) per key, and locks a key out with growing back-off once its
// budget is spent. Each attempt reserves its place in the budget before
// it runs ([FailureBudget.Reserve]), so that guesses sent at once cannot
// all pass a check made before any of them failed: the failures recorded
// plus the attempts in flight never exceed the budget. It is safe for
// concurrent use by multiple goroutines. The zero value is not usable;
// create one with [NewFailureBudget].
//
// It counts 401 and 403 from the wrapped handler, or explicit [Attempt.Fail]
// and [FailureBudget.Fail] calls: Budget failures per Per, the failure that
// spends the budget locks the key out (event=failure_budget_exhausted), and
// each further lockout doubles up to MaxLockout. Of 200 guesses sent at
// once against a budget of 3, 3 reach the handler. A success gives its
// place back; an attempt whose outcome is unknown (the handler panicked, or
// wrote nothing after the client went away, or never settled within
// AttemptTimeout) counts as a failure, since a guess may have been checked.
//
// Keyed by account alone, a budget lets anyone lock that account out by
// failing on purpose. Key it by account and address or device ([KeyJoin])
// to lock out only the client that fails, and bound distributed guessing
// with a second, larger budget per account (or a Limiter per account),
// which an attacker must then fail many times to exhaust.
//
// The default store is bounded (FailureConfig.MaxKeys) and never evicts a
// key that is still restricted (failures not refilled, a lockout, attempts
// in flight), so junk failures on other keys never hand a victim a fresh
// budget; only the lockout history of keys whose budget is whole again may
// go. When it is full of restricted keys, new keys follow
// FailureConfig.Overflow: OverflowReject (default) refuses their attempts
// (fail closed, for new keys only) until a key stops being restricted,
// OverflowShare makes them share one budget. A shared FailureStore
// (redisstore's) makes several instances enforce one budget instead of one
// each; when it fails, FailureConfig.StorePolicy applies (FailClosed by
// default).
type FailureBudget struct {
	cfg     FailureConfig
	limit   Limit
	policy  FailurePolicy
	fmt     *Limiter // for the answers' fields
	store   FailureStore
	shared  bool                // store is Config.Store
	mem     *memoryFailureStore // the default store, or the local fallback
	ns      []byte
	release func()
}

// NewFailureBudget validates cfg, fills in its defaults and returns a
// FailureBudget.
func NewFailureBudget(cfg FailureConfig) (*FailureBudget, error) {
	if cfg.Key == nil {
		return nil, errors.New("ratelimit: FailureConfig.Key is required")
	}
	if cfg.Budget <= 0 {
		return nil, fmt.Errorf("ratelimit: FailureConfig.Budget is required and must be positive, got %d", cfg.Budget)
	}
	if cfg.Per < 0 {
		return nil, fmt.Errorf("ratelimit: FailureConfig.Per must not be negative, got %s", cfg.Per)
	}
	if cfg.Per == 0 {
		return nil, errors.New("ratelimit: FailureConfig.Per is required: the window must be positive")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Lockout", cfg.Lockout}, {"MaxLockout", cfg.MaxLockout}, {"AttemptTimeout", cfg.AttemptTimeout}, {"StoreTimeout", cfg.StoreTimeout}} {
		if d.v < 0 {
			return nil, fmt.Errorf("ratelimit: FailureConfig.%s must not be negative, got %s (0 means the default)", d.name, d.v)
		}
	}
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: FailureConfig.MaxKeys must not be negative, got %d (0 means 100000)", cfg.MaxKeys)
	}
	if cfg.Store != nil && len(cfg.KeySecret) < 32 {
		return nil, errors.New("ratelimit: FailureConfig.KeySecret (32 bytes or more) is required with a shared Store")
	}
	if cfg.Name == "" {
		cfg.Name = "failures"
	}
	if _, err := quoteName("FailureConfig.Name", cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Lockout == 0 {
		cfg.Lockout = cfg.Per
	}
	if cfg.MaxLockout == 0 {
		cfg.MaxLockout = 24 * time.Hour
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = time.Minute
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 100 * time.Millisecond
	}
	if cfg.StorePolicy == DefaultStorePolicy {
		cfg.StorePolicy = FailClosed
	}
	if cfg.IsFailure == nil {
		cfg.IsFailure = func(s int) bool { return s == http.StatusUnauthorized || s == http.StatusForbidden }
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100_000
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
	lim := Limit{Requests: cfg.Budget, Per: cfg.Per}
	f, err := New(Config{Name: cfg.Name, Limit: lim, Key: cfg.Key, Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	b := &FailureBudget{
		cfg: cfg, limit: lim, fmt: f,
		policy: FailurePolicy{Budget: cfg.Budget, Per: cfg.Per, Lockout: cfg.Lockout, MaxLockout: cfg.MaxLockout, Lease: cfg.AttemptTimeout},
		mem:    newMemoryFailureStore(cfg.MaxKeys, cfg.Overflow),
		ns:     namespace("failure", cfg.Name),
	}
	b.store, b.shared = b.mem, cfg.Store != nil
	if b.shared {
		b.store = cfg.Store
	}
	if b.release, err = claim(cfg.Store, cfg.Name); err != nil {
		return nil, fmt.Errorf("ratelimit: FailureConfig.Name: %w", err)
	}
	events.WarnUnobserved(b.cfg.Logger, "ratelimit")
	return b, nil
}

// Close gives back the budget's Name to its shared Store when that Store
// is a [NamespaceClaimer] (so that a new FailureBudget may take the
// name), and returns nil. That claim is all a FailureBudget holds: it
// starts no goroutine, and without a shared Store Close does nothing.
// Close is idempotent; the budget must not be used after it.
func (b *FailureBudget) Close() error {
	b.release()
	return nil
}

// Ready reports whether the budget's store is ready, as
// [Limiter.Ready] does: nil with the default in-memory store; otherwise
// the FailureStore's Ready(context.Context) error when it has one,
// wrapped with [ErrStoreUnavailable] and the budget's Name. While the
// store is not ready, attempts follow FailureConfig.StorePolicy (by
// default refused with 503). It can be called concurrently with request
// handling.
func (b *FailureBudget) Ready(ctx context.Context) error {
	return storeReady(ctx, b.cfg.Store, "failure budget", b.cfg.Name)
}

// storeKey is key as the shared store knows it.
func (b *FailureBudget) storeKey(key string) string {
	if !b.shared {
		return key
	}
	return storeKey(b.cfg.KeySecret, b.ns, key)
}

// storeFailed logs a failed store call and says which store takes over:
// the local one (FallbackLocal), none (FailOpen: ok), or none and an
// error (FailClosed).
func (b *FailureBudget) storeFailed(ctx context.Context, op string, err error) (local bool, out error) {
	reason := "fail_closed"
	switch b.cfg.StorePolicy {
	case FallbackLocal:
		reason, local = "fallback_local", true
	case FailOpen:
		reason = "fail_open"
	default:
		out = fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
	}
	events.Log(ctx, b.cfg.Logger, slog.LevelWarn, "ratelimit: store failed",
		slog.String("event", "ratelimit_store_error"), slog.String("reason", reason),
		slog.String("policy", b.cfg.Name), slog.String("op", op), slog.String("error", err.Error()),
		slog.Bool("shadow", b.cfg.Shadow && out != nil && op == "reserve"))
	return local, out
}

// Attempt is one attempt that [FailureBudget.Reserve] let start: it holds
// a place in its key's budget until it is settled by Fail, Succeed or
// Release (the first of them counts; later calls do nothing). An attempt
// never settled is counted as a failure once FailureConfig.AttemptTimeout
// has passed. An Attempt is used by one goroutine.
type Attempt struct {
	b      *FailureBudget
	key    string       // the caller's key, for the local fallback
	store  FailureStore // where the place is held; nil when none is (FailOpen)
	skey   string       // key as store knows it
	ticket int64
	done   bool
}

// Reserve reserves an attempt of key: it returns an *Attempt to settle
// once the outcome is known, or an error: a *[LimitError] (matching
// [ErrLimited]) with RetryAfter when the key is locked out or has as many
// attempts in flight as budget left, or [ErrStoreUnavailable] when a
// shared store fails under FailClosed. Use it to guard a check that is
// not an HTTP handler:
//
//	a, err := budget.Reserve(ctx, "otp:"+user)
//	if err != nil {
//		return err
//	}
//	defer a.Fail(ctx) // counts unless Succeed ran first: a panic is a failure
//	if !otpValid(user, code) {
//		return errWrongCode
//	}
//	a.Succeed(ctx)
func (b *FailureBudget) Reserve(ctx context.Context, key string) (*Attempt, error) {
	a := &Attempt{}
	if err := b.reserveInto(ctx, key, a); err != nil {
		return nil, err
	}
	return a, nil
}

// reserveInto is Reserve into a caller's Attempt (the Handler's lives on
// its stack).
func (b *FailureBudget) reserveInto(ctx context.Context, key string, a *Attempt) error {
	*a = Attempt{b: b, key: key, store: b.store, skey: b.storeKey(key)}
	ok, ticket, _, wait, err := b.reserve(ctx, a, b.cfg.Now())
	if err != nil {
		return err
	}
	if !ok {
		return &LimitError{Policy: b.cfg.Name, Limit: b.limit, RetryAfter: wait}
	}
	a.ticket = ticket
	return nil
}

// reserve calls the store's Reserve for a, with the outage policy; it
// sets a.store to the store that holds the place.
func (b *FailureBudget) reserve(ctx context.Context, a *Attempt, now time.Time) (bool, int64, int, time.Duration, error) {
	if !b.shared {
		return b.store.Reserve(ctx, a.skey, b.policy, now)
	}
	sctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
	ok, ticket, remaining, wait, err := b.store.Reserve(sctx, a.skey, b.policy, now)
	cancel()
	if err == nil {
		return ok, ticket, remaining, wait, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		// The caller is gone (a client that hung up) or out of time: the
		// store did not fail, so its outage policy does not apply, or a
		// client could have its guesses checked against a local budget,
		// or none, at will. Nothing runs.
		return false, 0, 0, 0, fmt.Errorf("%w: %w", ErrStoreUnavailable, cerr)
	}
	local, err := b.storeFailed(ctx, "reserve", err)
	switch {
	case err != nil:
		return false, 0, 0, 0, err
	case local:
		a.store, a.skey = b.mem, a.key
		return b.mem.Reserve(ctx, a.key, b.policy, now)
	default:
		a.store = nil
		return true, 0, b.cfg.Budget, 0, nil
	}
}

// Fail settles the attempt as a failure, and returns the key's Decision:
// not Allowed, with RetryAfter, when this failure spent the budget and
// locked the key out.
func (a *Attempt) Fail(ctx context.Context) Decision {
	return a.settle(ctx, true, false)
}

// Succeed settles the attempt as a success: its place is given back, and
// with ResetOnSuccess the key's failures and lockout history are
// cleared.
func (a *Attempt) Succeed(ctx context.Context) {
	a.settle(ctx, false, a.b.cfg.ResetOnSuccess)
}

// Release gives the attempt's place back without recording anything: for
// an outcome that says nothing about the guess (a malformed request
// refused before it was checked).
func (a *Attempt) Release(ctx context.Context) {
	a.settle(ctx, false, false)
}

func (a *Attempt) settle(ctx context.Context, failed, reset bool) Decision {
	b := a.b
	d := Decision{Allowed: true, Policy: b.cfg.Name, Limit: b.limit}
	if a.done {
		return d
	}
	a.done = true
	if a.store == nil {
		return d
	}
	d.Remaining, d.RetryAfter = b.settle(ctx, a, failed, reset)
	d.Allowed = d.RetryAfter == 0
	return d
}

// settle calls the Settle of a's store, logs a lockout it caused, and
// returns the attempts left and the lockout (0 if none). A settlement
// outlives the request's cancellation: a client that goes away does not
// void its failure. When a shared store fails, a reserved attempt's
// failure is lost here, but its place is counted as a failure when its
// lease lapses; a failure without a reservation goes to the local store
// under FallbackLocal.
func (b *FailureBudget) settle(ctx context.Context, a *Attempt, failed, reset bool) (int, time.Duration) {
	now := b.cfg.Now()
	store, skey := a.store, a.skey
	sctx := ctx // the in-memory store ignores it
	if store != FailureStore(b.mem) {
		ctx = context.WithoutCancel(ctx)
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, b.cfg.StoreTimeout)
		defer cancel()
	}
	remaining, lockout, strikes, err := store.Settle(sctx, skey, a.ticket, failed, reset, b.policy, now)
	if err != nil {
		local, _ := b.storeFailed(ctx, "settle", err)
		if !local || a.ticket != 0 {
			return 0, 0
		}
		remaining, lockout, strikes, _ = b.mem.Settle(ctx, a.key, 0, failed, reset, b.policy, now)
	}
	if lockout > 0 {
		events.Log(ctx, b.cfg.Logger, slog.LevelWarn, "ratelimit: failure budget exhausted",
			slog.String("event", "failure_budget_exhausted"), slog.String("reason", "lockout"),
			slog.String("policy", b.cfg.Name), slog.Int("strikes", strikes), slog.Duration("lockout", lockout))
	}
	return remaining, lockout
}

// Check reports whether key may start an attempt now: Allowed is false
// while the key is locked out or has no attempt left, with RetryAfter
// until it may. It reserves nothing, so a decision to let an attempt
// through must come from [FailureBudget.Reserve] (or Handler), not from
// Check followed by the attempt: attempts sent at once would all pass.
func (b *FailureBudget) Check(ctx context.Context, key string) Decision {
	now := b.cfg.Now()
	d := Decision{Allowed: true, Policy: b.cfg.Name, Limit: b.limit}
	store, skey := b.store, b.storeKey(key)
	var remaining int
	var wait time.Duration
	var err error
	if b.shared {
		sctx, cancel := context.WithTimeout(ctx, b.cfg.StoreTimeout)
		remaining, wait, err = store.Peek(sctx, skey, b.policy, now)
		cancel()
		if err != nil {
			local, out := b.storeFailed(ctx, "peek", err)
			switch {
			case out != nil:
				d.Allowed, d.RetryAfter = false, time.Second
				return d
			case local:
				remaining, wait, _ = b.mem.Peek(ctx, key, b.policy, now)
			default:
				d.Remaining = b.cfg.Budget
				return d
			}
		}
	} else {
		remaining, wait, _ = store.Peek(ctx, skey, b.policy, now)
	}
	d.Remaining = remaining
	if remaining < 1 {
		d.Allowed, d.RetryAfter = false, wait
	}
	return d
}

// Fail records one failure of key without a reservation. When it spends
// the budget the key is locked out (Lockout, doubling with each lockout
// up to MaxLockout) and the returned Decision is not Allowed.
func (b *FailureBudget) Fail(ctx context.Context, key string) Decision {
	a := &Attempt{b: b, key: key, store: b.store, skey: b.storeKey(key)}
	return a.Fail(ctx)
}

// Succeed records a success of key: with ResetOnSuccess, its failures and
// lockout history are cleared.
func (b *FailureBudget) Succeed(ctx context.Context, key string) {
	if !b.cfg.ResetOnSuccess {
		return
	}
	a := &Attempt{b: b, key: key, store: b.store, skey: b.storeKey(key)}
	a.Succeed(ctx)
}

// Handler returns next behind the failure budget. Each request reserves
// an attempt of its key first: a locked-out key, or one with as many
// attempts in flight as budget left, is answered 429 without reaching
// next. Then next runs and its status settles the attempt: a failure
// (IsFailure) is recorded, a 2xx gives the place back (and with
// ResetOnSuccess clears the key), any other status gives it back. If next
// panics, or writes nothing while the client has gone away, the outcome
// is unknown and counted as a failure: a guess may have been checked.
// With FailureConfig.Shadow, a request it would answer 429 (or 400, or
// 503) is logged with shadow=true and passed to next, its outcome not
// recorded. It panics if next is nil.
func (b *FailureBudget) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("ratelimit: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		key, err := b.cfg.Key(r)
		if err != nil {
			events.Log(ctx, b.cfg.Logger, slog.LevelWarn, "ratelimit: no key",
				slog.String("event", "ratelimit_no_key"), slog.String("reason", "no_key"),
				slog.String("policy", b.cfg.Name), slog.Bool("shadow", b.cfg.Shadow))
			if b.cfg.Shadow {
				next.ServeHTTP(w, r)
				return
			}
			b.reject(w, r, ErrNoKey)
			return
		}
		var a Attempt
		if err := b.reserveInto(ctx, key, &a); err != nil {
			if errors.Is(err, ErrLimited) {
				events.Log(ctx, b.cfg.Logger, slog.LevelWarn, "ratelimit: locked out",
					slog.String("event", "rate_limited"), slog.String("reason", "lockout"), slog.String("policy", b.cfg.Name),
					slog.Bool("shadow", b.cfg.Shadow))
			}
			if b.cfg.Shadow {
				next.ServeHTTP(w, r) // holds no place: nothing to settle
				return
			}
			b.reject(w, r, err)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		defer a.Fail(ctx) // next panicked: settled as a failure; otherwise a no-op
		next.ServeHTTP(sw, r)
		switch status := sw.status(); {
		case sw.code == 0 && ctx.Err() != nil:
			a.Fail(ctx)
		case b.cfg.IsFailure(status):
			a.Fail(ctx)
		case status >= 200 && status < 300:
			a.Succeed(ctx)
		default:
			a.Release(ctx)
		}
	})
}

func (b *FailureBudget) reject(w http.ResponseWriter, r *http.Request, err error) {
	if b.cfg.ErrorHandler != nil {
		b.cfg.ErrorHandler(w, r, err)
		return
	}
	b.fmt.WriteError(w, r, err)
}

// Len returns the number of keys the default in-memory store holds (the
// local fallback's, with a shared Store).
func (b *FailureBudget) Len() int {
	return b.mem.len()
}

// statusWriter records the status the wrapped handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush keeps streaming handlers working.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
