package ginguard_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/frameworks/ginguard"
	"github.com/apiguard/apiguard/examples/frameworks/internal/issuer"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/signing"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode) // no route listing on stdout, which examples compare
	os.Exit(m.Run())
}

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// fixture is the chain the example program uses, on a gin engine.
type fixture struct {
	engine  *gin.Engine
	iss     *issuer.Issuer
	reader  *sdkmetric.ManualReader
	reached atomic.Int64 // handler calls
	later   atomic.Int64 // calls of a gin middleware after the wrapped ones
	fromGin atomic.Int64 // handler calls where auth.ClaimsFrom(c) worked
}

// newFixture serves GET /orders/:id behind telemetry, a per-IP limit of
// burst requests and the orders:read scope. With use, the middleware goes
// in through ginguard.Use; without, through engine.Use(ginguard.Wrap(...))
// on a plain engine (ContextWithFallback off).
func newFixture(t *testing.T, burst int, use bool) *fixture {
	t.Helper()
	f := &fixture{reader: sdkmetric.NewManualReader()}
	logger := slog.New(slog.DiscardHandler)
	obs, err := telemetry.New(telemetry.Config{Logger: logger, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))})
	require.NoError(t, err)
	perIP, err := ratelimit.New(ratelimit.Config{
		Name: "ip", Limit: ratelimit.Limit{Requests: burst, Per: time.Hour},
		Key: ratelimit.KeyByIP(), Now: func() time.Time { return now }, Logger: logger,
	})
	require.NoError(t, err)
	f.iss, err = issuer.New()
	require.NoError(t, err)
	tokens, err := f.iss.Verifier(func() time.Time { return now }, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tokens.Close() })

	f.engine = gin.New()
	require.False(t, f.engine.ContextWithFallback, "gin's default")
	if use {
		ginguard.Use(f.engine, obs.Handler, perIP.Handler)
	} else {
		f.engine.Use(ginguard.Wrap(obs.Handler), ginguard.Wrap(perIP.Handler))
	}
	f.engine.GET("/orders/:id", ginguard.Wrap(tokens.Require("orders:read")),
		func(c *gin.Context) { f.later.Add(1) },
		func(c *gin.Context) {
			f.reached.Add(1)
			if _, ok := auth.ClaimsFrom(c); ok {
				f.fromGin.Add(1)
			}
			claims, ok := auth.ClaimsFrom(c.Request.Context())
			if !ok {
				c.String(http.StatusInternalServerError, "no claims")
				return
			}
			c.String(http.StatusOK, "order %s of %s", c.Param("id"), claims.Subject)
		})
	return f
}

func (f *fixture) token(t *testing.T, scope string) string {
	t.Helper()
	tok, err := f.iss.Token(scope, now)
	require.NoError(t, err)
	return tok
}

func (f *fixture) get(path, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, r)
	return rec
}

// series is one http.server.request.duration series.
type series struct {
	route  string
	status int64
}

// durations returns the request count per route and status.
func (f *fixture) durations(t *testing.T) map[series]uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, f.reader.Collect(context.Background(), &rm))
	out := map[series]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != telemetry.MetricRequestDuration {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				route, _ := dp.Attributes.Value("http.route")
				status, _ := dp.Attributes.Value("http.response.status_code")
				out[series{route.AsString(), status.AsInt64()}] += dp.Count
			}
		}
	}
	return out
}

func TestWrap_validTokenReachesHandlerWithClaims(t *testing.T) {
	f := newFixture(t, 10, true)
	rec := f.get("/orders/7", f.token(t, "orders:read"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "order 7 of user-1", rec.Body.String())
	require.NotEmpty(t, rec.Header().Get("X-Request-ID"), "telemetry ran")
	require.NotEmpty(t, rec.Header().Get("RateLimit"), "the limiter ran")
	require.EqualValues(t, 1, f.reached.Load())
	require.EqualValues(t, 1, f.fromGin.Load(), "auth.ClaimsFrom(c) on the *gin.Context")
}

func TestWrap_attacksRefusedWithApiguardsRejection(t *testing.T) {
	tests := []struct {
		name      string
		giveScope string // "" sends no token
		wantCode  int
		wantChall string
	}{
		{name: "missing_token", wantCode: http.StatusUnauthorized, wantChall: `Bearer`},
		{name: "insufficient_scope", giveScope: "profile", wantCode: http.StatusForbidden, wantChall: `error="insufficient_scope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 10, true)
			tok := ""
			if tt.giveScope != "" {
				tok = f.token(t, tt.giveScope)
			}
			rec := f.get("/orders/7", tok)
			require.Equal(t, tt.wantCode, rec.Code)
			require.Contains(t, rec.Header().Get("WWW-Authenticate"), tt.wantChall)
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			require.Contains(t, rec.Body.String(), `"status":`)
			require.Zero(t, f.reached.Load(), "the handler must not run")
			require.Zero(t, f.later.Load(), "the gin chain must be aborted")

			// The rejection is the one the plain net/http middleware writes.
			v, err := f.iss.Verifier(func() time.Time { return now }, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			defer v.Close()
			r := httptest.NewRequest(http.MethodGet, "/orders/7", nil)
			if tok != "" {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
			plain := httptest.NewRecorder()
			v.Require("orders:read")(http.NotFoundHandler()).ServeHTTP(plain, r)
			require.Equal(t, plain.Code, rec.Code)
			require.Equal(t, plain.Header().Get("WWW-Authenticate"), rec.Header().Get("WWW-Authenticate"))
			require.Equal(t, plain.Body.String(), rec.Body.String())
		})
	}
}

func TestWrap_floodFromOneAddressRateLimited(t *testing.T) {
	f := newFixture(t, 2, true)
	tok := f.token(t, "orders:read")
	require.Equal(t, http.StatusOK, f.get("/orders/1", tok).Code)
	require.Equal(t, http.StatusOK, f.get("/orders/2", tok).Code)
	rec := f.get("/orders/3", tok)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.EqualValues(t, 2, f.reached.Load())
}

func TestWrap_routeLabelIsGinRoutePattern(t *testing.T) {
	f := newFixture(t, 10, true)
	tok := f.token(t, "orders:read")
	require.Equal(t, http.StatusOK, f.get("/orders/7", tok).Code)
	require.Equal(t, http.StatusOK, f.get("/orders/8", tok).Code)
	require.Equal(t, http.StatusUnauthorized, f.get("/orders/9", "").Code)
	require.Equal(t, http.StatusNotFound, f.get("/scan/../etc/passwd", "").Code)
	require.Equal(t, map[series]uint64{
		{"/orders/:id", 200}: 2,
		{"/orders/:id", 401}: 1,
		{"unmatched", 404}:   1, // gin writes its 404 after the chain; Wrap tells telemetry
	}, f.durations(t))
}

// With plain gin (ContextWithFallback off), auth.ClaimsFrom(c) on the
// *gin.Context silently reports false; c.Request.Context() still works,
// because Wrap makes the enriched request gin's. ginguard.Use turns the
// fallback on, so that both work.
func TestUse_claimsFromGinContextWithoutFallback(t *testing.T) {
	for _, use := range []bool{false, true} {
		f := newFixture(t, 10, use)
		require.Equal(t, http.StatusOK, f.get("/orders/7", f.token(t, "orders:read")).Code)
		require.EqualValues(t, 1, f.reached.Load(), "c.Request.Context() carries the claims either way")
		if use {
			require.True(t, f.engine.ContextWithFallback)
			require.EqualValues(t, 1, f.fromGin.Load(), "ginguard.Use avoids the trap")
		} else {
			require.EqualValues(t, 0, f.fromGin.Load(), "the trap: plain gin hides the request context")
		}
	}
}

func TestWrap_concurrentFloodAdmitsExactlyTheBurst(t *testing.T) {
	const burst, clients = 25, 200
	f := newFixture(t, burst, true)
	tok := f.token(t, "orders:read")
	var ok, limited, other atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			switch rec := f.get("/orders/7", tok); rec.Code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				assert.NotEmpty(t, rec.Header().Get("Retry-After"))
				limited.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, burst, ok.Load())
	require.EqualValues(t, clients-burst, limited.Load())
	require.Zero(t, other.Load())
	require.EqualValues(t, burst, f.reached.Load())
	require.Equal(t, map[series]uint64{{"/orders/:id", 200}: burst, {"/orders/:id", 429}: clients - burst}, f.durations(t))
}

func TestWrap_nilMiddlewarePanicsAtWiring(t *testing.T) {
	require.PanicsWithValue(t, "ginguard: nil middleware", func() { ginguard.Wrap(nil) })
}

// signing reads the body to check its digest and hands the next handler a
// fresh copy on a new request; Wrap makes that request gin's.
func TestWrap_signedBodyReachesHandler(t *testing.T) {
	master := make([]byte, 32) // a test master secret, all zero
	v, err := signing.New(signing.Config{Keys: signing.DerivedKeys(master, []byte("gin-test")), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	engine := gin.New()
	var got []string
	engine.POST("/pay", ginguard.Wrap(v.Handler), func(c *gin.Context) {
		body, err := c.GetRawData()
		if err != nil {
			c.Status(http.StatusInternalServerError)
			return
		}
		device, _ := signing.KeyIDFrom(c.Request.Context())
		got = append(got, device+" "+string(body))
		c.Status(http.StatusNoContent)
	})
	pay := func(t *testing.T, body string, tamper bool) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "https://example.com/pay", strings.NewReader(body))
		secret, err := signing.DeriveSecret(master, []byte("gin-test"), "device-7")
		require.NoError(t, err)
		require.NoError(t, signing.NewSigner("device-7", secret).Sign(r))
		if tamper {
			r.Body = io.NopCloser(strings.NewReader(`{"amount":9}`))
		}
		rec := httptest.NewRecorder()
		engine.ServeHTTP(rec, r)
		return rec
	}
	require.Equal(t, http.StatusNoContent, pay(t, `{"amount":5}`, false).Code)
	rec := pay(t, `{"amount":5}`, true)
	require.Equal(t, http.StatusUnauthorized, rec.Code, "body_tampered_after_signing")
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.Equal(t, []string{`device-7 {"amount":5}`}, got)
}

// Telemetry may also wrap the whole engine, outside gin: then it sees gin's
// own 404 answers, and any Wrap on the route names the route.
func TestWrap_routeLabelWithTelemetryOutsideEngine(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	obs, err := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler), MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	require.NoError(t, err)
	perIP, err := ratelimit.New(ratelimit.Config{Name: "ip", Limit: ratelimit.Limit{Requests: 10, Per: time.Hour}, Key: ratelimit.KeyByIP(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	engine := gin.New()
	ginguard.Use(engine, perIP.Handler)
	engine.GET("/orders/:id", func(c *gin.Context) { c.Status(http.StatusAccepted) })
	h := obs.Handler(engine)
	for _, path := range []string{"/orders/7", "/orders/8", "/admin"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	f := &fixture{reader: reader}
	require.Equal(t, map[series]uint64{{"/orders/:id", 202}: 2, {"unmatched", 404}: 1}, f.durations(t))
}
