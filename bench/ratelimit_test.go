package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/go-chi/httprate"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	ulule "github.com/ulule/limiter/v3"
	ululestd "github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	ulumem "github.com/ulule/limiter/v3/drivers/store/memory"
	"golang.org/x/time/rate"
)

const deviceHeader = "X-Device-ID"

func deviceKey(r *http.Request) (string, error) { return r.Header.Get(deviceHeader), nil }

// limiters returns the three middleware under test for requests per
// window, all keyed by the same header.
func limiters(b *testing.B, requests int, window time.Duration) map[string]http.Handler {
	b.Helper()
	// A bucket of 20 that refills at the rate: the headers then carry the
	// small numbers real limits have.
	ours, err := ratelimit.New(ratelimit.Config{
		Limit:  ratelimit.Limit{Requests: requests, Per: window, Burst: min(requests, 20)},
		Key:    ratelimit.KeyByHeader(deviceHeader),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ul := ululestd.NewMiddleware(ulule.New(ulumem.NewStore(), ulule.Rate{Period: window, Limit: int64(requests)}),
		ululestd.WithKeyGetter(func(r *http.Request) string { return r.Header.Get(deviceHeader) }))
	return map[string]http.Handler{
		"apiguard":      ours.Handler(bare),
		"httprate":      httprate.LimitBy(requests, window, deviceKey)(bare),
		"ulule_limiter": ul.Handler(bare),
	}
}

var limiterOrder = []string{"apiguard", "httprate", "ulule_limiter"}

func requestsFor(keys int) []*http.Request {
	out := make([]*http.Request, keys)
	for i := range out {
		out[i] = httptest.NewRequest("GET", "/orders", nil)
		out[i].Header.Set(deviceHeader, fmt.Sprintf("device-%d", i))
	}
	return out
}

func runLimited(b *testing.B, h http.Handler, reqs []*http.Request, wantCode int) {
	b.ReportAllocs()
	w := &discardWriter{h: make(http.Header, 8)}
	i := 0
	for b.Loop() {
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, reqs[i%len(reqs)])
		i++
	}
	// Check the mix after timing: every library must have seen the same.
	clear(w.h)
	w.code = 0
	h.ServeHTTP(w, reqs[0])
	if w.code != wantCode {
		b.Fatalf("status %d, want %d", w.code, wantCode)
	}
}

// BenchmarkRateLimit compares the middleware with go-chi/httprate and
// ulule/limiter (memory store), one hot key and 10k keys, all allowed and
// all denied (buckets drained before timing), and the decision alone with
// raw rate.Limiter.Allow as the floor.
func BenchmarkRateLimit(b *testing.B) {
	b.Run("decision/floor_rate.Limiter.Allow", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Inf, 1)
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
	// The same with a finite rate, so that the bucket arithmetic runs
	// (rate.Inf returns before it): what any real limit costs.
	b.Run("decision/floor_rate.Limiter.Allow_finite", func(b *testing.B) {
		lim := rate.NewLimiter(1<<30, 20)
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
	b.Run("decision/apiguard_Allow", func(b *testing.B) {
		l, _ := ratelimit.New(ratelimit.Config{Limit: ratelimit.Limit{Requests: 1 << 30, Per: time.Second},
			Key: ratelimit.KeyByHeader(deviceHeader), Logger: slog.New(slog.DiscardHandler)})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = l.Allow(ctx, "device-1")
		}
	})
	b.Run("decision/ulule_limiter_Get", func(b *testing.B) {
		l := ulule.New(ulumem.NewStore(), ulule.Rate{Period: time.Second, Limit: 1 << 30})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = l.Get(ctx, "device-1")
		}
	})
	b.Run("middleware/bare", func(b *testing.B) { runLimited(b, bare, requestsFor(1), 204) })
	for _, keys := range []int{1, 10_000} {
		allow := limiters(b, 1<<30, time.Second)
		deny := limiters(b, 1, time.Hour)
		reqs := requestsFor(keys)
		for _, name := range limiterOrder {
			b.Run(fmt.Sprintf("middleware/allow/keys=%d/%s", keys, name), func(b *testing.B) {
				runLimited(b, allow[name], reqs, 204)
			})
		}
		for _, name := range limiterOrder {
			h := deny[name]
			for _, r := range reqs { // drain every bucket first
				h.ServeHTTP(&discardWriter{h: make(http.Header)}, r)
			}
			b.Run(fmt.Sprintf("middleware/deny/keys=%d/%s", keys, name), func(b *testing.B) {
				runLimited(b, h, reqs, http.StatusTooManyRequests)
			})
		}
	}
}

// BenchmarkRateLimitRedis compares the Redis store (GCRA, one script per
// decision) with go-redis/redis_rate on the same local redis-server.
func BenchmarkRateLimitRedis(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	ours, err := ratelimit.New(ratelimit.Config{
		Limit:        ratelimit.Limit{Requests: 1 << 30, Per: time.Second},
		Key:          ratelimit.KeyByHeader(deviceHeader),
		Store:        redisstore.NewLimitStore(rdb, redisstore.Options{Timeout: time.Second}),
		KeySecret:    make([]byte, 32),
		StoreTimeout: time.Second,
		StorePolicy:  ratelimit.FailClosed,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	rr := redis_rate.NewLimiter(rdb)
	b.Run("apiguard_LimitStore", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d, err := ours.Allow(ctx, "device-1"); err != nil || !d.Allowed {
				b.Fatal(err, d)
			}
		}
	})
	b.Run("redis_rate", func(b *testing.B) {
		b.ReportAllocs()
		lim := redis_rate.PerSecond(1 << 30)
		for b.Loop() {
			if res, err := rr.Allow(ctx, "device-1", lim); err != nil || res.Allowed != 1 {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRateLimitMemory measures the heap held per key by the default
// in-memory store (reported as bytes/key).
func BenchmarkRateLimitMemory(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l, _ := ratelimit.New(ratelimit.Config{Limit: ratelimit.Limit{Requests: 10, Per: time.Second},
			Key: ratelimit.KeyByHeader(deviceHeader), MaxKeys: n, Logger: slog.New(slog.DiscardHandler)})
		for i := range n {
			_, _ = l.Allow(ctx, fmt.Sprintf("device-%d", i))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/key")
		runtime.KeepAlive(l)
	}
}
