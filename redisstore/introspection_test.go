package redisstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// The structural contracts auth defines.
var (
	_ auth.IntrospectionCache  = (*redisstore.IntrospectionCache)(nil)
	_ auth.IntrospectionLocker = (*redisstore.IntrospectionCache)(nil)
)

const introIssuer = "https://idp.example/"

// introEndpoint is an RFC 7662 endpoint that knows one active token and
// counts the calls per token.
func introEndpoint(t *testing.T, active string) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		answer := map[string]any{"active": false}
		if r.PostFormValue("token") == active {
			answer = map[string]any{"active": true, "iss": introIssuer, "aud": "api", "sub": "user-7",
				"scope": "orders:read", "exp": time.Now().Add(10 * time.Minute).Unix()}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// introInstance is one API instance: its own Redis client, Breaker and
// Verifier, sharing the Redis at addr.
func introInstance(t *testing.T, addr, endpoint string) *auth.Verifier {
	t.Helper()
	return introInstanceWith(t, addr, endpoint, testTimeout)
}

// introInstanceWith is introInstance with storeTimeout as the store's
// Options.Timeout.
func introInstanceWith(t *testing.T, addr, endpoint string, storeTimeout time.Duration) *auth.Verifier {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1, DialerRetries: 1, DialTimeout: testTimeout, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: introIssuer, Audience: []string{"api"}, Introspection: &auth.Introspection{
			URL: endpoint, ClientID: "rs", ClientSecret: "rs-secret",
			Cache:   redisstore.NewIntrospectionCache(rdb, redisstore.Options{Timeout: storeTimeout}),
			Timeout: testTimeout,
		}}},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// TestIntrospectionOneCallForFourInstances: four instances sharing Redis,
// each with many requests carrying one new token at once, make exactly
// one call to the endpoint; likewise for a revoked (inactive) token.
func TestIntrospectionOneCallForFourInstances(t *testing.T) {
	srv := redistest.Shared(t)
	endpoint, calls := introEndpoint(t, "opaque-active")
	var vs []*auth.Verifier
	for range 4 {
		vs = append(vs, introInstance(t, srv.Addr(), endpoint.URL))
	}
	for _, tc := range []struct {
		token  string
		active bool
	}{{"opaque-active", true}, {"opaque-revoked", false}} {
		calls.Store(0)
		const per = 32
		errs := make(chan error, len(vs)*per)
		start := make(chan struct{})
		for _, v := range vs {
			for range per {
				go func() {
					<-start
					c, err := v.VerifyToken(context.Background(), tc.token)
					if err == nil && c.Subject != "user-7" {
						err = errWrongClaims
					}
					errs <- err
				}()
			}
		}
		close(start)
		for range len(vs) * per {
			err := <-errs
			if tc.active {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, auth.ErrInactive)
			}
		}
		require.EqualValues(t, 1, calls.Load(), "token %s", tc.token)
	}

	// Keys name no token, nor its plain digest; values hold no token.
	rdb := newTestClient(t, srv.Addr())
	keys, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2, "two results; the locks are released")
	for _, tok := range []string{"opaque-active", "opaque-revoked"} {
		sum := sha256.Sum256([]byte(tok))
		for _, k := range keys {
			require.True(t, strings.HasPrefix(k, "apiguard:intro:"), k)
			require.NotContains(t, k, tok)
			require.NotContains(t, k, hex.EncodeToString(sum[:]))
			v, err := rdb.Get(t.Context(), k).Result()
			require.NoError(t, err)
			require.NotContains(t, v, tok)
		}
	}
}

type claimsError string

func (e claimsError) Error() string { return string(e) }

const errWrongClaims = claimsError("wrong claims")

// TestIntrospectionRedisDownFallsBackToEndpoint: the outage policy. With
// Redis stopped, each instance calls the endpoint itself, once per token
// (its own singleflight and cache), and accepts the valid token: a Redis
// outage costs calls, never a refusal; the Breaker keeps it from costing
// each request Options.Timeout.
func TestIntrospectionRedisDownFallsBackToEndpoint(t *testing.T) {
	srv := redistest.Start(t)
	endpoint, calls := introEndpoint(t, "opaque-active")
	var vs []*auth.Verifier
	for range 4 {
		vs = append(vs, introInstance(t, srv.Addr(), endpoint.URL))
	}
	srv.Stop()
	errs := make(chan error, 4*16)
	for _, v := range vs {
		for range 16 {
			go func() {
				_, err := v.VerifyToken(context.Background(), "opaque-active")
				errs <- err
			}()
		}
	}
	for range 4 * 16 {
		require.NoError(t, <-errs)
	}
	require.EqualValues(t, 4, calls.Load(), "one call per instance")
	for _, v := range vs {
		_, err := v.VerifyToken(t.Context(), "opaque-active")
		require.NoError(t, err)
	}
	require.EqualValues(t, 4, calls.Load(), "then each instance's own cache")

	// Redis back: instances share again.
	srv.Restart()
	calls.Store(0)
	for _, v := range vs {
		_, err := v.VerifyToken(t.Context(), "other-token")
		require.ErrorIs(t, err, auth.ErrInactive)
	}
	require.LessOrEqual(t, calls.Load(), int64(4))
}

// TestIntrospectionRedisHungFallsBackToEndpoint: a Redis that accepts
// connections and never answers costs each store call Options.Timeout
// (then the Breaker fails them at once), and the instances call the
// endpoint themselves: the valid token is accepted.
func TestIntrospectionRedisHungFallsBackToEndpoint(t *testing.T) {
	srv := redistest.Start(t)
	endpoint, calls := introEndpoint(t, "opaque-active")
	a := introInstanceWith(t, srv.Addr(), endpoint.URL, 50*time.Millisecond)
	b := introInstanceWith(t, srv.Addr(), endpoint.URL, 50*time.Millisecond)
	srv.Pause()
	t.Cleanup(srv.Resume)
	for _, v := range []*auth.Verifier{a, b, a, b} {
		c, err := v.VerifyToken(t.Context(), "opaque-active")
		require.NoError(t, err)
		require.Equal(t, "user-7", c.Subject)
	}
	require.EqualValues(t, 2, calls.Load(), "one call per instance")
}

func TestIntrospectionCacheLock(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := newTestClient(t, srv.Addr())
	c := redisstore.NewIntrospectionCache(rdb, redisstore.Options{Timeout: testTimeout})
	ctx := t.Context()
	release, err := c.TryLock(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.NotNil(t, release)
	again, err := c.TryLock(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Nil(t, again, "held")
	release()
	again, err = c.TryLock(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.NotNil(t, again, "released")
	release() // a stale holder's release leaves the new holder's lock
	third, err := c.TryLock(ctx, "k", time.Minute)
	require.NoError(t, err)
	require.Nil(t, third)
	again()

	_, ok, err := c.Get(ctx, "v")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, c.Set(ctx, "v", []byte("x"), time.Minute))
	got, ok, err := c.Get(ctx, "v")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []byte("x"), got)
	require.NoError(t, c.Set(ctx, "w", []byte("x"), 0), "no TTL: nothing stored")
	_, ok, err = c.Get(ctx, "w")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, c.Ready(ctx))
}

func newTestClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1, DialerRetries: 1, DialTimeout: testTimeout, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
