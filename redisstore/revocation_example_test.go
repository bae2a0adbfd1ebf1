package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/revoke"
	"github.com/redis/go-redis/v9"
)

// Two instances share revocations: one revokes a user's tokens, the other
// refuses them a moment later (give auth.Config.Revocations the list).
func ExampleNewRevocationStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	instance := func() *revoke.List { // each instance has its own client in production
		store := redisstore.NewRevocationStore(rdb, redisstore.Options{Prefix: "example:revoke:", Timeout: testTimeout}, 0)
		l, err := revoke.New(revoke.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			panic(err)
		}
		// A readiness endpoint reports the List's Ready: nil once it has
		// read the revocations already made.
		for l.Ready(context.Background()) != nil {
			runtime.Gosched()
		}
		return l
	}
	a, b := instance(), instance()
	defer a.Close()
	defer b.Close()

	issuedAt := time.Now().Add(-time.Minute)
	err := a.Revoke(context.Background(), revoke.Revocation{Issuer: "https://idp.example/", Subject: "user-42"})
	fmt.Println("revoked on A:", err == nil)
	deadline := time.Now().Add(testTimeout)
	for !b.Revoked("https://idp.example/", "user-42", "", "", "", issuedAt) && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	fmt.Println("refused on B:", b.Revoked("https://idp.example/", "user-42", "", "", "", issuedAt))
	// Output:
	// revoked on A: true
	// refused on B: true
}
