package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/internal/events"
)

// FetchConfig configures a [Fetcher]. Every field is required.
type FetchConfig[T any] struct {
	// Name is what errors call the document: "app check key set" (… not
	// loaded, … stale).
	Name string
	// Message is what log records call it: "app check key set" (attest: …
	// loaded, attest: … fetch failed).
	Message string
	// Event prefixes the events logged: Event_refresh (reason loaded) and
	// Event_error (reason fetch).
	Event string
	// Fetch prefixes the errors of a fetch: "fetch app check jwks".
	Fetch string
	// URL is fetched with GET; "" never fetches (the owner calls Set).
	URL    string
	Client *http.Client
	// MaxBytes bounds the document: a larger one is a fetch error.
	MaxBytes int64
	// Parse reads a fetched document; an error keeps the current one.
	Parse func(body []byte) (T, error)
	// Size is logged with each load ("keys", 3).
	Size func(T) slog.Attr
	// DefaultMaxAge is how long a document is used before a background
	// refresh when its answer had no Cache-Control max-age; a max-age is
	// clamped to [MinRefresh, MaxMaxAge].
	DefaultMaxAge, MaxMaxAge time.Duration
	// MinRefresh spaces fetches (see Spacing: Every and Base MinRefresh,
	// Limit 16 MinRefresh); FetchTimeout bounds one; past MaxStale after
	// its load a document is not used at all.
	MinRefresh, FetchTimeout, MaxStale time.Duration
	Now                                func() time.Time
	Logger                             *slog.Logger
}

// Fetched is one loaded document.
type Fetched[T any] struct {
	Value  T
	Loaded time.Time     // by FetchConfig.Now
	MaxAge time.Duration // refreshed in the background after this
}

// Fetcher holds a vendor's current document (a key set, a revocation
// status list) and fetches the next one: one fetch at a time, spaced and
// backed off by a [Spacing], under the Fetcher's lifetime rather than a
// request's, so that a client that hangs up cancels it for nobody. It is
// safe for concurrent use; Close waits for a fetch under way.
type Fetcher[T any] struct {
	cfg FetchConfig[T]
	cur atomic.Pointer[Fetched[T]]
	ctx context.Context // ends at Close: bounds fetches
	wg  sync.WaitGroup

	mu       sync.Mutex
	cancel   context.CancelFunc
	closed   bool
	inflight chan struct{} // closed when the running fetch ends
	lastErr  error
	space    Spacing
}

// NewFetcher returns a Fetcher that has loaded nothing yet.
func NewFetcher[T any](cfg FetchConfig[T]) *Fetcher[T] {
	f := &Fetcher[T]{cfg: cfg, space: Spacing{Every: cfg.MinRefresh, Base: cfg.MinRefresh, Limit: 16 * cfg.MinRefresh}}
	f.ctx, f.cancel = context.WithCancel(context.Background()) // #nosec G118 -- Close calls f.cancel; gosec does not follow it through the generic type
	return f
}

// Set installs v, loaded now, used for maxAge before a refresh.
func (f *Fetcher[T]) Set(v T, maxAge time.Duration) {
	f.cur.Store(&Fetched[T]{Value: v, Loaded: f.cfg.Now(), MaxAge: maxAge})
}

// Current returns the document unless none was loaded or it is older
// than MaxStale at now; one past its max-age starts a background refresh
// when the spacing allows.
func (f *Fetcher[T]) Current(now time.Time) *Fetched[T] {
	d := f.cur.Load()
	if d == nil || now.Sub(d.Loaded) > f.cfg.MaxStale {
		return nil
	}
	if now.Sub(d.Loaded) >= d.MaxAge {
		f.start(now)
	}
	return d
}

// Await starts a fetch when the spacing allows one and waits on the fetch
// under way until it ends, wait passes (0: no bound) or ctx ends.
func (f *Fetcher[T]) Await(ctx context.Context, now time.Time, wait time.Duration) {
	ch := f.start(now)
	if ch == nil {
		return
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
	case <-timeout:
	case <-ctx.Done():
	}
}

// Missing says why there is no document to use: "… not loaded" or "…
// stale".
func (f *Fetcher[T]) Missing() error {
	if f.cur.Load() != nil {
		return errors.New(f.cfg.Name + " stale")
	}
	return errors.New(f.cfg.Name + " not loaded")
}

// Unavailable is the outage error at now: cause (nil: none) followed by
// the last fetch error, and as RetryAfter the time until the next fetch
// (a second while one is under way: it may answer any moment).
func (f *Fetcher[T]) Unavailable(now time.Time, cause error) *UnavailableError {
	f.mu.Lock()
	defer f.mu.Unlock()
	retry := f.space.RetryAfter(now)
	if f.inflight != nil {
		retry = time.Second
	}
	switch {
	case cause == nil:
		cause = f.lastErr
	case f.lastErr != nil:
		cause = fmt.Errorf("%w: %w", cause, f.lastErr)
	}
	return Unavailable(retry, cause)
}

// Age reports the document's age since its load (by Now), whether one
// was ever loaded, and the error of the last fetch (nil when it
// succeeded).
func (f *Fetcher[T]) Age() (age time.Duration, loaded bool, lastErr error) {
	d := f.cur.Load()
	f.mu.Lock()
	lastErr = f.lastErr
	f.mu.Unlock()
	if d == nil {
		return 0, false, lastErr
	}
	return f.cfg.Now().Sub(d.Loaded), true, lastErr
}

// Close stops fetching and waits for a fetch under way. It is idempotent.
func (f *Fetcher[T]) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
}

// start starts a fetch unless there is no URL, one is under way (whose
// channel it returns) or the spacing forbids one now (nil).
func (f *Fetcher[T]) start(now time.Time) chan struct{} {
	if f.cfg.URL == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inflight != nil {
		return f.inflight
	}
	if f.closed || !f.space.Allowed(now) {
		return nil
	}
	ch := make(chan struct{})
	f.inflight = ch
	attempt := f.space.Begin()
	f.space.Next = now.Add(f.cfg.MinRefresh) // until the outcome decides
	f.wg.Add(1)
	go f.fetch(ch, attempt, now)
	return ch
}

// fetch runs one fetch and records its outcome.
func (f *Fetcher[T]) fetch(done chan struct{}, attempt uint64, start time.Time) {
	defer f.wg.Done()
	d, err := f.download()
	now := f.cfg.Now()
	f.mu.Lock()
	f.lastErr = err
	if err == nil {
		d.Loaded = now
		f.cur.Store(d)
		f.space.Succeeded(attempt, start)
	} else {
		f.space.Failed(attempt, now)
	}
	retry := f.space.RetryAfter(now)
	f.inflight = nil
	close(done)
	f.mu.Unlock()
	if err != nil {
		events.Log(f.ctx, f.cfg.Logger, slog.LevelWarn, "attest: "+f.cfg.Message+" fetch failed",
			slog.String("event", f.cfg.Event+"_error"), slog.String("reason", "fetch"),
			slog.String("error", err.Error()), slog.Duration("retry_in", retry))
		return
	}
	events.Log(f.ctx, f.cfg.Logger, slog.LevelInfo, "attest: "+f.cfg.Message+" loaded",
		slog.String("event", f.cfg.Event+"_refresh"), slog.String("reason", "loaded"), f.cfg.Size(d.Value))
}

func (f *Fetcher[T]) download() (*Fetched[T], error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.cfg.Fetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: status %d", f.cfg.Fetch, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.cfg.Fetch, err)
	}
	if int64(len(body)) > f.cfg.MaxBytes {
		return nil, fmt.Errorf("%s: over %d bytes", f.cfg.Fetch, f.cfg.MaxBytes)
	}
	v, err := f.cfg.Parse(body)
	if err != nil {
		return nil, err
	}
	d := &Fetched[T]{Value: v, MaxAge: f.cfg.DefaultMaxAge}
	if age, ok := CacheMaxAge(resp.Header.Get("Cache-Control")); ok {
		d.MaxAge = min(max(age, f.cfg.MinRefresh), f.cfg.MaxMaxAge)
	}
	return d, nil
}
