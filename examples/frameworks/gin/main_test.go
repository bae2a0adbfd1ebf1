package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	os.Exit(m.Run())
}

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func newTestApp(t *testing.T) *app {
	t.Helper()
	a, err := newApp(slog.New(slog.DiscardHandler), func() time.Time { return now })
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.tokens.Close() })
	return a
}

func (a *app) call(t *testing.T, method, path, scope string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	if scope != "" {
		tok, err := a.iss.Token(scope, now)
		require.NoError(t, err)
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	a.engine.ServeHTTP(rec, r)
	return rec
}

// requests returns the Prometheus request count per route and status.
func (a *app) requests(t *testing.T) map[[2]string]uint64 {
	t.Helper()
	mfs, err := a.metrics.Gather()
	require.NoError(t, err)
	out := map[[2]string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "http_server_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var route, status string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "http_route":
					route = l.GetValue()
				case "http_response_status_code":
					status = l.GetValue()
				}
			}
			out[[2]string{route, status}] += m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

func TestGinExample_handlerReadsClaims(t *testing.T) {
	a := newTestApp(t)
	rec := a.call(t, "GET", "/orders/7", "orders:read")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.JSONEq(t, `{"order":"7","owner":"user-1"}`, rec.Body.String())
	require.NotEmpty(t, rec.Header().Get("X-Request-ID"))
	require.NotEmpty(t, rec.Header().Get("RateLimit"))
	rec = a.call(t, "POST", "/orders", "orders:write")
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.JSONEq(t, `{"owner":"user-1"}`, rec.Body.String())
}

func TestGinExample_attacksRefused(t *testing.T) {
	tests := []struct {
		name       string
		giveMethod string
		givePath   string
		giveScope  string
		wantCode   int
		wantChall  string
	}{
		{"missing_token", "GET", "/orders/7", "", http.StatusUnauthorized, "Bearer"},
		{"read_token_writes", "POST", "/orders", "orders:read", http.StatusForbidden, `Bearer error="insufficient_scope", scope="orders:write"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newTestApp(t).call(t, tt.giveMethod, tt.givePath, tt.giveScope)
			require.Equal(t, tt.wantCode, rec.Code)
			require.Equal(t, tt.wantChall, rec.Header().Get("WWW-Authenticate"))
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			require.NotContains(t, rec.Body.String(), "owner")
		})
	}
}

func TestGinExample_floodRateLimited(t *testing.T) {
	a := newTestApp(t)
	for range 10 { // the burst
		require.Equal(t, http.StatusOK, a.call(t, "GET", "/orders/7", "orders:read").Code)
	}
	rec := a.call(t, "GET", "/orders/7", "orders:read")
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
}

func TestGinExample_concurrentFloodAdmitsExactlyTheBurst(t *testing.T) {
	a := newTestApp(t)
	tok, err := a.iss.Token("orders:read", now)
	require.NoError(t, err)
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			r := httptest.NewRequest("GET", "/orders/7", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			a.engine.ServeHTTP(rec, r)
			switch rec.Code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				limited.Add(1)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 10, ok.Load())
	require.EqualValues(t, 90, limited.Load())
}

func TestGinExample_metricsLabelledWithRoutePattern(t *testing.T) {
	a := newTestApp(t)
	require.Equal(t, http.StatusOK, a.call(t, "GET", "/orders/7", "orders:read").Code)
	require.Equal(t, http.StatusOK, a.call(t, "GET", "/orders/8", "orders:read").Code)
	require.Equal(t, http.StatusUnauthorized, a.call(t, "GET", "/orders/9", "").Code)
	require.Equal(t, http.StatusNotFound, a.call(t, "GET", "/wp-login.php", "").Code)
	require.Equal(t, map[[2]string]uint64{
		{"/orders/:id", "200"}: 2,
		{"/orders/:id", "401"}: 1,
		{"unmatched", "404"}:   1,
	}, a.requests(t))

	rec := a.call(t, "GET", "/metrics", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `http_route="/orders/:id"`)
	require.False(t, strings.Contains(rec.Body.String(), `http_route="/orders/7"`), "never a raw path")
}
