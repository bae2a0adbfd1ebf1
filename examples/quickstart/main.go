// Command quickstart is the README's quick start: an API whose orders
// need an access token, with correlation IDs, security-event counters on
// /metrics through the OpenTelemetry Prometheus exporter, and client
// reports.
//
//	go run ./examples/quickstart -issuer https://login.example.com/ -jwks https://login.example.com/.well-known/jwks.json
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/telemetry"
)

const audience = "https://api.example.com"

// newAPI is the quick start: the API's handler and what stops it.
func newAPI(issuer, jwksURL string) (http.Handler, func() error, error) {
	// Metrics: an OpenTelemetry meter provider that Prometheus scrapes.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	obs, err := telemetry.New(telemetry.Config{
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
	})
	if err != nil {
		return nil, nil, err
	}
	tokens, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: issuer, Audience: []string{audience}, JWKSURL: jwksURL}},
		Logger:  obs.Logger(), // give every package obs.Logger(): its events reach /metrics
	})
	if err != nil {
		return nil, nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /readyz", obs.Health(telemetry.Check{Name: "jwks", Ready: tokens})) // 503 until the key set loads
	mux.Handle("POST /reports", obs.ReportHandler())                                    // pinning and TLS failures seen by the app
	mux.Handle("GET /orders", tokens.Require("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := auth.ClaimsFrom(r.Context())
		obs.Logger().InfoContext(r.Context(), "orders listed", "sub", claims.Subject)
		fmt.Fprintln(w, "orders of", claims.Subject)
	})))
	// Start serving only once the issuer's keys are in: a JWKS URL that
	// answers 404 stops start-up here, naming the issuer and the status.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tokens.WaitReady(ctx); err != nil {
		_ = tokens.Close()
		return nil, nil, err
	}
	return obs.Handler(mux), tokens.Close, nil // telemetry outermost
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	issuer := flag.String("issuer", "https://login.example.com/", "token issuer")
	jwks := flag.String("jwks", "https://login.example.com/.well-known/jwks.json", "issuer's JWKS URL")
	flag.Parse()
	h, stop, err := newAPI(*issuer, *jwks)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = stop() }()
	log.Printf("listening on http://%s: GET /orders, GET /metrics, GET /readyz", *addr)
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	log.Print(srv.ListenAndServe())
}
