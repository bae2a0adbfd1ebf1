package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
)

// Three instances of an API check opaque access tokens at the identity
// provider's introspection endpoint; sharing the answers through Redis,
// they make one call for a token that all of them see.
func ExampleNewIntrospectionCache() {
	var calls atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "iss": "https://login.example.com/",
			"aud": "https://api.example.com", "sub": "user-42", "exp": time.Now().Add(10 * time.Minute).Unix()})
	}))
	defer idp.Close()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()

	instance := func() *auth.Verifier {
		v, err := auth.New(auth.Config{
			Issuers: []auth.Issuer{{
				Issuer:   "https://login.example.com/",
				Audience: []string{"https://api.example.com"},
				Introspection: &auth.Introspection{
					URL: idp.URL, ClientID: "orders-api", ClientSecret: "from-the-secret-store",
					Cache: redisstore.NewIntrospectionCache(rdb, redisstore.Options{Prefix: "example:intro:", Timeout: testTimeout}),
				},
			}},
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			panic(err)
		}
		return v
	}
	for range 3 {
		v := instance()
		claims, err := v.VerifyToken(context.Background(), "2YotnFZFEjr1zCsicMWpAA")
		fmt.Println(claims.Subject, err)
		_ = v.Close()
	}
	fmt.Println("calls:", calls.Load())
	// Output:
	// user-42 <nil>
	// user-42 <nil>
	// user-42 <nil>
	// calls: 1
}
