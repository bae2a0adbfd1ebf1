package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
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

// deviceHeader is in canonical form, so that Header.Get allocates nothing.
const deviceHeader = "X-Device-Id"

func deviceKey(r *http.Request) (string, error) { return r.Header.Get(deviceHeader), nil }

// newLimiter returns the middleware of one library for requests per
// window, keyed by the device header; apiguard's store holds maxKeys (0:
// its default, 100,000).
func newLimiter(b *testing.B, name string, requests int, window time.Duration, maxKeys int) http.Handler {
	b.Helper()
	switch name {
	case "apiguard":
		// A bucket of 20 that refills at the rate: the headers then carry
		// the small numbers real limits have.
		ours, err := ratelimit.New(ratelimit.Config{
			Limit:   ratelimit.Limit{Requests: requests, Per: window, Burst: min(requests, 20)},
			Key:     ratelimit.KeyByHeader(deviceHeader),
			MaxKeys: maxKeys,
			Logger:  slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		return ours.Handler(bare)
	case "httprate":
		return httprate.LimitBy(requests, window, deviceKey)(bare)
	case "ulule_limiter":
		ul := ululestd.NewMiddleware(ulule.New(ulumem.NewStore(), ulule.Rate{Period: window, Limit: int64(requests)}),
			ululestd.WithKeyGetter(func(r *http.Request) string { return r.Header.Get(deviceHeader) }))
		return ul.Handler(bare)
	}
	b.Fatalf("no limiter %q", name)
	return nil
}

var limiterOrder = []string{"apiguard", "httprate", "ulule_limiter"}

// scaleKeys are the numbers of active keys of the scaling table.
var scaleKeys = []int{1, 100_000, 1_000_000}

// keySource serves n keys in turn through one request whose key header is
// rewritten before each: the request is in cache, as one a server has
// just parsed is, and so are the keys (slices of one string, read in
// order), while each limiter's state for the key is not once there are
// many keys. Every limiter and the floor read the same requests.
type keySource struct {
	r    *http.Request
	hv   []string // r.Header[deviceHeader]
	keys []string
}

func newKeySource(n int) *keySource {
	var sb strings.Builder
	ends := make([]int, n)
	for i := range n {
		sb.WriteString("device-")
		sb.WriteString(strconv.Itoa(i))
		ends[i] = sb.Len()
	}
	all, start := sb.String(), 0
	keys := make([]string, n)
	for i, end := range ends {
		keys[i], start = all[start:end], end
	}
	r := httptest.NewRequest("GET", "/orders", nil)
	r.Header.Set(deviceHeader, keys[0])
	return &keySource{r: r, hv: r.Header[http.CanonicalHeaderKey(deviceHeader)], keys: keys}
}

// serveAll serves every key once through h: a new limiter's buckets are
// made (and, for a limit of one, drained) before timing.
func (s *keySource) serveAll(h http.Handler) {
	w := &discardWriter{h: make(http.Header, 8)}
	for _, k := range s.keys {
		clear(w.h)
		s.hv[0] = k
		h.ServeHTTP(w, s.r)
	}
}

// cpuMeter reports the benchmark goroutine's CPU time per iteration as
// cpu-ns/op, beside ns/op (wall time): on a machine shared with other
// work, time the process spends waiting for a core counts in ns/op only.
// Start it just before the loop; the goroutine stays on its thread until
// stop.
type cpuMeter struct {
	start int64
	ok    bool
}

func startCPU() cpuMeter {
	runtime.LockOSThread()
	t, ok := threadCPU()
	return cpuMeter{start: t, ok: ok}
}

func (m cpuMeter) stop(b *testing.B, n int) {
	t, ok := threadCPU()
	runtime.UnlockOSThread()
	if m.ok && ok && n > 0 {
		b.ReportMetric(float64(t-m.start)/float64(n), "cpu-ns/op")
	}
}

// runKeys serves the source's keys in turn through h, and checks after
// timing that the first key gets wantCode.
func runKeys(b *testing.B, h http.Handler, src *keySource, wantCode int) {
	b.ReportAllocs()
	w := &discardWriter{h: make(http.Header, 8)}
	i, n := 0, 0
	cpu := startCPU()
	for b.Loop() {
		clear(w.h)
		w.code = 0
		src.hv[0] = src.keys[i]
		h.ServeHTTP(w, src.r)
		if i++; i == len(src.keys) {
			i = 0
		}
		n++
	}
	cpu.stop(b, n)
	clear(w.h)
	w.code = 0
	src.hv[0] = src.keys[0]
	h.ServeHTTP(w, src.r)
	if w.code != wantCode {
		b.Fatalf("status %d, want %d", w.code, wantCode)
	}
}

// keyedBare is the floor of the scaling table: a bare handler that reads
// the key, as every limiter must.
var keyedBare = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(deviceHeader) == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
})

// BenchmarkRateLimit compares the middleware with go-chi/httprate and
// ulule/limiter (memory store) at 1, 100,000 and 1,000,000 active keys,
// all allowed and all denied (every bucket made, or drained, before
// timing), beside middleware/bare/keys=N, the floor (overhead = middleware
// minus bare at the same N); and the decision alone, with raw
// rate.Limiter.Allow as the floor. apiguard's MaxKeys is the number of
// keys (at least its default): the store at its configured capacity.
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
	b.Run("decision/ulule_limiter_Get", func(b *testing.B) {
		l := ulule.New(ulumem.NewStore(), ulule.Rate{Period: time.Second, Limit: 1 << 30})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = l.Get(ctx, "device-1")
		}
	})
	for _, keys := range scaleKeys {
		src := newKeySource(keys)
		b.Run(fmt.Sprintf("decision/apiguard_Allow/keys=%d", keys), func(b *testing.B) {
			l, _ := ratelimit.New(ratelimit.Config{Limit: ratelimit.Limit{Requests: 1 << 30, Per: time.Second},
				Key: ratelimit.KeyByHeader(deviceHeader), MaxKeys: max(keys, 100_000), Logger: slog.New(slog.DiscardHandler)})
			ctx := context.Background()
			for _, k := range src.keys {
				_, _ = l.Allow(ctx, k)
			}
			b.ReportAllocs()
			i, n := 0, 0
			cpu := startCPU()
			for b.Loop() {
				_, _ = l.Allow(ctx, src.keys[i])
				if i++; i == len(src.keys) {
					i = 0
				}
				n++
			}
			cpu.stop(b, n)
		})
		// One dependent read of a random cache line in as much memory as
		// apiguard's store holds for the keys (48 bytes a key): what a
		// memory miss costs on this machine, in this run.
		b.Run(fmt.Sprintf("floor/memory_miss/keys=%d", keys), func(b *testing.B) {
			const line = 8 // uint64s in a 64-byte line
			lines := max(keys*48/64, 1)
			next := make([]uint64, lines*line)
			perm := rand.Perm(lines)
			for i, p := range perm {
				next[p*line] = uint64(perm[(i+1)%lines] * line)
			}
			j, n := uint64(0), 0
			cpu := startCPU()
			for b.Loop() {
				j = next[j]
				n++
			}
			cpu.stop(b, n)
			runtime.KeepAlive(j)
		})
		b.Run(fmt.Sprintf("middleware/bare/keys=%d", keys), func(b *testing.B) { runKeys(b, keyedBare, src, 204) })
		for _, mode := range []struct {
			name     string
			requests int
			window   time.Duration
			code     int
		}{{"allow", 1 << 30, time.Second, 204}, {"deny", 1, time.Hour, http.StatusTooManyRequests}} {
			for _, name := range limiterOrder {
				h := newLimiter(b, name, mode.requests, mode.window, max(keys, 100_000))
				src.serveAll(h)
				b.Run(fmt.Sprintf("middleware/%s/keys=%d/%s", mode.name, keys, name), func(b *testing.B) {
					runKeys(b, h, src, mode.code)
				})
			}
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

// BenchmarkRateLimitMemory measures the heap each middleware holds per
// key after serving 1, 100,000 and 1,000,000 distinct keys (bytes/key:
// heap in use after, less heap in use before making the limiter, over the
// keys; the keys themselves are made before). apiguard's MaxKeys is the
// number of keys, at least its default.
func BenchmarkRateLimitMemory(b *testing.B) {
	for _, keys := range scaleKeys {
		src := newKeySource(keys)
		for _, name := range limiterOrder {
			b.Run(fmt.Sprintf("keys=%d/%s", keys, name), func(b *testing.B) {
				for b.Loop() {
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					h := newLimiter(b, name, 10, time.Second, max(keys, 100_000))
					src.serveAll(h)
					runtime.GC()
					runtime.ReadMemStats(&after)
					b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(keys), "bytes/key")
					runtime.KeepAlive(h)
				}
			})
		}
	}
}
