package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// FailureConfig configures a [FailureBudget]. A zero field takes the
// default in its comment.
type FailureConfig struct {
	// Name is the policy name in headers and events. Default: "failures".
	Name string
	// Key names whose failures are counted: an account, an address, a
	// device. Required.
	Key KeyFunc
	// Budget is how many failures are allowed per Per before the key is
	// locked out. Required: > 0.
	Budget int
	// Per is the window of the budget. Required: > 0.
	Per time.Duration
	// Lockout is the first lockout; each further one doubles, up to
	// MaxLockout. Default: Per.
	Lockout time.Duration
	// MaxLockout caps the lockout. Default: 24 hours.
	MaxLockout time.Duration
	// IsFailure says which statuses of the wrapped handler are failures.
	// Default: 401 and 403.
	IsFailure func(status int) bool
	// ResetOnSuccess clears a key's failures and lockout history when the
	// wrapped handler answers 2xx. Default: false.
	ResetOnSuccess bool
	// MaxKeys bounds the keys tracked. Default: 100000.
	MaxKeys int
	// Now is the clock. Default: [MonotonicClock]().
	Now func() time.Time
	// Logger receives events (failure_budget_exhausted, rate_limited).
	// Default: slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes rejections of locked-out keys. Default: 429 with
	// Retry-After and problem+json, as [Limiter.WriteError].
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// FailureBudget counts only failures (credential stuffing, PIN and OTP
// guessing) per key, and locks a key out with growing back-off once its
// budget is spent. It is safe for concurrent use by multiple goroutines.
// The zero value is not usable; create one with [NewFailureBudget].
type FailureBudget struct {
	cfg   FailureConfig
	limit Limit
	fmt   *Limiter // for the answers' fields

	mu   sync.Mutex
	keys *simplelru.LRU[string, *failureEntry]
}

type failureEntry struct {
	lim         *rate.Limiter
	lockedUntil time.Time
	strikes     int
}

// NewFailureBudget validates cfg, fills in its defaults and returns a
// FailureBudget.
func NewFailureBudget(cfg FailureConfig) (*FailureBudget, error) {
	if cfg.Key == nil {
		return nil, errors.New("ratelimit: FailureConfig.Key is required")
	}
	if cfg.Budget <= 0 || cfg.Per <= 0 {
		return nil, errors.New("ratelimit: FailureConfig.Budget and FailureConfig.Per are required and must be positive")
	}
	if cfg.Lockout < 0 || cfg.MaxLockout < 0 || cfg.MaxKeys < 0 {
		return nil, errors.New("ratelimit: FailureConfig durations and sizes must not be negative")
	}
	if cfg.Name == "" {
		cfg.Name = "failures"
	}
	if cfg.Lockout == 0 {
		cfg.Lockout = cfg.Per
	}
	if cfg.MaxLockout == 0 {
		cfg.MaxLockout = 24 * time.Hour
	}
	if cfg.IsFailure == nil {
		cfg.IsFailure = func(s int) bool { return s == http.StatusUnauthorized || s == http.StatusForbidden }
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = MonotonicClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys, err := simplelru.NewLRU[string, *failureEntry](cfg.MaxKeys+1, nil)
	if err != nil {
		return nil, err
	}
	lim := Limit{Requests: cfg.Budget, Per: cfg.Per}
	f, err := New(Config{Name: cfg.Name, Limit: lim, Key: cfg.Key, Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	return &FailureBudget{cfg: cfg, limit: lim, fmt: f, keys: keys}, nil
}

// entry returns key's entry, creating it; requires b.mu held. When the
// table is full it evicts the least recently seen key that is not locked
// out (or, if the few oldest all are, the oldest).
func (b *FailureBudget) entry(key string, now time.Time) *failureEntry {
	if e, ok := b.keys.Get(key); ok {
		return e
	}
	for tries := 0; b.keys.Len() >= b.cfg.MaxKeys; tries++ {
		k, e, _ := b.keys.GetOldest()
		if tries < 4 && now.Before(e.lockedUntil) {
			b.keys.Get(k) // keep a locked key: move it to the front
			continue
		}
		b.keys.RemoveOldest()
	}
	e := &failureEntry{lim: rate.NewLimiter(b.limit.rate(), b.cfg.Budget)}
	e.lim.SetLimitAt(now, b.limit.rate())
	b.keys.Add(key, e)
	return e
}

// Check reports whether key may try now: Allowed is false while the key
// is locked out, with RetryAfter until the lockout ends.
func (b *FailureBudget) Check(_ context.Context, key string) Decision {
	now := b.cfg.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	d := Decision{Allowed: true, Policy: b.cfg.Name, Limit: b.limit}
	e, ok := b.keys.Peek(key)
	if !ok {
		d.Remaining = b.cfg.Budget
		return d
	}
	d.Remaining = max(int(e.lim.TokensAt(now)), 0)
	if now.Before(e.lockedUntil) {
		d.Allowed, d.Remaining, d.RetryAfter = false, 0, e.lockedUntil.Sub(now)
	}
	return d
}

// Fail records one failure of key. When the budget is spent the key is
// locked out (Lockout, doubling with each lockout up to MaxLockout) and
// the returned Decision is not Allowed.
func (b *FailureBudget) Fail(ctx context.Context, key string) Decision {
	now := b.cfg.Now()
	b.mu.Lock()
	e := b.entry(key, now)
	d := Decision{Allowed: true, Policy: b.cfg.Name, Limit: b.limit}
	locked := false
	if !e.lim.AllowN(now, 1) {
		e.strikes++
		lockout := b.cfg.Lockout
		for i := 1; i < e.strikes && lockout < b.cfg.MaxLockout; i++ {
			lockout *= 2
		}
		lockout = min(lockout, b.cfg.MaxLockout)
		e.lockedUntil = now.Add(lockout)
		d.Allowed, d.RetryAfter = false, lockout
		locked = true
	}
	d.Remaining = max(int(e.lim.TokensAt(now)), 0)
	strikes := e.strikes
	b.mu.Unlock()
	if locked {
		b.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ratelimit: failure budget exhausted",
			slog.String("event", "failure_budget_exhausted"), slog.String("reason", "lockout"),
			slog.String("policy", b.cfg.Name), slog.Int("strikes", strikes), slog.Duration("lockout", d.RetryAfter))
	}
	return d
}

// Succeed records a success of key: with ResetOnSuccess, its failures and
// lockout history are cleared.
func (b *FailureBudget) Succeed(_ context.Context, key string) {
	if !b.cfg.ResetOnSuccess {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys.Remove(key)
}

// Handler returns next behind the failure budget: a locked-out key is
// answered 429 without reaching next; otherwise next runs, and a failure
// status (IsFailure) counts against the key. It panics if next is nil.
func (b *FailureBudget) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("ratelimit: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := b.cfg.Key(r)
		if err != nil {
			b.reject(w, r, ErrNoKey)
			return
		}
		if d := b.Check(r.Context(), key); !d.Allowed {
			b.cfg.Logger.LogAttrs(r.Context(), slog.LevelWarn, "ratelimit: locked out",
				slog.String("event", "rate_limited"), slog.String("reason", "lockout"), slog.String("policy", b.cfg.Name))
			b.reject(w, r, &LimitError{Policy: b.cfg.Name, Limit: b.limit, RetryAfter: d.RetryAfter})
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		switch status := sw.status(); {
		case b.cfg.IsFailure(status):
			b.Fail(r.Context(), key)
		case status >= 200 && status < 300:
			b.Succeed(r.Context(), key)
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

// Len returns the number of keys tracked.
func (b *FailureBudget) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keys.Len()
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
