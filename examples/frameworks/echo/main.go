// Command echo serves an API on echo behind apiguard: telemetry with
// Prometheus metrics, a per-IP rate limit, and access tokens from a local
// test issuer, through echoguard. From examples/frameworks:
//
//	go run ./echo
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/frameworks/echoguard"
	"github.com/apiguard/apiguard/examples/frameworks/internal/issuer"
	"github.com/apiguard/apiguard/examples/internal/serve"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

type app struct {
	e       *echo.Echo
	metrics *prometheus.Registry
	tokens  *auth.Verifier
	iss     *issuer.Issuer
}

// newApp wires the API; now is the clock of the limiter and the verifier
// (nil: time.Now).
func newApp(logger *slog.Logger, now func() time.Time) (*app, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	obs, err := telemetry.New(telemetry.Config{Logger: logger, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))})
	if err != nil {
		return nil, err
	}
	logger = obs.Logger() // counts the packages' security events
	perIP, err := ratelimit.New(ratelimit.Config{
		Name: "ip", Limit: ratelimit.Limit{Requests: 60, Per: time.Minute, Burst: 10},
		Key: ratelimit.KeyByIP(), Now: now, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	iss, err := issuer.New()
	if err != nil {
		return nil, err
	}
	tokens, err := iss.Verifier(now, logger)
	if err != nil {
		return nil, err
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Telemetry outermost, then the IP limit, before any token is parsed.
	// With e.Use, not e.Pre: the route is known by then.
	e.Use(middleware.Recover(), echoguard.Wrap(obs.Handler), echoguard.Wrap(perIP.Handler))
	e.GET("/health", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	// Serve metrics on an internal listener in production.
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	e.GET("/orders/:id", func(c echo.Context) error {
		claims, _ := auth.ClaimsFrom(c.Request().Context())
		return c.JSON(http.StatusOK, map[string]string{"order": c.Param("id"), "owner": claims.Subject})
	}, echoguard.Wrap(tokens.Require("orders:read")))
	e.POST("/orders", func(c echo.Context) error {
		claims, _ := auth.ClaimsFrom(c.Request().Context())
		return c.JSON(http.StatusCreated, map[string]string{"owner": claims.Subject})
	}, echoguard.Wrap(tokens.Require("orders:write")))
	return &app{e: e, metrics: reg, tokens: tokens, iss: iss}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	a, err := newApp(slog.New(telemetry.NewRedactHandler(slog.NewJSONHandler(os.Stderr, nil), telemetry.RedactConfig{})), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer a.tokens.Close()
	read, err := a.iss.Token("orders:read", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve.Run(*addr, a.e,
		"curl -i -H 'Authorization: Bearer "+read+"' %s/orders/7",
		"curl -i -X POST -H 'Authorization: Bearer "+read+"' %s/orders   # 403 insufficient_scope",
		"curl -i %s/orders/7   # 401, WWW-Authenticate: Bearer",
		"curl -s %s/metrics | grep http_route"))
}
