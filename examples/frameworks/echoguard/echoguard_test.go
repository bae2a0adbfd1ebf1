package echoguard_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/frameworks/echoguard"
	"github.com/apiguard/apiguard/examples/frameworks/internal/issuer"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/signing"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// fixture is the chain the example program uses, on an echo instance.
type fixture struct {
	e       *echo.Echo
	iss     *issuer.Issuer
	reader  *sdkmetric.ManualReader
	reached atomic.Int64 // handler calls
	later   atomic.Int64 // calls of an echo middleware after the wrapped ones
}

// newFixture serves GET /orders/:id behind telemetry, a per-IP limit of
// burst requests and the orders:read scope, and GET /conflict/:id, whose
// handler returns an echo error.
func newFixture(t *testing.T, burst int) *fixture {
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

	f.e = echo.New()
	f.e.Use(echoguard.Wrap(obs.Handler), echoguard.Wrap(perIP.Handler))
	later := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { f.later.Add(1); return next(c) }
	}
	f.e.GET("/orders/:id", func(c echo.Context) error {
		f.reached.Add(1)
		claims, ok := auth.ClaimsFrom(c.Request().Context())
		if !ok {
			return c.String(http.StatusInternalServerError, "no claims")
		}
		return c.String(http.StatusOK, "order "+c.Param("id")+" of "+claims.Subject)
	}, echoguard.Wrap(tokens.Require("orders:read")), later)
	f.e.GET("/conflict/:id", func(c echo.Context) error {
		return echo.NewHTTPError(http.StatusConflict, "taken")
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
	f.e.ServeHTTP(rec, r)
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
	f := newFixture(t, 10)
	rec := f.get("/orders/7", f.token(t, "orders:read"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "order 7 of user-1", rec.Body.String())
	require.NotEmpty(t, rec.Header().Get("X-Request-ID"), "telemetry ran")
	require.NotEmpty(t, rec.Header().Get("RateLimit"), "the limiter ran")
	require.EqualValues(t, 1, f.reached.Load())
	require.EqualValues(t, 1, f.later.Load())
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
			f := newFixture(t, 10)
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
			require.Zero(t, f.later.Load(), "the echo chain must stop")

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
	f := newFixture(t, 2)
	tok := f.token(t, "orders:read")
	require.Equal(t, http.StatusOK, f.get("/orders/1", tok).Code)
	require.Equal(t, http.StatusOK, f.get("/orders/2", tok).Code)
	rec := f.get("/orders/3", tok)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.EqualValues(t, 2, f.reached.Load())
}

func TestWrap_routeLabelIsEchoRoutePattern(t *testing.T) {
	f := newFixture(t, 10)
	tok := f.token(t, "orders:read")
	require.Equal(t, http.StatusOK, f.get("/orders/7", tok).Code)
	require.Equal(t, http.StatusOK, f.get("/orders/8", tok).Code)
	require.Equal(t, http.StatusUnauthorized, f.get("/orders/9", "").Code)
	require.Equal(t, http.StatusConflict, f.get("/conflict/1", "").Code)
	require.Equal(t, http.StatusNotFound, f.get("/scan/etc/passwd", "").Code)
	require.Equal(t, map[series]uint64{
		{"/orders/:id", 200}:   2,
		{"/orders/:id", 401}:   1,
		{"/conflict/:id", 409}: 1, // the returned error is written inside telemetry
		{"unmatched", 404}:     1,
	}, f.durations(t))
}

func TestWrap_concurrentFloodAdmitsExactlyTheBurst(t *testing.T) {
	const burst, clients = 25, 200
	f := newFixture(t, burst)
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
	require.PanicsWithValue(t, "echoguard: nil middleware", func() { echoguard.Wrap(nil) })
}

// signing reads the body to check its digest and hands the next handler a
// fresh copy on a new request; Wrap makes that request echo's.
func TestWrap_signedBodyReachesHandler(t *testing.T) {
	master := make([]byte, 32) // a test master secret, all zero
	v, err := signing.New(signing.Config{Keys: signing.DerivedKeys(master, []byte("echo-test")), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	e := echo.New()
	var got []string
	e.POST("/pay", func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		device, _ := signing.KeyIDFrom(c.Request().Context())
		got = append(got, device+" "+string(body))
		return c.NoContent(http.StatusNoContent)
	}, echoguard.Wrap(v.Handler))
	pay := func(t *testing.T, body string, tamper bool) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "https://example.com/pay", strings.NewReader(body))
		secret, err := signing.DeriveSecret(master, []byte("echo-test"), "device-7")
		require.NoError(t, err)
		require.NoError(t, signing.NewSigner("device-7", secret).Sign(r))
		if tamper {
			r.Body = io.NopCloser(strings.NewReader(`{"amount":9}`))
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, r)
		return rec
	}
	require.Equal(t, http.StatusNoContent, pay(t, `{"amount":5}`, false).Code)
	rec := pay(t, `{"amount":5}`, true)
	require.Equal(t, http.StatusUnauthorized, rec.Code, "body_tampered_after_signing")
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.Equal(t, []string{`device-7 {"amount":5}`}, got)
}
