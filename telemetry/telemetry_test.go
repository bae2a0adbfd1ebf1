package telemetry

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

var _ func(http.Handler) http.Handler = (*Observer)(nil).Handler

func newObserver(t *testing.T, cfg Config) (*Observer, *logBuffer, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	logger, buf := newTestLogger(slog.LevelDebug)
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	o, err := New(cfg)
	require.NoError(t, err)
	return o, buf, reader
}

func TestCorrelationID(t *testing.T) {
	tests := []struct {
		name        string
		give        []string
		wantKept    bool
		wantLogged  bool
		wantNoCRLF  bool
		wantMaxSize int
	}{
		{name: "absent_fresh_id", give: nil, wantKept: false},
		{name: "valid_kept", give: []string{"abc-123_DEF.~:x"}, wantKept: true},
		{name: "max_length_kept", give: []string{strings.Repeat("a", MaxIDLength)}, wantKept: true},
		{name: "header_injection_crlf", give: []string{"abc\r\nSet-Cookie: x=1"}, wantLogged: true},
		{name: "space", give: []string{"abc def"}, wantLogged: true},
		{name: "quotes", give: []string{`"abc"`}, wantLogged: true},
		{name: "non_ascii", give: []string{"abcé"}, wantLogged: true},
		{name: "oversize_10kb", give: []string{strings.Repeat("a", 10<<10)}, wantLogged: true},
		{name: "one_too_long", give: []string{strings.Repeat("a", MaxIDLength+1)}, wantLogged: true},
		{name: "empty", give: []string{""}, wantLogged: true},
		{name: "repeated_header", give: []string{"first-id-value", "second-id-value"}, wantLogged: true},
		{name: "log_injection_json", give: []string{`x","level":"ERROR`}, wantLogged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, logs, reader := newObserver(t, Config{})
			var seen string
			var reached bool
			h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached = true
				seen, _ = IDFrom(r.Context())
			}))
			req := httptest.NewRequest("GET", "/", nil)
			for _, v := range tt.give {
				req.Header.Add("X-Request-ID", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.True(t, reached)
			got := rec.Header().Get("X-Request-ID")
			require.Equal(t, seen, got, "echoed ID is the context ID")
			require.True(t, ValidID(got), "echoed ID is always valid: %q", got)
			if tt.wantKept {
				require.Equal(t, tt.give[0], got)
			} else {
				require.Len(t, got, 32)
				for _, v := range tt.give {
					require.NotEqual(t, v, got)
				}
			}
			var replaced []map[string]any
			for _, r := range logs.records(t) {
				if r["event"] == "correlation_id_replaced" {
					replaced = append(replaced, r)
				}
			}
			if tt.wantLogged {
				require.Len(t, replaced, 1)
				require.Equal(t, got, replaced[0]["correlation_id"], "record carries the new ID")
				require.Equal(t, "invalid_id", replaced[0]["reason"])
				for _, v := range tt.give {
					if v != "" {
						require.NotContains(t, logs.String(), v, "the rejected ID is never logged")
					}
				}
				require.Equal(t, int64(1), eventCounts(t, reader)["correlation_id_replaced/invalid_id"])
			} else {
				require.Empty(t, replaced)
			}
		})
	}
}

func TestFreshIDsAreUnique(t *testing.T) {
	o, _, _ := newObserver(t, Config{})
	h := o.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	seen := map[string]bool{}
	for range 1000 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		id := rec.Header().Get("X-Request-ID")
		require.False(t, seen[id])
		seen[id] = true
	}
}

func TestCustomHeaderAndBrokenRand(t *testing.T) {
	o, _, _ := newObserver(t, Config{Header: "x-correlation-id", Rand: errReader{}})
	h := o.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	id := rec.Header().Get("X-Correlation-Id")
	require.Len(t, id, 32, "a failing Rand falls back to the OS generator")
	require.NotEqual(t, strings.Repeat("0", 32), id)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken") }

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want string
	}{
		{name: "header_with_colon", give: Config{Header: "X-Id:"}, want: "Config.Header"},
		{name: "header_with_space", give: Config{Header: "X Id"}, want: "Config.Header"},
		{name: "negative_report_bytes", give: Config{MaxReportBytes: -1}, want: "MaxReportBytes"},
		{name: "drift_factor_below_one", give: Config{Drift: DriftConfig{Factor: 0.5}}, want: "Config.Drift"},
		{name: "drift_alpha_above_one", give: Config{Drift: DriftConfig{Alpha: 2}}, want: "Config.Drift"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.give)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestHandlerPanicsOnNilNext(t *testing.T) {
	o, _, _ := newObserver(t, Config{})
	require.PanicsWithValue(t, "telemetry: nil handler", func() { o.Handler(nil) })
	require.Panics(t, func() { NewLogHandler(nil) })
}

func TestTraceContext(t *testing.T) {
	const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const incomingSpan = "00f067aa0ba902b7"
	valid := "00-" + incomingTrace + "-" + incomingSpan + "-01"
	tests := []struct {
		name        string
		traceparent string
		wantParent  bool
	}{
		{name: "valid_continues_trace", traceparent: valid, wantParent: true},
		{name: "absent_new_root", traceparent: ""},
		{name: "malformed_version", traceparent: "ff-" + incomingTrace + "-" + incomingSpan + "-01"},
		{name: "malformed_zero_trace", traceparent: "00-00000000000000000000000000000000-" + incomingSpan + "-01"},
		{name: "malformed_short", traceparent: "00-abc-def-01"},
		{name: "malformed_injection", traceparent: valid + "\r\nX-Evil: 1"},
		{name: "malformed_uppercase", traceparent: strings.ToUpper(valid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
			o, logs, _ := newObserver(t, Config{TracerProvider: tp})
			var inner trace.SpanContext
			mux := http.NewServeMux()
			mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
				inner = trace.SpanContextFromContext(r.Context())
				slog.New(NewLogHandler(slog.NewJSONHandler(logs, nil))).InfoContext(r.Context(), "inside")
			})
			req := httptest.NewRequest("GET", "/orders/7", nil)
			if tt.traceparent != "" {
				req.Header.Set("Traceparent", tt.traceparent)
			}
			o.Handler(mux).ServeHTTP(httptest.NewRecorder(), req)

			spans := sr.Ended()
			require.Len(t, spans, 1)
			s := spans[0]
			require.Equal(t, trace.SpanKindServer, s.SpanKind())
			require.Equal(t, "GET /orders/{id}", s.Name())
			require.Equal(t, s.SpanContext().SpanID(), inner.SpanID(), "handler sees the server span")
			if tt.wantParent {
				require.Equal(t, incomingTrace, s.SpanContext().TraceID().String())
				require.Equal(t, incomingSpan, s.Parent().SpanID().String())
				require.True(t, s.Parent().IsRemote())
			} else {
				require.False(t, s.Parent().IsValid(), "new root span")
				require.NotEqual(t, incomingTrace, s.SpanContext().TraceID().String())
			}
			recs := logs.records(t)
			require.Len(t, recs, 1)
			require.Equal(t, s.SpanContext().TraceID().String(), recs[0]["trace_id"])
			require.Equal(t, s.SpanContext().SpanID().String(), recs[0]["span_id"])
			require.NotEmpty(t, recs[0]["correlation_id"])
			attrs := map[attribute.Key]attribute.Value{}
			for _, kv := range s.Attributes() {
				attrs[kv.Key] = kv.Value
			}
			require.Equal(t, "/orders/{id}", attrs["http.route"].AsString())
			require.Equal(t, int64(200), attrs["http.response.status_code"].AsInt64())
		})
	}
}

func TestTraceparentPassThroughWithoutSDK(t *testing.T) {
	// With the default no-op tracer, a valid traceparent still reaches the
	// handler's context and the logs.
	o, _, _ := newObserver(t, Config{})
	var sc trace.SpanContext
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc = trace.SpanContextFromContext(r.Context())
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sc.TraceID().String())
}

func TestMetrics(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	mux.HandleFunc("GET /chi", func(w http.ResponseWriter, r *http.Request) {
		SetRoute(r.Context(), "/chi/{x}")
	})
	h := o.Handler(mux)
	send := func(method, path string) {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, nil))
	}
	send("GET", "/orders/1")
	send("GET", "/orders/2")
	send("POST", "/fail")
	send("GET", "/chi")
	for i := range 50 { // scanner traffic: every path is new
		send("GET", "/wp-admin/"+strings.Repeat("x", i))
	}
	send("BREW", "/orders/3")

	m := findMetric(collect(t, reader), MetricRequestDuration)
	require.NotNil(t, m)
	require.Equal(t, "s", m.Unit)
	hist, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	got := map[string]uint64{}
	for _, dp := range hist.DataPoints {
		require.Equal(t, 3, dp.Attributes.Len(), "only method, status and route")
		meth, _ := dp.Attributes.Value("http.request.method")
		st, _ := dp.Attributes.Value("http.response.status_code")
		route, _ := dp.Attributes.Value("http.route")
		got[meth.AsString()+" "+st.String()+" "+route.AsString()] = dp.Count
	}
	require.Equal(t, map[string]uint64{
		"GET 200 /orders/{id}": 2,
		"POST 503 /fail":       1,
		"GET 200 /chi/{x}":     1,
		"GET 404 unmatched":    50,
		"_OTHER 405 unmatched": 1,
	}, got)
}

func TestLogHandler(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	buf := &logBuffer{}
	logger := slog.New(NewLogHandler(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	var id string
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ = IDFrom(r.Context())
		ctx := r.Context()
		logger.WarnContext(ctx, "auth failed", "event", "auth_failed", "reason", "expired")
		logger.With("event", "replay").WarnContext(ctx, "replay", "reason", "nonce_reused")
		logger.InfoContext(ctx, "below level but still counted", "event", "rate_limited", "reason", "ip")
		logger.WithGroup("g").WarnContext(ctx, "grouped event is not an event", "event", "nope")
		logger.WarnContext(ctx, "not an event: not a string", "event", 42)
		logger.WarnContext(ctx, "plain")
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	logger.Warn("no context", "event", "background_job", "reason", "x") // not counted against o

	recs := buf.records(t)
	require.Len(t, recs, 6, "info record dropped by level, the rest kept")
	for _, i := range []int{0, 1, 3, 4} {
		require.Equal(t, id, recs[i]["correlation_id"])
	}
	// After WithGroup, added attributes land in the group, as slog defines.
	require.Equal(t, id, recs[2]["g"].(map[string]any)["correlation_id"])
	require.NotContains(t, recs[5], "correlation_id")
	require.Equal(t, map[string]int64{
		"auth_failed/expired": 1,
		"replay/nonce_reused": 1,
		"rate_limited/ip":     1,
	}, eventCounts(t, reader))
}

func TestEventLabelsBounded(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range maxEventSets + 50 {
			o.logger.WarnContext(r.Context(), "x", "event", "e", "reason", strings.Repeat("r", i+1))
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	counts := eventCounts(t, reader)
	require.Len(t, counts, maxEventSets+1)
	require.Equal(t, int64(50), counts["other/other"])
}

func TestObserverReusesWrappedLogger(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	buf := &logBuffer{}
	logger := slog.New(NewLogHandler(slog.NewJSONHandler(buf, nil)))
	o, err := New(Config{Logger: logger, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	require.NoError(t, err)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Request-ID", "bad id")
	o.Handler(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), req)
	recs := buf.records(t)
	require.Len(t, recs, 1)
	require.Equal(t, int64(1), eventCounts(t, reader)["correlation_id_replaced/invalid_id"], "counted once, not twice")
	require.Equal(t, 1, strings.Count(buf.String(), `"correlation_id"`), "correlation_id added once")
}

func TestResponseWriterKeepsInterfaces(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flush", func(w http.ResponseWriter, r *http.Request) {
		_, ok := w.(http.Flusher)
		require.True(t, ok)
		_, _ = io.WriteString(w, "part1\n")
		require.NoError(t, http.NewResponseController(w).Flush())
		_, _ = io.WriteString(w, "part2\n")
	})
	mux.HandleFunc("GET /hijack", func(w http.ResponseWriter, r *http.Request) {
		hj, ok := w.(http.Hijacker)
		require.True(t, ok)
		conn, brw, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		_ = brw.Flush()
	})
	mux.HandleFunc("GET /unwrap", func(w http.ResponseWriter, r *http.Request) {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		require.True(t, ok)
		require.NotNil(t, u.Unwrap())
		require.NoError(t, http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)))
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /readfrom", func(w http.ResponseWriter, r *http.Request) {
		rf, ok := w.(io.ReaderFrom)
		require.True(t, ok)
		n, err := rf.ReadFrom(strings.NewReader("copied"))
		require.NoError(t, err)
		require.Equal(t, int64(6), n)
	})
	// The hijacking handler answers before it returns, and so before
	// telemetry records it: wait for each request to be recorded.
	h := o.Handler(mux)
	served := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		served <- struct{}{}
	}))
	defer srv.Close()

	body := func(path string) (int, string) {
		defer func() { <-served }()
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, b := body("/flush")
	require.Equal(t, 200, code)
	require.Equal(t, "part1\npart2\n", b)
	code, b = body("/hijack")
	require.Equal(t, 200, code)
	require.Equal(t, "hijacked", b)
	code, _ = body("/unwrap")
	require.Equal(t, 202, code)
	code, b = body("/readfrom")
	require.Equal(t, 200, code)
	require.Equal(t, "copied", b)

	m := findMetric(collect(t, reader), MetricRequestDuration)
	hist := m.Data.(metricdata.Histogram[float64])
	statuses := map[string]int64{}
	for _, dp := range hist.DataPoints {
		route, _ := dp.Attributes.Value("http.route")
		st, _ := dp.Attributes.Value("http.response.status_code")
		statuses[route.AsString()] = st.AsInt64()
	}
	require.Equal(t, map[string]int64{"/flush": 200, "/hijack": 101, "/unwrap": 202, "/readfrom": 200}, statuses)
}

func TestHijackNotSupported(t *testing.T) {
	rw := &responseWriter{w: httptest.NewRecorder()}
	_, _, err := rw.Hijack()
	require.ErrorIs(t, err, http.ErrNotSupported)
	rw.WriteHeader(http.StatusContinue)
	require.False(t, rw.wroteHeader, "1xx is not the final status")
	rw.WriteHeader(http.StatusTeapot)
	rw.WriteHeader(http.StatusOK)
	require.Equal(t, http.StatusTeapot, rw.statusCode(), "first final status wins")
}

func TestTransport(t *testing.T) {
	var got http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
	}))
	defer backend.Close()
	client := &http.Client{Transport: NewTransport(nil)}

	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	o, _, _ := newObserver(t, Config{TracerProvider: tp, Header: "X-Correlation-ID"})
	var outReq *http.Request
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outReq, _ = http.NewRequestWithContext(r.Context(), "GET", backend.URL, nil)
		resp, err := client.Do(outReq)
		require.NoError(t, err)
		resp.Body.Close()
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Correlation-ID", "req-42")
	h.ServeHTTP(httptest.NewRecorder(), req)

	require.Equal(t, "req-42", got.Get("X-Correlation-ID"))
	span := sr.Ended()[0]
	require.Equal(t, "00-"+span.SpanContext().TraceID().String()+"-"+span.SpanContext().SpanID().String()+"-01", got.Get("Traceparent"))
	require.Empty(t, outReq.Header, "caller's request not mutated")

	// Headers the caller set are kept.
	h = o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outReq, _ = http.NewRequestWithContext(r.Context(), "GET", backend.URL, nil)
		outReq.Header.Set("X-Correlation-ID", "mine")
		resp, err := client.Do(outReq)
		require.NoError(t, err)
		resp.Body.Close()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	require.Equal(t, "mine", got.Get("X-Correlation-ID"))

	// Outside a request nothing is added.
	resp, err := client.Get(backend.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Empty(t, got.Get("X-Correlation-ID"))
	require.Empty(t, got.Get("Traceparent"))
}

func TestTransportPassesThroughUntouchedRequest(t *testing.T) {
	var seen *http.Request
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r
		return nil, errors.New("stop")
	})
	req := httptest.NewRequest("GET", "http://example.test/", nil)
	_, err := NewTransport(base).RoundTrip(req)
	require.Error(t, err)
	require.Same(t, req, seen, "nothing to add: no clone")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestConcurrentRequests serves 800 requests from 16 goroutines at once,
// in process (a network adds nothing the handler sees): every event is
// counted, and every request gets its own ID.
func TestConcurrentRequests(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	logger := slog.New(NewLogHandler(slog.NewJSONHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {
		logger.WarnContext(r.Context(), "e", "event", "replay", "reason", "nonce")
	})
	h := o.Handler(mux)
	ids := make(chan string, 800)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
				ids <- rec.Header().Get("X-Request-ID")
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	require.Len(t, seen, 800)
	require.Equal(t, int64(800), eventCounts(t, reader)["replay/nonce"])
}

// Hijacked connections need a conn; this keeps the import of net and bufio
// honest for the Hijacker signature check.
var _ func() (net.Conn, *bufio.ReadWriter, error) = (&responseWriter{}).Hijack

var _ = context.Background

func TestTraceWithoutTracer(t *testing.T) {
	const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	var outgoing http.Header
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		outgoing = r.Header.Clone()
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	client := &http.Client{Transport: NewTransport(base)}
	tests := []struct {
		name        string
		traceparent string
		wantTrace   string
	}{
		{name: "valid_continues", traceparent: "00-" + incomingTrace + "-00f067aa0ba902b7-01", wantTrace: incomingTrace},
		{name: "malformed_new_root", traceparent: "00-" + incomingTrace + "-00f067aa0ba902b7-zz"},
		{name: "absent_new_root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, logs, _ := newObserver(t, Config{})
			logger := slog.New(NewLogHandler(slog.NewJSONHandler(logs, nil)))
			h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				logger.InfoContext(r.Context(), "hello")
				req, _ := http.NewRequestWithContext(r.Context(), "GET", "http://backend.test/", nil)
				resp, err := client.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
			}))
			req := httptest.NewRequest("GET", "/", nil)
			if tt.traceparent != "" {
				req.Header.Set("Traceparent", tt.traceparent)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			recs := logs.records(t)
			require.Len(t, recs, 1)
			traceID, _ := recs[0]["trace_id"].(string)
			require.Len(t, traceID, 32)
			if tt.wantTrace != "" {
				require.Equal(t, tt.wantTrace, traceID)
				require.Equal(t, "00f067aa0ba902b7", recs[0]["span_id"])
			} else {
				require.NotEqual(t, incomingTrace, traceID, "a new root, not the malformed one")
			}
			tp := outgoing.Get("Traceparent")
			require.True(t, strings.HasPrefix(tp, "00-"+traceID+"-"), "downstream continues the same trace: %s", tp)
		})
	}
}

func TestNoRequestMetrics(t *testing.T) {
	o, _, reader := newObserver(t, Config{NoRequestMetrics: true})
	clockReads := 0
	o.now = func() time.Time { clockReads++; return time.Now() }
	var id string
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ = IDFrom(r.Context())
		slog.New(NewLogHandler(slog.DiscardHandler)).WarnContext(r.Context(), "x", "event", "replay", "reason", "n")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, id, rec.Header().Get("X-Request-ID"), "IDs still work")
	require.Zero(t, clockReads, "no clock reads")
	require.Nil(t, findMetric(collect(t, reader), MetricRequestDuration), "no duration metric")
	require.Equal(t, int64(1), eventCounts(t, reader)["replay/n"], "events still counted")
}

// TestLogTraceIDsPerSpan logs from the server span and from a child span
// in one request: each record carries the IDs of its own span.
func TestLogTraceIDsPerSpan(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	o, logs, _ := newObserver(t, Config{TracerProvider: tp})
	logger := slog.New(NewLogHandler(slog.NewJSONHandler(logs, nil)))
	var server, child trace.SpanContext
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		server = trace.SpanContextFromContext(r.Context())
		logger.InfoContext(r.Context(), "server 1")
		ctx, span := tp.Tracer("test").Start(r.Context(), "child")
		child = span.SpanContext()
		logger.InfoContext(ctx, "child")
		span.End()
		logger.InfoContext(r.Context(), "server 2")
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	recs := logs.records(t)
	require.Len(t, recs, 3)
	for i, want := range []trace.SpanContext{server, child, server} {
		require.Equal(t, want.TraceID().String(), recs[i]["trace_id"], "record %d", i)
		require.Equal(t, want.SpanID().String(), recs[i]["span_id"], "record %d", i)
	}
	require.NotEqual(t, recs[0]["span_id"], recs[1]["span_id"])
}

// TestLogRootTraceIDs checks the trace and span IDs of records logged
// without a tracer: those of the request's root, which a new correlation ID
// shares its random bytes with, and which cost the log handler no
// allocation; or the incoming traceparent's.
func TestLogRootTraceIDs(t *testing.T) {
	const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const valid = "00-" + incomingTrace + "-00f067aa0ba902b7-01"
	tests := []struct {
		name      string
		header    map[string]string
		zeroAlloc bool
	}{
		{name: "new_id", zeroAlloc: true},
		{name: "incoming_id", header: map[string]string{"X-Request-Id": "req-42"}, zeroAlloc: true},
		{name: "incoming_traceparent", header: map[string]string{"Traceparent": valid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, logs, _ := newObserver(t, Config{})
			logger := slog.New(NewLogHandler(slog.NewJSONHandler(logs, nil)))
			var want trace.SpanContext
			var id string
			var allocs float64
			h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				logger.InfoContext(r.Context(), "one")
				logger.InfoContext(r.Context(), "two")
				want, _ = spanContextOf(r.Context())
				id, _ = IDFrom(r.Context())
				quiet := slog.New(NewLogHandler(slog.NewJSONHandler(io.Discard, nil)))
				plain := slog.New(slog.NewJSONHandler(io.Discard, nil))
				allocs = testing.AllocsPerRun(50, func() { quiet.InfoContext(r.Context(), "x", "event", "e") }) -
					testing.AllocsPerRun(50, func() { plain.InfoContext(r.Context(), "x", "event", "e") })
			}))
			req := httptest.NewRequest("GET", "/", nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			recs := logs.records(t)
			require.Len(t, recs, 2)
			require.True(t, want.IsValid())
			for _, rec := range recs {
				require.Equal(t, want.TraceID().String(), rec["trace_id"])
				require.Equal(t, want.SpanID().String(), rec["span_id"])
				require.Equal(t, id, rec["correlation_id"])
			}
			switch tt.name {
			case "new_id":
				require.Equal(t, id, recs[0]["trace_id"], "a new ID is its trace ID")
			case "incoming_traceparent":
				require.Equal(t, incomingTrace, recs[0]["trace_id"])
			}
			if tt.zeroAlloc && !raceEnabled {
				require.Zero(t, allocs, "the log handler adds no allocation to a record of the request's root")
			}
		})
	}
}

// TestIDFrom checks that IDFrom, like every other accessor, reports whether
// the context came through Observer.Handler, so that a handler mounted
// without telemetry cannot mistake "" for a correlation ID.
func TestIDFrom(t *testing.T) {
	t.Run("bare_context", func(t *testing.T) {
		id, ok := IDFrom(context.Background())
		require.False(t, ok)
		require.Empty(t, id)
	})
	t.Run("through_handler", func(t *testing.T) {
		o, _, _ := newObserver(t, Config{})
		var id string
		var ok bool
		h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok = IDFrom(r.Context())
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		require.True(t, ok)
		require.NotEmpty(t, id)
		require.Equal(t, rec.Header().Get("X-Request-ID"), id)
	})
}
