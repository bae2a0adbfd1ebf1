package ratelimit

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// benchWriter is a ResponseWriter that costs nothing.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

func benchLimiter(b *testing.B, cfg Config) *Limiter {
	b.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	l, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func serveLoop(b *testing.B, h http.Handler, r *http.Request, want int) {
	b.Helper()
	b.ReportAllocs()
	w := &benchWriter{h: make(http.Header, 8)}
	for b.Loop() {
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, r)
	}
	if w.code != want {
		b.Fatalf("status %d, want %d", w.code, want)
	}
}

// BenchmarkAllow is the decision for one in-memory key (DESIGN.md: < 100
// ns, 0 allocations).
func BenchmarkAllow(b *testing.B) {
	b.Run("one_key", func(b *testing.B) {
		l := benchLimiter(b, Config{Limit: Limit{Requests: 1 << 30, Per: time.Second}, Key: KeyByHeader("X-Device-ID")})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = l.Allow(ctx, "device-1")
		}
	})
	b.Run("one_key/parallel", func(b *testing.B) {
		l := benchLimiter(b, Config{Limit: Limit{Requests: 1 << 30, Per: time.Second}, Key: KeyByHeader("X-Device-ID")})
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = l.Allow(ctx, "device-1")
			}
		})
	})
}

// BenchmarkHandler is the middleware with its headers, one key (DESIGN.md:
// < 250 ns, <= 3 allocations), allowed and denied, and with two rules.
func BenchmarkHandler(b *testing.B) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	r := httptest.NewRequest("GET", "/orders", nil)
	r.Header.Set("X-Device-ID", "device-1")
	r.Header.Set("X-Token", "token-1")
	b.Run("allow", func(b *testing.B) {
		l := benchLimiter(b, Config{Limit: Limit{Requests: 1 << 30, Per: time.Second, Burst: 20}, Key: KeyByHeader("X-Device-ID")})
		serveLoop(b, l.Handler(next), r, http.StatusNoContent)
	})
	b.Run("deny", func(b *testing.B) {
		l := benchLimiter(b, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByHeader("X-Device-ID")})
		h := l.Handler(next)
		h.ServeHTTP(httptest.NewRecorder(), r)
		serveLoop(b, h, r, http.StatusTooManyRequests)
	})
	b.Run("two_limiters", func(b *testing.B) {
		// Two limiters in a chain: the inner one adds its members to the
		// fields the outer one set.
		outer := benchLimiter(b, Config{Name: "token", Limit: Limit{Requests: 1 << 30, Per: time.Second, Burst: 20}, Key: KeyByHeader("X-Token")})
		inner := benchLimiter(b, Config{Name: "device", Limit: Limit{Requests: 1 << 30, Per: time.Second, Burst: 20}, Key: KeyByHeader("X-Device-ID")})
		serveLoop(b, outer.Handler(inner.Handler(next)), r, http.StatusNoContent)
	})
	b.Run("two_rules", func(b *testing.B) {
		l := benchLimiter(b, Config{
			Name:  "device",
			Limit: Limit{Requests: 1 << 30, Per: time.Second, Burst: 20},
			Key:   KeyByHeader("X-Device-ID"),
			Rules: []Rule{{Name: "token", Limit: Limit{Requests: 1 << 30, Per: time.Second, Burst: 20}, Key: KeyByHeader("X-Token")}},
		})
		serveLoop(b, l.Handler(next), r, http.StatusNoContent)
	})
}

// BenchmarkFailureBudget is the failure budget's Handler around a handler
// that succeeds.
func BenchmarkFailureBudget(b *testing.B) {
	fb, err := NewFailureBudget(FailureConfig{Key: KeyByHeader("X-Device-ID"), Budget: 5, Per: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	r := httptest.NewRequest("POST", "/login", nil)
	r.Header.Set("X-Device-ID", "device-1")
	serveLoop(b, fb.Handler(next), r, http.StatusOK)
}
