package redisstore_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestLimiterNamespacesRedis: limiters and rules sharing one Redis and one
// KeySecret never share a bucket.
func TestLimiterNamespacesRedis(t *testing.T) {
	srv := redistest.Shared(t)
	secret := bytes.Repeat([]byte{7}, 32)
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	newClient := func() redis.UniversalClient {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	newLimiter := func(t *testing.T, store ratelimit.Store, cfg ratelimit.Config) http.Handler {
		t.Helper()
		cfg.Store, cfg.KeySecret = store, secret
		cfg.StorePolicy, cfg.StoreTimeout = ratelimit.FailClosed, time.Second
		cfg.Now = func() time.Time { return clock }
		cfg.Logger = slog.New(slog.DiscardHandler)
		l, err := ratelimit.New(cfg)
		require.NoError(t, err)
		return l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	}
	send := func(h http.Handler, remote, device string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if device != "" {
			r.Header.Set("X-Device-ID", device)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}

	// Five logins must not exhaust the same address's API limiter, on one
	// store or on two (two processes).
	t.Run("limiters_share_store", func(t *testing.T) {
		_, _ = srv.Do("FLUSHALL")
		one := redisstore.NewLimitStore(newClient(), redisstore.Options{})
		login := newLimiter(t, one, ratelimit.Config{Name: "login", Limit: ratelimit.Limit{Requests: 5, Per: time.Minute}, Key: ratelimit.KeyByIP()})
		api := newLimiter(t, one, ratelimit.Config{Name: "api", Limit: ratelimit.Limit{Requests: 100, Per: time.Minute}, Key: ratelimit.KeyByIP()})
		apiElsewhere := newLimiter(t, redisstore.NewLimitStore(newClient(), redisstore.Options{}),
			ratelimit.Config{Name: "api-v2", Limit: ratelimit.Limit{Requests: 100, Per: time.Minute}, Key: ratelimit.KeyByIP()})
		for i := range 5 {
			require.Equal(t, 204, send(login, "203.0.113.7:1", "").Code, "login %d", i+1)
		}
		require.Equal(t, 429, send(login, "203.0.113.7:1", "").Code)
		rec := send(api, "203.0.113.7:1", "")
		require.Equal(t, 204, rec.Code)
		require.Equal(t, `"api";r=99;t=1`, rec.Header().Get("RateLimit"))
		require.Equal(t, 204, send(apiElsewhere, "203.0.113.7:1", "").Code)
	})

	t.Run("rules_share_key", func(t *testing.T) {
		_, _ = srv.Do("FLUSHALL")
		h := newLimiter(t, redisstore.NewLimitStore(newClient(), redisstore.Options{}), ratelimit.Config{
			Name: "per-second", Limit: ratelimit.Limit{Requests: 10, Per: time.Second}, Key: ratelimit.KeyByIP(),
			Rules: []ratelimit.Rule{{Name: "per-hour", Limit: ratelimit.Limit{Requests: 3, Per: time.Hour}, Key: ratelimit.KeyByIP()}},
		})
		for i := range 3 {
			require.Equal(t, 204, send(h, "203.0.113.7:1", "").Code, "request %d", i+1)
		}
		rec := send(h, "203.0.113.7:1", "")
		require.Equal(t, 429, rec.Code, "the hourly rule holds")
		require.Contains(t, rec.Body.String(), `"violated-policies":["per-hour"]`)
	})

	t.Run("device_header_names_victims_ip_bucket", func(t *testing.T) {
		_, _ = srv.Do("FLUSHALL")
		h := newLimiter(t, redisstore.NewLimitStore(newClient(), redisstore.Options{}), ratelimit.Config{
			Name: "ip", Limit: ratelimit.Limit{Requests: 3, Per: time.Hour}, Key: ratelimit.KeyByIP(),
			Rules: []ratelimit.Rule{{Name: "device", Limit: ratelimit.Limit{Requests: 3, Per: time.Hour}, Key: ratelimit.KeyByHeader("X-Device-ID")}},
		})
		for i := range 5 {
			send(h, fmt.Sprintf("198.51.100.%d:1", i+1), "ip4:203.0.113.7")
		}
		for i := range 3 {
			require.Equal(t, 204, send(h, "203.0.113.7:1", "victim-phone").Code, "victim request %d", i+1)
		}
	})

	t.Run("same_name_on_one_store", func(t *testing.T) {
		store := redisstore.NewLimitStore(newClient(), redisstore.Options{})
		cfg := ratelimit.Config{Name: "api", Limit: ratelimit.Limit{Requests: 1, Per: time.Second}, Key: ratelimit.KeyByIP(), Store: store, KeySecret: secret}
		first, err := ratelimit.New(cfg)
		require.NoError(t, err)
		_, err = ratelimit.New(cfg)
		require.ErrorIs(t, err, ratelimit.ErrNamespaceTaken)
		require.NoError(t, first.Close())
		_, err = ratelimit.New(cfg)
		require.NoError(t, err)
	})
}
