package telemetry

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fakeClock advances by step on every call, so each request "takes" step.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.t = c.t.Add(c.step)
	return c.t
}

func TestBaselineDrift(t *testing.T) {
	tests := []struct {
		name       string
		badLatency time.Duration
		badStatus  int
		wantReason string
	}{
		{name: "latency_spike", badLatency: 200 * time.Millisecond, badStatus: 200, wantReason: "latency"},
		{name: "error_spike", badLatency: 10 * time.Millisecond, badStatus: 502, wantReason: "error_rate"},
		{name: "steady_no_drift", badLatency: 10 * time.Millisecond, badStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			o, logs, reader := newObserver(t, Config{
				Now:   clock.now,
				Drift: DriftConfig{Window: time.Second, MinRequests: 10, Warmup: 3, Cooldown: time.Hour},
			})
			status := 200
			mux := http.NewServeMux()
			mux.HandleFunc("GET /pay", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })
			h := o.Handler(mux)
			// Each request costs two clock reads (start, end).
			run := func(n int, latency time.Duration) {
				clock.step = latency / 2
				for range n {
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/pay", nil))
				}
			}
			// Five healthy windows: 100 requests of 10ms fill one 1s window.
			for range 5 {
				run(100, 10*time.Millisecond)
			}
			status = tt.badStatus
			run(100, tt.badLatency) // the bad window
			status = 200
			run(100, 10*time.Millisecond) // closes it
			status = tt.badStatus
			run(100, tt.badLatency) // a second bad window inside the cooldown
			status = 200
			run(100, 10*time.Millisecond)

			var drifts []map[string]any
			for _, r := range logs.records(t) {
				if r["event"] == "baseline_drift" {
					drifts = append(drifts, r)
				}
			}
			if tt.wantReason == "" {
				require.Empty(t, drifts)
				return
			}
			require.Len(t, drifts, 1, "one record per cooldown")
			require.Equal(t, tt.wantReason, drifts[0]["reason"])
			require.Equal(t, "/pay", drifts[0]["route"])
			require.Greater(t, drifts[0]["live"].(float64), drifts[0]["baseline"].(float64))
			require.Equal(t, int64(1), eventCounts(t, reader)["baseline_drift/"+tt.wantReason])
		})
	}
}

func TestDriftQuietWindowsIgnored(t *testing.T) {
	d, err := newDrift(DriftConfig{Window: time.Second, MinRequests: 10, Warmup: 1})
	require.NoError(t, err)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rs := &routeStats{start: t0}
	// Windows with fewer than MinRequests never form a baseline or alert.
	for i := range 20 {
		now := t0.Add(time.Duration(i) * 2 * time.Second)
		require.Nil(t, d.observe(rs, 500, time.Second, now))
	}
	require.Equal(t, 0, rs.windows)
}

func TestRoutesBounded(t *testing.T) {
	o, _, reader := newObserver(t, Config{})
	require.Equal(t, maxRoutes, o.maxRoutes)
	// A bound of 64 proves the same as 1024 with a sixteenth of the
	// requests, which matters under the race detector.
	o.maxRoutes = 64
	h := o.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetRoute(r.Context(), r.URL.Path) // a misuse: raw paths as routes
	}))
	for i := range o.maxRoutes + 100 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/u/%d", i), nil))
	}
	require.Len(t, o.routes, o.maxRoutes)
	m := findMetric(collect(t, reader), MetricRequestDuration)
	hist := m.Data.(metricdata.Histogram[float64])
	require.Len(t, hist.DataPoints, o.maxRoutes+1)
	var overflow uint64
	for _, dp := range hist.DataPoints {
		if v, _ := dp.Attributes.Value("http.route"); v.AsString() == OverflowRoute {
			overflow = dp.Count
		}
	}
	require.Equal(t, uint64(100), overflow)
}

func TestDriftDisabled(t *testing.T) {
	o, _, _ := newObserver(t, Config{Drift: DriftConfig{Disabled: true}})
	require.Nil(t, o.drift)
	o.Handler(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}
