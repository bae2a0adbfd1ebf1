package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/signing"
	"github.com/redis/go-redis/v9"
)

// exampleRedis is the address of the redis-server TestMain starts for the
// examples.
var exampleRedis string

func TestMain(m *testing.M) { os.Exit(redistest.Main(m, &exampleRedis)) }

// Two instances of an API share one limit through Redis: three requests
// per minute for a device, whichever instance serves them.
func ExampleNewLimitStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true})
	defer rdb.Close()
	// Keys are stored as keyed hashes; every instance needs the same secret
	// (from your secret store, not from code).
	keySecret := bytes.Repeat([]byte{9}, 32)
	instance := func() *ratelimit.Limiter {
		l, err := ratelimit.New(ratelimit.Config{
			Name:      "device",
			Limit:     ratelimit.Limit{Requests: 3, Per: time.Minute},
			Key:       ratelimit.KeyByHeader("X-Device-ID"),
			Store:     redisstore.NewLimitStore(rdb, redisstore.Options{Prefix: "example:limit:"}),
			KeySecret: keySecret,
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			panic(err)
		}
		return l
	}
	a, b := instance(), instance()
	for i, l := range []*ratelimit.Limiter{a, b, a, b} {
		d, err := l.Allow(context.Background(), "device-42")
		if err != nil {
			panic(err)
		}
		fmt.Printf("request %d on instance %c: allowed=%v remaining=%d\n", i+1, "ABAB"[i], d.Allowed, d.Remaining)
	}
	// Output:
	// request 1 on instance A: allowed=true remaining=2
	// request 2 on instance B: allowed=true remaining=1
	// request 3 on instance A: allowed=true remaining=0
	// request 4 on instance B: allowed=false remaining=0
}

// A signed request accepted by one instance is a replay on the other: the
// nonce is recorded in Redis, not in either process.
func ExampleNewReplayStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true})
	defer rdb.Close()
	secret := bytes.Repeat([]byte{7}, 32)
	instance := func() *signing.Verifier {
		v, err := signing.New(signing.Config{
			Keys:        signing.StaticKeys(map[string][]byte{"device-42": secret}),
			ReplayStore: redisstore.NewReplayStore(rdb, redisstore.Options{Prefix: "example:replay:"}),
			Logger:      slog.New(slog.DiscardHandler),
		})
		if err != nil {
			panic(err)
		}
		return v
	}
	a, b := instance(), instance()
	r, _ := http.NewRequest("POST", "https://api.example.com/v1/pay", bytes.NewReader([]byte(`{"amount":100}`)))
	if err := signing.NewSigner("device-42", secret).Sign(r); err != nil {
		panic(err)
	}
	deliver := func(v *signing.Verifier) error {
		sr := httptest.NewRequest("POST", "https://api.example.com/v1/pay", bytes.NewReader([]byte(`{"amount":100}`)))
		sr.Header = r.Header.Clone()
		_, err := v.Verify(sr)
		return err
	}
	fmt.Println("instance A:", deliver(a))
	err := deliver(b)
	fmt.Println("instance B, same request:", errors.Is(err, signing.ErrReplay))
	// Output:
	// instance A: <nil>
	// instance B, same request: true
}
