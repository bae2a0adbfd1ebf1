package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var _ func(http.Handler) http.Handler = (*Concurrency)(nil).Handler

func newConcurrency(t *testing.T, cfg ConcurrencyConfig) *Concurrency {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = KeyByHeader("X-User")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := NewConcurrency(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func userRequest(ctx context.Context, user string) *http.Request {
	r := httptest.NewRequestWithContext(ctx, "GET", "/search", nil)
	if user != "" {
		r.Header.Set("X-User", user)
	}
	return r
}

// gated is a handler that counts the requests inside it, records the most
// at once, signals each entry, and holds them until gate closes.
type gated struct {
	inside, most atomic.Int64
	entered      chan struct{}
	gate         chan struct{}
}

func newGated(n int) *gated {
	return &gated{entered: make(chan struct{}, n), gate: make(chan struct{})}
}

func (g *gated) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := g.inside.Add(1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	g.entered <- struct{}{}
	<-g.gate
	g.inside.Add(-1)
	w.WriteHeader(http.StatusNoContent)
}

// One caller opens 200 parallel requests on a slow endpoint limited to 5
// in flight: exactly 5 are inside at once, the other 195 are rejected
// with 429, and once those 5 finish their slots serve again.
func TestConcurrencyParallelFloodExact(t *testing.T) {
	const limit, n = 5, 200
	c := newConcurrency(t, ConcurrencyConfig{Limit: limit})
	g := newGated(n)
	h := c.Handler(g)
	codes := make(chan int, n)
	for range n {
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, userRequest(context.Background(), "alice"))
			codes <- rec.Code
		}()
	}
	// The 5 inside are held: the first 195 answers are all rejections.
	for range n - limit {
		require.Equal(t, http.StatusTooManyRequests, <-codes)
	}
	require.EqualValues(t, limit, g.inside.Load())
	close(g.gate)
	for range limit {
		require.Equal(t, http.StatusNoContent, <-codes)
	}
	require.EqualValues(t, limit, g.most.Load(), "never more than 5 inside at once")
	require.Zero(t, c.mem.len(), "every slot released")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, userRequest(context.Background(), "alice"))
	require.Equal(t, http.StatusNoContent, rec.Code, "slots serve again")
}

func TestConcurrencyReleases(t *testing.T) {
	inside := make(chan struct{}) // the client_leaves request is in
	tests := []struct {
		name string
		// serve runs one request that holds alice's only slot through
		// h, whose handler is next, and ends it its own way.
		serve func(t *testing.T, h http.Handler)
		next  func(w http.ResponseWriter, r *http.Request)
	}{
		{
			name: "handler_panics",
			next: func(w http.ResponseWriter, r *http.Request) { panic("boom") },
			serve: func(t *testing.T, h http.Handler) {
				require.PanicsWithValue(t, "boom", func() {
					h.ServeHTTP(httptest.NewRecorder(), userRequest(context.Background(), "alice"))
				})
			},
		},
		{
			name: "client_leaves",
			next: func(w http.ResponseWriter, r *http.Request) {
				close(inside)
				<-r.Context().Done()
			},
			serve: func(t *testing.T, h http.Handler) {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					h.ServeHTTP(httptest.NewRecorder(), userRequest(ctx, "alice"))
				}()
				<-inside
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, userRequest(context.Background(), "alice"))
				require.Equal(t, http.StatusTooManyRequests, rec.Code, "the slot is held while the client waits")
				cancel() // the client leaves
				<-done
			},
		},
		{
			name: "request_done",
			next: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
			serve: func(t *testing.T, h http.Handler) {
				h.ServeHTTP(httptest.NewRecorder(), userRequest(context.Background(), "alice"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConcurrency(t, ConcurrencyConfig{Limit: 1})
			tt.serve(t, c.Handler(http.HandlerFunc(tt.next)))
			require.Zero(t, c.mem.len())
			release, err := c.Acquire(context.Background(), "alice")
			require.NoError(t, err, "the slot was given back")
			release()
		})
	}
}

// An attacker opens requests under a flood of distinct keys: the
// in-memory store holds at most MaxKeys keys, each with a request in
// flight; it never forgets one of them to make room, and holds nothing
// once they finish.
func TestConcurrencyDistinctKeyFloodBounded(t *testing.T) {
	const maxKeys = 10
	c := newConcurrency(t, ConcurrencyConfig{Limit: 1, MaxKeys: maxKeys})
	var releases []func()
	for i := range maxKeys {
		release, err := c.Acquire(context.Background(), fmt.Sprint("key-", i))
		require.NoError(t, err)
		releases = append(releases, release)
	}
	for i := range 1000 {
		_, err := c.Acquire(context.Background(), fmt.Sprint("flood-", i))
		require.ErrorIs(t, err, ErrConcurrency, "full: a new key is rejected")
	}
	require.Equal(t, maxKeys, c.mem.len())
	_, err := c.Acquire(context.Background(), "key-3")
	require.ErrorIs(t, err, ErrConcurrency, "key-3 is still in flight: never forgotten")
	for _, r := range releases {
		r()
		r() // idempotent
	}
	require.Zero(t, c.mem.len())
	release, err := c.Acquire(context.Background(), "flood-1")
	require.NoError(t, err)
	release()
}

func TestConcurrencyRejection(t *testing.T) {
	var logs bytes.Buffer
	c := newConcurrency(t, ConcurrencyConfig{Name: "search", Limit: 1, RetryAfter: 1500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	release, err := c.Acquire(context.Background(), "alice")
	require.NoError(t, err)
	defer release()
	reached := false
	h := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, userRequest(context.Background(), "alice"))
	require.False(t, reached)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.Equal(t, "2", rec.Header().Get("Retry-After"), "whole seconds, rounded up")
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.Contains(t, rec.Body.String(), `"violated-policies":["search"]`)
	require.Contains(t, logs.String(), "event=rate_limited reason=concurrency policy=search")
	require.NotContains(t, logs.String(), "alice", "the key is never logged")

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, userRequest(context.Background(), ""))
	require.Equal(t, http.StatusBadRequest, rec.Code, "no key: rejected (fail closed)")

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, userRequest(context.Background(), "bob"))
	require.True(t, reached, "another key is not limited")

	_, err = c.Acquire(context.Background(), "alice")
	var ce *ConcurrencyError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, ConcurrencyError{Policy: "search", Limit: 1, RetryAfter: 1500 * time.Millisecond}, *ce)
	require.ErrorIs(t, err, ErrLimited)
}

func TestNewConcurrencyConfig(t *testing.T) {
	key := KeyByHeader("X-User")
	tests := []struct {
		name string
		give ConcurrencyConfig
		want string
	}{
		{"no_key", ConcurrencyConfig{Limit: 1}, "Key is required"},
		{"no_limit", ConcurrencyConfig{Key: key}, "Limit must be positive"},
		{"negative_lease", ConcurrencyConfig{Key: key, Limit: 1, Lease: -time.Second}, "must not be negative"},
		{"store_without_secret", ConcurrencyConfig{Key: key, Limit: 1, Store: &flakyInFlight{}}, "KeySecret"},
		{"unprintable_name", ConcurrencyConfig{Key: key, Limit: 1, Name: "a\nb"}, "printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewConcurrency(tt.give)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// flakyInFlight is a shared ConcurrencyStore that is down, or, when up,
// counts in memory (one instance).
type flakyInFlight struct {
	mu    sync.Mutex
	down  bool
	slots map[string]map[string]bool
}

func (s *flakyInFlight) Acquire(_ context.Context, key, id string, limit int, _ time.Duration, _ time.Time) (bool, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return false, 0, errors.New("store down")
	}
	if s.slots == nil {
		s.slots = map[string]map[string]bool{}
	}
	if s.slots[key] == nil {
		s.slots[key] = map[string]bool{}
	}
	if len(s.slots[key]) >= limit {
		return false, len(s.slots[key]), nil
	}
	s.slots[key][id] = true
	return true, len(s.slots[key]), nil
}

func (s *flakyInFlight) Release(_ context.Context, key, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("store down")
	}
	delete(s.slots[key], id)
	return nil
}

// A shared store that is down: each StorePolicy, and the store's slots
// given back when it is up.
func TestConcurrencyStorePolicy(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	tests := []struct {
		name   string
		policy StorePolicy
		// want is what two requests of one key in flight get.
		want  [2]error
		event string
	}{
		{"fallback_local", DefaultStorePolicy, [2]error{nil, ErrConcurrency}, "reason=fallback_local"},
		{"fail_open", FailOpen, [2]error{nil, nil}, "reason=fail_open"},
		{"fail_closed", FailClosed, [2]error{ErrStoreUnavailable, ErrStoreUnavailable}, "reason=fail_closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			store := &flakyInFlight{down: true}
			c := newConcurrency(t, ConcurrencyConfig{Limit: 1, Store: store, KeySecret: secret, StorePolicy: tt.policy,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			for i, want := range tt.want {
				release, err := c.Acquire(context.Background(), "alice")
				if want == nil {
					require.NoError(t, err, "request %d", i)
					defer release()
				} else {
					require.ErrorIs(t, err, want, "request %d", i)
				}
			}
			require.Contains(t, logs.String(), "event=ratelimit_store_error "+tt.event)
		})
	}
	t.Run("store_up_slots_shared_and_released", func(t *testing.T) {
		store := &flakyInFlight{}
		c := newConcurrency(t, ConcurrencyConfig{Limit: 1, Store: store, KeySecret: secret})
		release, err := c.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		_, err = c.Acquire(context.Background(), "alice")
		require.ErrorIs(t, err, ErrConcurrency)
		release()
		for k, ids := range store.slots {
			require.Empty(t, ids, "released in the store")
			require.NotContains(t, k, "alice", "the store sees a keyed hash")
			require.False(t, strings.Contains(k, "alice"))
		}
	})
	t.Run("client_gone_is_not_an_outage", func(t *testing.T) {
		c := newConcurrency(t, ConcurrencyConfig{Limit: 1, Store: &flakyInFlight{down: true}, KeySecret: secret, StorePolicy: FailOpen})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Acquire(ctx, "alice")
		require.ErrorIs(t, err, ErrStoreUnavailable, "a client that hung up takes no fail-open slot")
	})
}
