package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/apiguard/apiguard/telemetry"
)

// exampleLogger writes JSON records without the time, so output is stable.
func exampleLogger() *slog.Logger {
	h := slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(telemetry.NewLogHandler(h))
}

func ExampleNew() {
	obs, err := telemetry.New(telemetry.Config{Logger: exampleLogger()})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "order %s", r.PathValue("id"))
	})
	h := obs.Handler(mux)

	req := httptest.NewRequest("GET", "/orders/7", nil)
	req.Header.Set("X-Request-ID", "mobile-7f3a")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("X-Request-ID"), rec.Body.String())
	// Output: 200 mobile-7f3a order 7
}

// An attacker puts a CRLF in the correlation ID to inject a header into the
// response and a line into the logs. The ID is replaced, never echoed.
func ExampleObserver_Handler_headerInjection() {
	obs, err := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	h := obs.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-ID", "x\r\nSet-Cookie: session=attacker")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	id := rec.Header().Get("X-Request-ID")
	fmt.Println("replaced:", !strings.Contains(id, "Set-Cookie"), "valid:", telemetry.ValidID(id), "length:", len(id))
	// Output: replaced: true valid: true length: 32
}

func ExampleIDFrom() {
	obs, err := telemetry.New(telemetry.Config{})
	if err != nil {
		panic(err)
	}
	h := obs.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := telemetry.IDFrom(r.Context())
		fmt.Println("handling", id)
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-ID", "req-1")
	h.ServeHTTP(httptest.NewRecorder(), req)
	id, ok := telemetry.IDFrom(context.Background())
	fmt.Printf("outside a request: %q %v\n", id, ok)
	// Output:
	// handling req-1
	// outside a request: "" false
}

func ExampleNewLogHandler() {
	logger := exampleLogger()
	obs, err := telemetry.New(telemetry.Config{Logger: logger})
	if err != nil {
		panic(err)
	}
	h := obs.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Any package can log a security event; it is counted in
		// apiguard.security.events and carries the correlation ID.
		logger.WarnContext(r.Context(), "token rejected", "event", "auth_failed", "reason", "expired")
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-ID", "req-2")
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	// Output: {"level":"WARN","msg":"token rejected","event":"auth_failed","reason":"expired","correlation_id":"req-2","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
}

func ExampleObserver_ReportHandler() {
	obs, err := telemetry.New(telemetry.Config{Logger: exampleLogger()})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /reports", obs.ReportHandler())
	h := obs.Handler(mux)

	body := `[{"type":"pinning-failure","age":3000,"url":"https://api.example.com/v1/pay","user_agent":"Shop/5.2 iOS/18.1","body":{}}]`
	req := httptest.NewRequest("POST", "/reports", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/reports+json")
	req.Header.Set("X-Request-ID", "req-3")
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code)

	bad := httptest.NewRequest("POST", "/reports", strings.NewReader(`{"not":"a list"}`))
	bad.Header.Set("Content-Type", "application/reports+json")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, bad)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output:
	// {"level":"WARN","msg":"telemetry: client report","event":"client_pinning_failure","reason":"pinning-failure","age_ms":3000,"host":"api.example.com","correlation_id":"req-3","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
	// 204
	// 400 application/problem+json
}

func ExampleNewTransport() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("backend got", r.Header.Get("X-Request-ID"))
	}))
	defer backend.Close()
	client := &http.Client{Transport: telemetry.NewTransport(nil)}

	obs, err := telemetry.New(telemetry.Config{})
	if err != nil {
		panic(err)
	}
	h := obs.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := http.NewRequestWithContext(r.Context(), "GET", backend.URL, nil)
		resp, err := client.Do(out)
		if err == nil {
			resp.Body.Close()
		}
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-ID", "req-4")
	h.ServeHTTP(httptest.NewRecorder(), req)
	// Output: backend got req-4
}

func ExampleSetRoute() {
	obs, err := telemetry.New(telemetry.Config{})
	if err != nil {
		panic(err)
	}
	// A router that is not http.ServeMux names the route itself.
	h := obs.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		telemetry.SetRoute(r.Context(), "/users/{id}")
		fmt.Println("served", r.URL.Path)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/users/42", nil))
	// Output: served /users/42
}

// eventCount reads the apiguard.security.events counter from reader, by
// event/reason (and device_model when set).
func eventCount(reader *sdkmetric.ManualReader) map[string]int64 {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != telemetry.MetricSecurityEvents {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				var parts []string
				for _, kv := range dp.Attributes.ToSlice() {
					parts = append(parts, kv.Value.AsString())
				}
				out[strings.Join(parts, "/")] = dp.Value
			}
		}
	}
	return out
}

// Every apiguard package gets obs.Logger() as its Config.Logger: events
// it logs outside a request, like a failed key-set refresh, are counted
// on the observer's meter provider, not the global one.
func ExampleObserver_Logger() {
	reader := sdkmetric.NewManualReader()
	obs, err := telemetry.New(telemetry.Config{
		Logger:        slog.New(slog.DiscardHandler),
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		panic(err)
	}
	logger := obs.Logger() // auth.Config{Logger: logger}, ratelimit.Config{Logger: logger}, ...

	// What auth logs from its key-refresh goroutine:
	logger.Warn("auth: jwks fetch failed", "event", "jwks_error", "reason", "fetch")
	fmt.Println(eventCount(reader))
	// Output: map[jwks_error/fetch:1]
}

// readiness stands for a dependency such as auth.Verifier or a redisstore
// store.
type readiness struct{ err error }

func (r readiness) Ready(context.Context) error { return r.err }

func ExampleObserver_Health() {
	obs, err := telemetry.New(telemetry.Config{})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", obs.Health(
		telemetry.Check{Name: "jwks", Ready: readiness{}},
		telemetry.Check{Name: "redis", Ready: readiness{errors.New("redisstore: ping: connection refused")}},
	))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var body struct {
		Status string
		Checks []struct{ Name, Status, Error string }
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	fmt.Println(rec.Code, body.Status)
	for _, c := range body.Checks {
		fmt.Println(strings.TrimSpace(c.Name + " " + c.Status + " " + c.Error))
	}
	// Output:
	// 503 not_ready
	// jwks ready
	// redis not_ready redisstore: ping: connection refused
}

// An emulator farm sends signatures from thousands of invented device
// models: the device_model attribute keeps the first models it sees and
// counts the rest as "other", so the flood cannot multiply series.
func ExampleConfig_deviceModelHeader() {
	reader := sdkmetric.NewManualReader()
	obs, err := telemetry.New(telemetry.Config{
		Logger:            slog.New(slog.DiscardHandler),
		MeterProvider:     sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		DeviceModelHeader: "X-Device-Model",
		MaxDeviceModels:   2,
	})
	if err != nil {
		panic(err)
	}
	h := obs.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		obs.Logger().WarnContext(r.Context(), "signing: request rejected", "event", "signature_mismatch", "reason", "signature")
		w.WriteHeader(http.StatusUnauthorized)
	}))
	for i := range 1000 {
		req := httptest.NewRequest("POST", "/pay", nil)
		req.Header.Set("X-Device-Model", fmt.Sprintf("Pixel %d", i%10))
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	fmt.Println(eventCount(reader))
	// Output: map[Pixel 0/signature_mismatch/signature:100 Pixel 1/signature_mismatch/signature:100 other/signature_mismatch/signature:800]
}

// A careless handler logs the request's Authorization header, an error
// that quotes the token, and who called: the redacting handler, under the
// observer's logger, removes the token, cuts the e-mail address to its
// domain and the address to its /24, and the event is still counted.
func ExampleNewRedactHandler() {
	json := slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	redacting := telemetry.NewRedactHandler(json, telemetry.RedactConfig{PersonalData: true})
	obs, err := telemetry.New(telemetry.Config{Logger: slog.New(redacting)})
	if err != nil {
		panic(err)
	}
	obs.Logger().Warn("login refused",
		"event", "auth_failed", "reason", "invalid_token",
		slog.Group("request", "authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2ln", "route", "POST /v1/login"),
		"error", errors.New("introspection: token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2ln inactive"),
		"user", "bob@example.com", "client_ip", "203.0.113.7")
	// Output:
	// {"level":"WARN","msg":"login refused","event":"auth_failed","reason":"invalid_token","request":{"authorization":"[REDACTED]","route":"POST /v1/login"},"error":"introspection: token [REDACTED] inactive","user":"***@example.com","client_ip":"203.0.113.0/24"}
}
