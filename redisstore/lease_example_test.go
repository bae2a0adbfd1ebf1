package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
)

// A busy API on several instances: each instance leases a share of a
// key's tokens and spends it locally, so a hot key costs a fraction of a
// round trip per request. Close gives back what it did not spend.
func ExampleNewLeaseStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	// Leases of up to floor(0.05 × 6000 / 8) = 37 tokens: in any window the
	// 8 instances admit at most 5 % of the burst (300) more than the
	// plain LimitStore would.
	store := redisstore.NewLeaseStore(rdb, redisstore.Options{Prefix: "example:lease:", Timeout: testTimeout},
		redisstore.LeaseConfig{Instances: 8, MaxExcess: 0.05})
	defer store.Close()
	l, err := ratelimit.New(ratelimit.Config{
		Name:         "api",
		Limit:        ratelimit.Limit{Requests: 6000, Per: time.Minute},
		Key:          ratelimit.KeyByHeader("X-Device-ID"),
		Store:        store,
		KeySecret:    bytes.Repeat([]byte{9}, 32),
		StoreTimeout: testTimeout,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	allowed := 0
	for range 1000 {
		if d, err := l.Allow(context.Background(), "device-42"); err == nil && d.Allowed {
			allowed++
		}
	}
	fmt.Println("allowed:", allowed)
	// Output:
	// allowed: 1000
}

// Requests in flight per user, shared by every instance: a slot is a
// lease in Redis that frees itself if its instance dies.
func ExampleNewConcurrencyStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	store := redisstore.NewConcurrencyStore(rdb, redisstore.Options{Prefix: "example:cc:", Timeout: testTimeout})
	a, err := ratelimit.NewConcurrency(ratelimit.ConcurrencyConfig{
		Name:         "export",
		Limit:        2,
		Key:          ratelimit.KeyByHeader("X-User"),
		Store:        store,
		KeySecret:    bytes.Repeat([]byte{9}, 32),
		Lease:        10 * time.Minute, // longer than the longest export
		StorePolicy:  ratelimit.FailClosed,
		StoreTimeout: testTimeout,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	first, _ := a.Acquire(context.Background(), "alice")
	second, _ := a.Acquire(context.Background(), "alice")
	_, err = a.Acquire(context.Background(), "alice")
	fmt.Println("third export:", errors.Is(err, ratelimit.ErrConcurrency))
	first()
	third, err := a.Acquire(context.Background(), "alice")
	fmt.Println("after one finished:", err == nil)
	second()
	third()
	// Output:
	// third export: true
	// after one finished: true
}
