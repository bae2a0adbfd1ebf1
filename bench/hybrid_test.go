package bench

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// scriptCalls is the number of EVAL and EVALSHA commands rdb's server has
// run (INFO commandstats): the round trips of the three limiters.
func scriptCalls(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for line := range strings.SplitSeq(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_eval:") || strings.HasPrefix(line, "cmdstat_evalsha:") {
			_, rest, _ := strings.Cut(line, "calls=")
			v, _, _ := strings.Cut(rest, ",")
			c, _ := strconv.ParseInt(v, 10, 64)
			n += c
		}
	}
	return n
}

// BenchmarkRateLimitHybrid compares the per-request cost of one hot key on
// the hybrid store (redisstore.LeaseStore: leases spent locally), on the
// plain Redis store (redisstore.LimitStore: one script per decision) and
// on go-redis/redis_rate, all on the same local redis-server, one
// goroutine and in parallel. rtt/op is the Redis round trips per request,
// counted by Redis. Quote the ratios of the three, not the ns/op.
func BenchmarkRateLimitHybrid(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	b.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	// A limit no run reaches, as in BenchmarkRateLimitRedis: every request
	// is admitted, so each store pays its full path.
	const perSecond = 1 << 30
	limiter := func(b *testing.B, store ratelimit.Store) *ratelimit.Limiter {
		l, err := ratelimit.New(ratelimit.Config{
			Limit:        ratelimit.Limit{Requests: perSecond, Per: time.Second},
			Key:          ratelimit.KeyByHeader(deviceHeader),
			Store:        store,
			KeySecret:    make([]byte, 32),
			StoreTimeout: time.Second,
			StorePolicy:  ratelimit.FailClosed,
			Logger:       slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	opts := redisstore.Options{Timeout: time.Second}
	lease := redisstore.NewLeaseStore(rdb, opts, redisstore.LeaseConfig{})
	b.Cleanup(func() { _ = lease.Close() })
	plain := redisstore.NewLimitStore(rdb, opts)
	onLease, onPlain := limiter(b, lease), limiter(b, plain)
	rr := redis_rate.NewLimiter(rdb)
	now := time.Now()
	cases := []struct {
		name  string
		allow func() bool
	}{
		{"apiguard_LeaseStore", func() bool {
			d, err := onLease.Allow(ctx, "device-1")
			return err == nil && d.Allowed
		}},
		{"apiguard_LimitStore", func() bool {
			d, err := onPlain.Allow(ctx, "device-1")
			return err == nil && d.Allowed
		}},
		{"redis_rate", func() bool {
			res, err := rr.Allow(ctx, "device-1", redis_rate.PerSecond(perSecond))
			return err == nil && res.Allowed == 1
		}},
		// The stores alone, without the Limiter's keyed hash and timeout.
		{"store_only_LeaseStore", func() bool {
			ok, _, _, err := lease.Take(ctx, "store-only", time.Second/perSecond, perSecond, now)
			return err == nil && ok
		}},
		{"store_only_LimitStore", func() bool {
			ok, _, _, err := plain.Take(ctx, "store-only", time.Second/perSecond, perSecond, now)
			return err == nil && ok
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			before := scriptCalls(b, rdb)
			for b.Loop() {
				if !c.allow() {
					b.Fatal("rejected")
				}
			}
			b.ReportMetric(float64(scriptCalls(b, rdb)-before)/float64(b.N), "rtt/op")
		})
		b.Run(c.name+"_parallel", func(b *testing.B) {
			b.ReportAllocs()
			before := scriptCalls(b, rdb)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !c.allow() {
						b.Error("rejected")
						return
					}
				}
			})
			b.ReportMetric(float64(scriptCalls(b, rdb)-before)/float64(b.N), "rtt/op")
		})
	}
}
