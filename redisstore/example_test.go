package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// testTimeout bounds the store calls of the tests and examples that expect
// Redis to answer: generous, for -race on a busy two-core machine, where a
// call that timed out would fail a test that means something else, or,
// behind a FallbackLocal limiter, admit a request silently.
const testTimeout = 10 * time.Second

// Two instances of an API share one limit through Redis: three requests
// per minute for a device, whichever instance serves them.
func ExampleNewLimitStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	// Keys are stored as keyed hashes; every instance needs the same secret
	// (from your secret store, not from code).
	keySecret := bytes.Repeat([]byte{9}, 32)
	instance := func() *ratelimit.Limiter {
		l, err := ratelimit.New(ratelimit.Config{
			Name:      "device",
			Limit:     ratelimit.Limit{Requests: 3, Per: time.Minute},
			Key:       ratelimit.KeyByHeader("X-Device-ID"),
			Store:     redisstore.NewLimitStore(rdb, redisstore.Options{Prefix: "example:limit:", Timeout: testTimeout}),
			KeySecret: keySecret,
			// A Redis that does not answer in time is an error (503 from
			// the Handler), not a decision of this instance alone
			// (FallbackLocal, the default), which would let each instance
			// admit a burst of its own. The timeouts are generous so that
			// the example holds on a busy machine; the defaults (10ms for
			// the limiter, 100ms for the store) suit a production Redis.
			StorePolicy:  ratelimit.FailClosed,
			StoreTimeout: testTimeout,
			Logger:       slog.New(slog.DiscardHandler),
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

// A readiness check: the stores, and the limiters and budgets on them,
// say whether Redis answers a PING within Options.Timeout.
func ExampleLimitStore_Ready() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	store := redisstore.NewLimitStore(rdb, redisstore.Options{Timeout: testTimeout})
	l, err := ratelimit.New(ratelimit.Config{
		Name:      "device",
		Limit:     ratelimit.Limit{Requests: 3, Per: time.Minute},
		Key:       ratelimit.KeyByHeader("X-Device-ID"),
		Store:     store,
		KeySecret: bytes.Repeat([]byte{9}, 32),
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	// Register l.Ready (or store.Ready) with your readiness endpoint.
	fmt.Println(store.Ready(context.Background()), l.Ready(context.Background()))
	// Output: <nil> <nil>
}

// A signed request accepted by one instance is a replay on the other: the
// nonce is recorded in Redis, not in either process.
func ExampleNewReplayStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	secret := bytes.Repeat([]byte{7}, 32)
	instance := func() *signing.Verifier {
		v, err := signing.New(signing.Config{
			Keys:        signing.StaticKeys(map[string][]byte{"device-42": secret}),
			ReplayStore: redisstore.NewReplayStore(rdb, redisstore.Options{Prefix: "example:replay:", Timeout: testTimeout}),
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

// A Redis that refuses connections costs each request one error, not a
// timeout: after two failures the shared breaker opens, and the stores on
// that client fail at once without dialling until a probe, one cool-down
// later, finds Redis back. The client is configured as the package doc
// recommends.
func ExampleNewBreaker() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	down := l.Addr().String() // nothing listens here once closed
	l.Close()

	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{down},
		ContextTimeoutEnabled: true, // the call's deadline bounds the network
		MaxRetries:            -1,   // the stores' commands are not idempotent
		DialerRetries:         1,    // one dial per call, not five
		DialTimeout:           100 * time.Millisecond,
		PoolTimeout:           100 * time.Millisecond,
	})
	defer rdb.Close()
	opts := redisstore.Options{
		Breaker: redisstore.NewBreaker(redisstore.BreakerConfig{Failures: 2, CoolDown: time.Minute}),
	}
	replays := redisstore.NewReplayStore(rdb, opts) // one breaker for
	limits := redisstore.NewLimitStore(rdb, opts)   // every store on rdb

	ctx := context.Background()
	for i := range 2 {
		_, err := replays.Use(ctx, fmt.Sprint("jti-", i), time.Now().Add(time.Minute))
		fmt.Printf("replay call %d: unavailable=%v breaker open=%v\n", i+1,
			errors.Is(err, redisstore.ErrUnavailable), errors.Is(err, redisstore.ErrBreakerOpen))
	}
	fmt.Println("breaker:", opts.Breaker.State())
	_, _, _, err = limits.Take(ctx, "device-42", time.Second, 10, time.Now())
	fmt.Printf("limit call: unavailable=%v breaker open=%v\n",
		errors.Is(err, redisstore.ErrUnavailable), errors.Is(err, redisstore.ErrBreakerOpen))
	// Output:
	// replay call 1: unavailable=true breaker open=false
	// replay call 2: unavailable=true breaker open=false
	// breaker: open
	// limit call: unavailable=true breaker open=true
}

// A middleware that makes several store calls for one request gives the
// request one deadline: each call ends at the earlier of that deadline and
// Options.Timeout, so a slow Redis costs the request its budget once, and
// a call made after the budget is spent fails without touching Redis.
func ExampleOptions_oneDeadline() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	attests := redisstore.NewAttestStore(rdb, redisstore.Options{Prefix: "example:deadline:", Timeout: testTimeout})

	handler := func(w http.ResponseWriter, r *http.Request) {
		// One budget for every store call of this request (generous, so
		// that the example holds on a busy machine).
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := attests.Swap(ctx, "user-42", []byte(`{"seen":1}`), time.Hour); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		_, _, found, err := attests.Lookup(ctx, "key-1")
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "key enrolled: %v", found)
	}
	rec := httptest.NewRecorder()
	handler(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Println(rec.Code, rec.Body.String())

	// A request whose budget was spent before its store calls (a slow
	// upload, say) fails at once.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	_, _, _, err := attests.Lookup(ctx, "key-1")
	fmt.Println(errors.Is(err, redisstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded))
	// Output:
	// 200 key enrolled: false
	// true true
}
