// Command gin serves an API on gin behind apiguard: telemetry with
// Prometheus metrics, a per-IP rate limit, and access tokens from a local
// test issuer, through ginguard. From examples/frameworks:
//
//	go run ./gin
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/frameworks/ginguard"
	"github.com/apiguard/apiguard/examples/frameworks/internal/issuer"
	"github.com/apiguard/apiguard/examples/internal/serve"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

type app struct {
	engine  *gin.Engine
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

	engine := gin.New()
	engine.Use(gin.Recovery())
	// Telemetry outermost, then the IP limit, before any token is parsed.
	// Use also turns on ContextWithFallback, so auth.ClaimsFrom(c) works.
	ginguard.Use(engine, obs.Handler, perIP.Handler)
	engine.GET("/health", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	// Serve metrics on an internal listener in production.
	engine.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	engine.GET("/orders/:id", ginguard.Wrap(tokens.Require("orders:read")), func(c *gin.Context) {
		claims, _ := auth.ClaimsFrom(c)
		c.JSON(http.StatusOK, gin.H{"order": c.Param("id"), "owner": claims.Subject})
	})
	engine.POST("/orders", ginguard.Wrap(tokens.Require("orders:write")), func(c *gin.Context) {
		claims, _ := auth.ClaimsFrom(c.Request.Context()) // right with or without the fallback
		c.JSON(http.StatusCreated, gin.H{"owner": claims.Subject})
	})
	return &app{engine: engine, metrics: reg, tokens: tokens, iss: iss}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	gin.SetMode(gin.ReleaseMode)
	a, err := newApp(slog.New(telemetry.NewRedactHandler(slog.NewJSONHandler(os.Stderr, nil), telemetry.RedactConfig{})), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer a.tokens.Close()
	read, err := a.iss.Token("orders:read", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve.Run(*addr, a.engine,
		"curl -i -H 'Authorization: Bearer "+read+"' %s/orders/7",
		"curl -i -X POST -H 'Authorization: Bearer "+read+"' %s/orders   # 403 insufficient_scope",
		"curl -i %s/orders/7   # 401, WWW-Authenticate: Bearer",
		"curl -s %s/metrics | grep http_route"))
}
