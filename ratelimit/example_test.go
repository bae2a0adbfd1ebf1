package ratelimit_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/apiguard/apiguard/ratelimit"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ExampleNew() {
	l, err := ratelimit.New(ratelimit.Config{
		Name:   "api",
		Limit:  ratelimit.Limit{Requests: 100, Per: time.Minute, Burst: 20},
		Key:    ratelimit.KeyByIP(),
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("GET", "/orders", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("RateLimit-Policy"), rec.Header().Get("RateLimit"))
	// Output: 200 "api";q=100;w=60 "api";r=19;t=1
}

// A client bursts past its limit: the burst passes, then 429 with the
// time to wait.
func ExampleLimiter_Handler_burst() {
	l, _ := ratelimit.New(ratelimit.Config{
		Name:   "login",
		Limit:  ratelimit.Limit{Requests: 10, Per: time.Minute, Burst: 3},
		Key:    ratelimit.KeyByIP(),
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for range 5 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		fmt.Println(rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("RateLimit"))
	}
	// Output:
	// 200  "login";r=2;t=6
	// 200  "login";r=1;t=6
	// 200  "login";r=0;t=6
	// 429 6 "login";r=0;t=6
	// 429 6 "login";r=0;t=6
}

// An attacker rotates X-Forwarded-For to get a fresh bucket per request.
// With no trusted proxies configured the header is ignored.
func ExampleKeyByIP_spoofedForwardedFor() {
	l, _ := ratelimit.New(ratelimit.Config{
		Limit:  ratelimit.Limit{Requests: 1, Per: time.Hour},
		Key:    ratelimit.KeyByIP(),
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, forged := range []string{"1.1.1.1", "2.2.2.2"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-Forwarded-For", forged)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// 200
	// 429
}

// Two limiters in a chain, by address and by user: each adds its policy
// to the RateLimit and RateLimit-Policy lists, and the 429 of the user
// limit names it.
func Example_chain() {
	perIP, _ := ratelimit.New(ratelimit.Config{
		Name:   "ip",
		Limit:  ratelimit.Limit{Requests: 100, Per: time.Minute},
		Key:    ratelimit.KeyByIP(),
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	perUser, _ := ratelimit.New(ratelimit.Config{
		Name:   "user",
		Limit:  ratelimit.Limit{Requests: 10, Per: time.Minute, Burst: 1},
		Key:    ratelimit.KeyByHeader("X-User"), // auth.ClaimsFrom in a real service
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	h := perIP.Handler(perUser.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	for range 2 {
		req := httptest.NewRequest("GET", "/orders", nil)
		req.Header.Set("X-User", "alice")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Printf("%d Retry-After=%q\n", rec.Code, rec.Header().Get("Retry-After"))
		fmt.Println("  RateLimit-Policy:", rec.Header().Get("RateLimit-Policy"))
		fmt.Println("  RateLimit:", rec.Header().Get("RateLimit"))
	}
	// Output:
	// 200 Retry-After=""
	//   RateLimit-Policy: "ip";q=100;w=60, "user";q=10;w=60
	//   RateLimit: "ip";r=99;t=1, "user";r=0;t=6
	// 429 Retry-After="6"
	//   RateLimit-Policy: "ip";q=100;w=60, "user";q=10;w=60
	//   RateLimit: "ip";r=98;t=1, "user";r=0;t=6
}

func ExampleLimiter_Allow() {
	l, _ := ratelimit.New(ratelimit.Config{
		Limit:  ratelimit.Limit{Requests: 2, Per: time.Second},
		Key:    ratelimit.KeyByIP(), // unused by Allow, required all the same
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	for range 3 {
		d, _ := l.Allow(context.Background(), "device-42")
		fmt.Println(d.Allowed, d.Remaining, d.RetryAfter)
	}
	// Output:
	// true 1 0s
	// true 0 0s
	// false 0 500ms
}

func ExampleNewFailureBudget() {
	clock := now
	b, _ := ratelimit.NewFailureBudget(ratelimit.FailureConfig{
		Key:     ratelimit.KeyByHeader("X-Account"),
		Budget:  2,
		Per:     time.Minute,
		Lockout: 15 * time.Minute,
		Now:     func() time.Time { return clock },
		Logger:  slog.New(slog.DiscardHandler),
	})
	login := b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized) // every guess is wrong
	}))
	for range 4 {
		req := httptest.NewRequest("POST", "/login", nil)
		req.Header.Set("X-Account", "alice")
		rec := httptest.NewRecorder()
		login.ServeHTTP(rec, req)
		fmt.Printf("%d retry-after=%q\n", rec.Code, rec.Header().Get("Retry-After"))
	}
	// Output:
	// 401 retry-after=""
	// 401 retry-after=""
	// 429 retry-after="900"
	// 429 retry-after="900"
}

// An attacker fails on purpose to lock a victim's account out. Keyed by
// account and client address, the budget locks out the attacker's
// address only: the victim, from its own address, still signs in.
func ExampleKeyJoin_lockoutByAttacker() {
	account := ratelimit.KeyByHeader("X-Account")
	b, _ := ratelimit.NewFailureBudget(ratelimit.FailureConfig{
		Key:    ratelimit.KeyJoin(account, ratelimit.KeyByIP()),
		Budget: 3,
		Per:    15 * time.Minute,
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	login := b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Password") != "correct horse" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	try := func(from, password string) int {
		req := httptest.NewRequest("POST", "/login", nil)
		req.RemoteAddr = from + ":4000"
		req.Header.Set("X-Account", "alice")
		req.Header.Set("X-Password", password)
		rec := httptest.NewRecorder()
		login.ServeHTTP(rec, req)
		return rec.Code
	}
	for range 4 {
		fmt.Println("attacker:", try("198.51.100.9", "wrong"))
	}
	fmt.Println("victim:", try("203.0.113.7", "correct horse"))
	// Output:
	// attacker: 401
	// attacker: 401
	// attacker: 401
	// attacker: 429
	// victim: 200
}

// A caller may have at most two exports running at once: a third, sent
// while two run, is rejected with 429 and Retry-After; once one finishes,
// the next is served.
func ExampleNewConcurrency() {
	c, err := ratelimit.NewConcurrency(ratelimit.ConcurrencyConfig{
		Name:   "export",
		Limit:  2,
		Key:    ratelimit.KeyByHeader("X-User"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	h := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("export started")
	}))
	send := func() {
		req := httptest.NewRequest("GET", "/export", nil)
		req.Header.Set("X-User", "alice")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("Retry-After"))
	}
	// Two exports of alice's are running (here held by Acquire).
	first, _ := c.Acquire(context.Background(), "alice")
	second, _ := c.Acquire(context.Background(), "alice")
	send()
	first() // one finishes
	send()
	second()
	// Output:
	// 429 1
	// export started
	// 200
}
