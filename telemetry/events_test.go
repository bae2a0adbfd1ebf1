package telemetry

import (
	"bytes"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/apiguard/apiguard/internal/events"
)

// rejecter stands for an apiguard package: it reports a security event
// through the events contract with its own logger and answers 401.
func rejecter(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		events.Log(r.Context(), logger, slog.LevelWarn, "auth: request rejected",
			slog.String("event", "auth_failed"), slog.String("reason", "malformed"))
		w.WriteHeader(http.StatusUnauthorized)
	})
}

// TestEventCountedWhateverThePackageLogger: an attack rejected inside a
// request is counted exactly once on the observer's provider, whether the
// package's logger is plain slog, the observer's, or a NewLogHandler one.
func TestEventCountedWhateverThePackageLogger(t *testing.T) {
	tests := []struct {
		name   string
		logger func(o *Observer, buf *logBuffer) *slog.Logger
	}{
		{name: "plain_json_logger", logger: func(_ *Observer, buf *logBuffer) *slog.Logger {
			return slog.New(slog.NewJSONHandler(buf, nil))
		}},
		{name: "observer_logger", logger: func(o *Observer, _ *logBuffer) *slog.Logger { return o.Logger() }},
		{name: "new_log_handler", logger: func(_ *Observer, buf *logBuffer) *slog.Logger {
			return slog.New(NewLogHandler(slog.NewJSONHandler(buf, nil)))
		}},
		{name: "observer_logger_with_attrs", logger: func(o *Observer, _ *logBuffer) *slog.Logger {
			return o.Logger().With("component", "auth")
		}},
		{name: "discard", logger: func(*Observer, *logBuffer) *slog.Logger { return slog.New(slog.DiscardHandler) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, logs, reader := newObserver(t, Config{})
			h := o.Handler(rejecter(tt.logger(o, logs)))
			for range 3 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/orders", nil))
				require.Equal(t, http.StatusUnauthorized, rec.Code)
			}
			require.Equal(t, map[string]int64{"auth_failed/malformed": 3}, eventCounts(t, reader))
			if tt.name != "discard" {
				recs := logs.records(t)
				require.Len(t, recs, 3, "each event logged once")
				require.Equal(t, "auth_failed", recs[0]["event"])
			}
		})
	}
}

// TestEventOutsideRequestOnObserverProvider: a key-set failure logged by a
// background goroutine through Observer.Logger is counted on the
// observer's provider, also when Config.Logger was built with
// NewLogHandler (whose own fallback is the global provider).
func TestEventOutsideRequestOnObserverProvider(t *testing.T) {
	tests := []struct {
		name   string
		logger func(buf *logBuffer) *slog.Logger
	}{
		{name: "plain_config_logger", logger: func(buf *logBuffer) *slog.Logger { return slog.New(slog.NewJSONHandler(buf, nil)) }},
		{name: "config_logger_from_new_log_handler", logger: func(buf *logBuffer) *slog.Logger {
			return slog.New(NewLogHandler(slog.NewJSONHandler(buf, nil)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := &logBuffer{}
			o, _, reader := newObserver(t, Config{Logger: tt.logger(buf)})
			o.Logger().Warn("auth: jwks fetch failed", "event", "jwks_error", "reason", "fetch")
			events.Log(t.Context(), o.Logger(), slog.LevelWarn, "ratelimit: store failed",
				slog.String("event", "ratelimit_store_error"), slog.String("reason", "fail_closed"))
			require.Equal(t, map[string]int64{"jwks_error/fetch": 1, "ratelimit_store_error/fail_closed": 1}, eventCounts(t, reader))
			require.Len(t, buf.records(t), 2)
			require.True(t, events.Observed(o.Logger()), "the observer's logger counts events")
		})
	}
}

// TestUnobservedLoggerDetected: the check a package's New runs tells the
// observer's logger from one that would lose events outside requests.
func TestUnobservedLoggerDetected(t *testing.T) {
	o, _, _ := newObserver(t, Config{})
	require.True(t, events.Observed(o.Logger()))
	require.True(t, events.Observed(o.Logger().With("k", "v")))
	require.False(t, events.Observed(o.Logger().WithGroup("auth")), "events in a group are not counted")
	require.False(t, events.Observed(slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))))

	var buf bytes.Buffer
	events.WarnUnobserved(slog.New(slog.NewJSONHandler(&buf, nil)), "signing")
	require.Contains(t, buf.String(), "signing: Config.Logger does not count security events")
	buf.Reset()
	events.WarnUnobserved(slog.New(o.Logger().Handler()), "signing")
	require.Empty(t, buf.String())
}

// TestObserverLoggerAsSlogDefault: with no Config.Logger, the observer's
// logger can become slog's default (the application "touching"
// slog.SetDefault) without the deadlock of wrapping slog's built-in
// handler, and events are still counted once.
func TestObserverLoggerAsSlogDefault(t *testing.T) {
	oldDefault, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	t.Cleanup(func() {
		slog.SetDefault(oldDefault)
		log.SetOutput(oldOut)
		log.SetFlags(oldFlags)
	})
	// A fresh built-in default, writing to buf through the log package.
	var buf logBuffer
	log.SetOutput(&buf)
	slog.SetDefault(slog.New(slog.Default().Handler()))

	reader := sdkmetric.NewManualReader()
	o, err := New(Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	require.NoError(t, err)
	slog.SetDefault(o.Logger())

	h := o.Handler(rejecter(slog.Default()))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	slog.Info("application record")
	log.Print("log package record")

	require.Equal(t, map[string]int64{"auth_failed/malformed": 1}, eventCounts(t, reader))
	out := buf.String()
	require.Contains(t, out, "event=auth_failed")
	require.Contains(t, out, "correlation_id=")
	require.Contains(t, out, "application record")
	require.Contains(t, out, "log package record")
}

// TestLabelsBoundedUnderFlood floods the stack with distinct paths,
// device models and tokens: every metric attribute stays in a bounded set
// and none carries a path, a token or an unbounded model.
func TestLabelsBoundedUnderFlood(t *testing.T) {
	const maxModels = 10
	o, _, reader := newObserver(t, Config{DeviceModelHeader: "X-Device-Model", MaxDeviceModels: maxModels})
	plain := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	mux.Handle("GET /orders/{id}", rejecter(plain))
	mux.HandleFunc("GET /reports", func(w http.ResponseWriter, r *http.Request) {
		o.Logger().WarnContext(r.Context(), "x", "event", "replay", "reason", "nonce_reused")
	})
	h := o.Handler(mux)
	const n = 400 // requests per kind of path
	for i := range n {
		paths := []string{fmt.Sprintf("/orders/%d", i), fmt.Sprintf("/scan/%d/wp-login.php", i), "/reports"}
		for _, p := range paths {
			req := httptest.NewRequest("GET", p, nil)
			req.Header.Set("Authorization", fmt.Sprintf("Bearer tok-%d", i))
			switch i % 4 {
			case 0:
				req.Header.Set("X-Device-Model", fmt.Sprintf("Pixel %d", i))
			case 1:
				req.Header.Set("X-Device-Model", fmt.Sprintf("<script>%d</script>", i))
			case 2:
				req.Header.Set("X-Device-Model", strings.Repeat("A", 100)+fmt.Sprint(i))
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	}

	rm := collect(t, reader)
	sum := findMetric(rm, MetricSecurityEvents).Data.(metricdata.Sum[int64])
	models := map[string]int64{}
	for _, dp := range sum.DataPoints {
		require.Equal(t, 3, dp.Attributes.Len(), "event, reason, device_model")
		ev, _ := dp.Attributes.Value(KeyEvent)
		require.Contains(t, []string{"auth_failed", "replay"}, ev.AsString())
		m, _ := dp.Attributes.Value(KeyDeviceModel)
		models[m.AsString()] += dp.Value
	}
	require.Len(t, models, maxModels+2, "the first models, other and unknown")
	require.Equal(t, int64(2*(n/4+n/4)), models["unknown"], "missing and invalid headers")
	require.Equal(t, int64(2*(n/4-maxModels+1)), models["other"], "nine Pixel models and the one 100-character model, cut, are kept")
	for m := range models {
		require.NotContains(t, m, "<")
		require.LessOrEqual(t, len(m), 64)
	}
	require.Len(t, sum.DataPoints, 2*(maxModels+2))

	hist := findMetric(rm, MetricRequestDuration).Data.(metricdata.Histogram[float64])
	routes := map[string]uint64{}
	for _, dp := range hist.DataPoints {
		r, _ := dp.Attributes.Value("http.route")
		routes[r.AsString()] += dp.Count
	}
	require.Equal(t, map[string]uint64{"/orders/{id}": n, "/reports": n, UnmatchedRoute: n}, routes)
}

// TestEventPolicyLabel: a rate-limit event names the policy (the limiter's
// Name, a bounded set the application configures) as an attribute, so the
// dashboard shows rejections per policy; events without one carry none.
func TestEventPolicyLabel(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		events.Log(r.Context(), slog.New(slog.DiscardHandler), slog.LevelWarn, "ratelimit: limited",
			slog.String("event", "rate_limited"), slog.String("reason", "quota"), slog.String("policy", "per-user"))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	for range 2 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/orders", nil))
	}
	m := findMetric(collect(t, reader), MetricSecurityEvents)
	require.NotNil(t, m)
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok)
	require.Len(t, sum.DataPoints, 1)
	p, ok := sum.DataPoints[0].Attributes.Value(events.KeyPolicy)
	require.True(t, ok, "the policy is an attribute")
	require.Equal(t, "per-user", p.AsString())
	require.Equal(t, int64(2), sum.DataPoints[0].Value)
}

// TestEventShadowLabel: the event of a refusal that a control in shadow
// mode did not make (shadow=true) is counted in the same metric with the
// attribute shadow="true", apart from enforced refusals of the same event
// and reason, which carry no shadow attribute; shadow=false is no label.
func TestEventShadowLabel(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		shadow := r.URL.Query().Get("shadow") == "1"
		events.Log(r.Context(), slog.New(slog.DiscardHandler), slog.LevelWarn, "auth: request rejected",
			slog.String("event", "auth_failed"), slog.String("reason", "expired"), slog.Bool("shadow", shadow))
	}))
	for _, target := range []string{"/o?shadow=1", "/o?shadow=1", "/o?shadow=1", "/o"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", target, nil))
	}
	m := findMetric(collect(t, reader), MetricSecurityEvents)
	require.NotNil(t, m)
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok)
	got := map[string]int64{}
	for _, dp := range sum.DataPoints {
		s, _ := dp.Attributes.Value(KeyShadow)
		got[s.AsString()] = dp.Value
	}
	require.Equal(t, map[string]int64{"true": 3, "": 1}, got)
}
