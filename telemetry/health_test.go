package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// dep is a dependency whose readiness the test sets; calls counts the
// checks it received.
type dep struct {
	mu    sync.Mutex
	err   error
	calls atomic.Int32
	block chan struct{} // when set, Ready waits for it (ignoring ctx)
}

func (d *dep) Ready(ctx context.Context) error {
	d.calls.Add(1)
	d.mu.Lock()
	err, block := d.err, d.block
	d.mu.Unlock()
	if block != nil {
		<-block
	}
	return err
}

func (d *dep) set(err error) {
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
}

// keyDep is a dependency with a key set.
type keyDep struct {
	dep
	age     time.Duration
	loaded  bool
	lastErr error
}

func (k *keyDep) KeySetAge() (time.Duration, bool, error) { return k.age, k.loaded, k.lastErr }

type healthBody struct {
	Status string `json:"status"`
	Checks []struct {
		Name           string  `json:"name"`
		Status         string  `json:"status"`
		LatencySeconds float64 `json:"latency_seconds"`
		Error          string  `json:"error"`
	} `json:"checks"`
}

func getHealth(t *testing.T, h http.Handler) (int, healthBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	var b healthBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &b))
	return rec.Code, b
}

// clock is a settable clock for the observer.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestHealth(t *testing.T) {
	tests := []struct {
		name       string
		jwksErr    error
		redisErr   error
		wantCode   int
		wantStatus string
		wantErrs   map[string]string
	}{
		{name: "all_ready", wantCode: 200, wantStatus: "ready", wantErrs: map[string]string{}},
		{name: "jwks_404_at_start", jwksErr: errors.New("auth: jwks https://login.example.com/jwks: status 404"),
			wantCode: 503, wantStatus: "not_ready", wantErrs: map[string]string{"jwks": "auth: jwks https://login.example.com/jwks: status 404"}},
		{name: "both_down", jwksErr: errors.New("auth: no key set"), redisErr: errors.New("redisstore: ping: connection refused"),
			wantCode: 503, wantStatus: "not_ready", wantErrs: map[string]string{"jwks": "auth: no key set", "redis": "redisstore: ping: connection refused"}},
		{name: "oversize_error_text_cut", redisErr: errors.New(strings.Repeat("é", 300)),
			wantCode: 503, wantStatus: "not_ready", wantErrs: map[string]string{"redis": strings.Repeat("é", maxErrorText/2)}},
		{name: "invalid_utf8_error_text", redisErr: errors.New("bad \xff byte"),
			wantCode: 503, wantStatus: "not_ready", wantErrs: map[string]string{"redis": "bad \uFFFD byte"}},
		{name: "empty_error_text", redisErr: errors.New(""),
			wantCode: 503, wantStatus: "not_ready", wantErrs: map[string]string{"redis": "not ready"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _, _ := newObserver(t, Config{})
			jwks, redis := &dep{err: tt.jwksErr}, &dep{err: tt.redisErr}
			h := o.Health(Check{Name: "jwks", Ready: jwks}, Check{Name: "redis", Ready: redis})
			code, b := getHealth(t, h)
			require.Equal(t, tt.wantCode, code)
			require.Equal(t, tt.wantStatus, b.Status)
			require.Len(t, b.Checks, 2)
			require.Equal(t, "jwks", b.Checks[0].Name, "checks in registration order")
			errs := map[string]string{}
			for _, c := range b.Checks {
				require.GreaterOrEqual(t, c.LatencySeconds, 0.0)
				if c.Error != "" {
					require.Equal(t, "not_ready", c.Status)
					errs[c.Name] = c.Error
				} else {
					require.Equal(t, "ready", c.Status)
				}
				require.LessOrEqual(t, len(c.Error), maxErrorText)
			}
			require.Equal(t, tt.wantErrs, errs)
		})
	}
}

func TestHealthNoChecksIsReady(t *testing.T) {
	o, _, _ := newObserver(t, Config{})
	code, b := getHealth(t, o.Health())
	require.Equal(t, 200, code)
	require.Equal(t, "ready", b.Status)
	require.Empty(t, b.Checks)
}

func TestHealthMethods(t *testing.T) {
	o, _, _ := newObserver(t, Config{})
	h := o.Health(Check{Name: "jwks", Ready: &dep{err: errors.New("down")}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("HEAD", "/readyz", nil))
	require.Equal(t, 503, rec.Code)
	require.Empty(t, rec.Body.String())
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/readyz", nil))
	require.Equal(t, 405, rec.Code)
	require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
}

func TestHealthPanicsOnBadChecks(t *testing.T) {
	o, _, _ := newObserver(t, Config{})
	tests := []struct {
		name   string
		checks []Check
	}{
		{name: "nil_ready", checks: []Check{{Name: "jwks"}}},
		{name: "empty_name", checks: []Check{{Ready: &dep{}}}},
		{name: "name_with_a_space", checks: []Check{{Name: "my jwks", Ready: &dep{}}}},
		{name: "name_too_long", checks: []Check{{Name: strings.Repeat("a", 65), Ready: &dep{}}}},
		{name: "duplicate_name", checks: []Check{{Name: "redis", Ready: &dep{}}, {Name: "redis", Ready: &dep{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Panics(t, func() { o.Health(tt.checks...) })
		})
	}
}

// TestHealthJWKSDownUpDown follows a key source that is down at start,
// comes up and goes down again, through the handler and the gauges.
func TestHealthJWKSDownUpDown(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)}
	o, _, reader := newObserver(t, Config{Now: clk.now})
	jwks := &keyDep{}
	jwks.err = errors.New("auth: jwks: status 404")
	jwks.lastErr = jwks.err
	h := o.Health(Check{Name: "jwks", Ready: jwks})

	code, _ := getHealth(t, h)
	require.Equal(t, 503, code, "down at start")
	g := gauges(t, reader)
	require.Equal(t, map[string]float64{"ready": 0, "latency": 0, "failing": 1}, g["jwks"])

	jwks.set(nil)
	jwks.loaded, jwks.lastErr, jwks.age = true, nil, 90*time.Second
	code, _ = getHealth(t, h)
	require.Equal(t, 503, code, "the cached result holds for the TTL")
	clk.advance(time.Second)
	code, _ = getHealth(t, h)
	require.Equal(t, 200, code, "up")
	require.Equal(t, map[string]float64{"ready": 1, "latency": 0, "age": 90, "failing": 0}, gauges(t, reader)["jwks"])

	jwks.set(errors.New("auth: key set stale"))
	jwks.lastErr = errors.New("auth: jwks: connection refused")
	jwks.age = 20 * time.Minute
	clk.advance(time.Second)
	require.Equal(t, map[string]float64{"ready": 0, "latency": 0, "age": 1200, "failing": 1}, gauges(t, reader)["jwks"],
		"a collection runs the expired check too")
	code, b := getHealth(t, h)
	require.Equal(t, 503, code, "down again")
	require.Equal(t, "auth: key set stale", b.Checks[0].Error)
	require.Equal(t, int32(3), jwks.calls.Load(), "one check per TTL, shared by handler and gauges")
}

// gauges returns the dependency gauges as dependency -> short name -> value.
func gauges(t *testing.T, r *sdkmetric.ManualReader) map[string]map[string]float64 {
	t.Helper()
	rm := collect(t, r)
	out := map[string]map[string]float64{}
	put := func(name string, attrs attribute.Set, v float64) {
		d, ok := attrs.Value("dependency")
		require.True(t, ok)
		require.Equal(t, 1, attrs.Len(), "dependency is the only attribute")
		if out[d.AsString()] == nil {
			out[d.AsString()] = map[string]float64{}
		}
		out[d.AsString()][name] = v
	}
	for metricName, short := range map[string]string{MetricDependencyReady: "ready", MetricDependencyLatency: "latency",
		MetricKeySetAge: "age", MetricKeySetRefreshFailing: "failing"} {
		m := findMetric(rm, metricName)
		if m == nil {
			continue
		}
		switch data := m.Data.(type) {
		case metricdata.Gauge[int64]:
			for _, dp := range data.DataPoints {
				put(short, dp.Attributes, float64(dp.Value))
			}
		case metricdata.Gauge[float64]:
			for _, dp := range data.DataPoints {
				put(short, dp.Attributes, dp.Value)
			}
		default:
			t.Fatalf("%s is %T", metricName, m.Data)
		}
	}
	return out
}

// TestHealthScrapeStorm: 100 probes at once while the dependency is slow
// start one check; the result then serves the TTL.
func TestHealthScrapeStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _, _ := newObserver(t, Config{})
		redis := &dep{block: make(chan struct{})}
		h := o.Health(Check{Name: "redis", Ready: redis})
		codes := make(chan int, 100)
		for range 100 {
			go func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
				codes <- rec.Code
			}()
		}
		synctest.Wait() // every probe waits on the one running check
		require.Equal(t, int32(1), redis.calls.Load())
		close(redis.block)
		for range 100 {
			require.Equal(t, 200, <-codes)
		}
		for range 100 {
			code, _ := getHealth(t, h)
			require.Equal(t, 200, code)
		}
		require.Equal(t, int32(1), redis.calls.Load(), "cached for the TTL")
		time.Sleep(time.Second) // fake time in the bubble
		getHealth(t, h)
		require.Equal(t, int32(2), redis.calls.Load(), "checked again after the TTL")
	})
}

// ctxDep honours its context: it waits for it to end.
type ctxDep struct{ calls atomic.Int32 }

func (d *ctxDep) Ready(ctx context.Context) error {
	d.calls.Add(1)
	<-ctx.Done()
	return errors.New("redisstore: ping: " + ctx.Err().Error())
}

// TestHealthTimeout: a hung dependency answers 503 within the timeout;
// one that ignores its context never gets a second check in flight.
func TestHealthTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _, _ := newObserver(t, Config{CheckTimeout: 300 * time.Millisecond})
		hung := &ctxDep{}
		stuck := &dep{block: make(chan struct{})}
		h := o.Health(Check{Name: "redis", Ready: hung}, Check{Name: "stuck", Ready: stuck})
		start := time.Now()
		code, b := getHealth(t, h)
		require.Equal(t, 503, code)
		require.Equal(t, 300*time.Millisecond, time.Since(start), "checks run concurrently, each bounded")
		// The check's deadline and the wait's timer end at one instant:
		// either error text may win.
		require.NotEmpty(t, b.Checks[0].Error)
		require.Equal(t, "telemetry: check timed out after 300ms", b.Checks[1].Error)
		require.Equal(t, 0.3, b.Checks[1].LatencySeconds)

		time.Sleep(5 * time.Second) // the bubble's clock: no real time passes
		code, _ = getHealth(t, h)
		require.Equal(t, 503, code)
		require.Equal(t, int32(2), hung.calls.Load(), "a check that ended is run again")
		require.Equal(t, int32(1), stuck.calls.Load(), "never two checks in flight")
		close(stuck.block)
		synctest.Wait()
		code, _ = getHealth(t, h)
		require.Equal(t, 503, code, "redis still hangs")
		require.Equal(t, int32(1), stuck.calls.Load(), "the late result is fresh")
	})
}

// TestHealthCallerGivesUp: a probe that disconnects stops waiting, and
// does not cancel the check that others share.
func TestHealthCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _, _ := newObserver(t, Config{})
		redis := &dep{block: make(chan struct{})}
		h := o.Health(Check{Name: "redis", Ready: redis})
		ctx, cancel := context.WithCancel(t.Context())
		rec := httptest.NewRecorder()
		go cancel()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil).WithContext(ctx))
		require.Equal(t, 503, rec.Code)
		close(redis.block)
		synctest.Wait()
		code, _ := getHealth(t, h)
		require.Equal(t, 200, code, "the shared check completed")
		require.Equal(t, int32(1), redis.calls.Load())
	})
}

type panicDep struct{}

func (panicDep) Ready(context.Context) error { panic("boom") }

func TestHealthReadyPanics(t *testing.T) {
	o, _, _ := newObserver(t, Config{})
	code, b := getHealth(t, o.Health(Check{Name: "x", Ready: panicDep{}}))
	require.Equal(t, 503, code)
	require.Equal(t, "telemetry: check panicked", b.Checks[0].Error)
}
