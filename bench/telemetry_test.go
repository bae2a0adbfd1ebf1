package bench

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apiguard/apiguard/telemetry"
	chimw "github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// bare is the handler every middleware wraps: it writes a status and nothing else.
var bare = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })

// serveParallel runs h on one request per iteration from GOMAXPROCS
// goroutines. The request and recorder are
// reused, with the recorder's header map cleared, so that only the
// middleware's own cost is measured.
func serveParallel(b *testing.B, h http.Handler, setup func(*http.Request)) {
	b.Helper()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/orders/7", nil)
		if setup != nil {
			setup(req)
		}
		w := &discardWriter{h: make(http.Header, 4)}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	})
}

// discardWriter is a ResponseWriter that costs nothing, unlike
// httptest.ResponseRecorder, which allocates on every request.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkTelemetry compares the correlation-ID middleware of apiguard
// (ID + trace context + metrics + drift, with the default no-op OTel
// providers) with chi's RequestID and otelhttp's handler.
func BenchmarkTelemetry(b *testing.B) {
	obs, err := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	withID := func(r *http.Request) { r.Header.Set("X-Request-ID", "mobile-7f3a-11") }
	b.Run("bare", func(b *testing.B) { serve(b, bare, nil) })
	b.Run("chi_RequestID/new_id", func(b *testing.B) { serve(b, chimw.RequestID(bare), nil) })
	b.Run("chi_RequestID/incoming_id", func(b *testing.B) { serve(b, chimw.RequestID(bare), withID) })
	b.Run("otelhttp/new_id", func(b *testing.B) { serve(b, otelhttp.NewHandler(bare, "orders"), nil) })
	b.Run("apiguard/new_id", func(b *testing.B) { serve(b, obs.Handler(bare), nil) })
	b.Run("apiguard/incoming_id", func(b *testing.B) { serve(b, obs.Handler(bare), withID) })
	idsOnly, err := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler), NoRequestMetrics: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("apiguard_ids_only/new_id", func(b *testing.B) { serve(b, idsOnly.Handler(bare), nil) })
	b.Run("apiguard_ids_only/incoming_id", func(b *testing.B) { serve(b, idsOnly.Handler(bare), withID) })
	b.Run("parallel/chi_RequestID/new_id", func(b *testing.B) { serveParallel(b, chimw.RequestID(bare), nil) })
	b.Run("parallel/otelhttp/new_id", func(b *testing.B) { serveParallel(b, otelhttp.NewHandler(bare, "orders"), nil) })
	b.Run("parallel/apiguard/new_id", func(b *testing.B) { serveParallel(b, obs.Handler(bare), nil) })
}

// BenchmarkLogHandler measures what NewLogHandler adds to one record
// logged with a request context: the correlation ID and event counting.
func BenchmarkLogHandler(b *testing.B) {
	obs, err := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	plain := slog.New(slog.NewJSONHandler(io.Discard, nil))
	wrapped := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(io.Discard, nil)))
	run := func(b *testing.B, l *slog.Logger) {
		h := obs.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l.LogAttrs(r.Context(), slog.LevelWarn, "token rejected", slog.String("event", "auth_failed"), slog.String("reason", "expired"))
		}))
		serve(b, h, nil)
	}
	b.Run("json", func(b *testing.B) { run(b, plain) })
	b.Run("json+apiguard", func(b *testing.B) { run(b, wrapped) })
}

// serve runs h on one request per iteration on one goroutine, so ns/op is
// the CPU cost of one request.
func serve(b *testing.B, h http.Handler, setup func(*http.Request)) {
	b.Helper()
	b.ReportAllocs()
	req := httptest.NewRequest("GET", "/orders/7", nil)
	if setup != nil {
		setup(req)
	}
	w := &discardWriter{h: make(http.Header, 4)}
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}
