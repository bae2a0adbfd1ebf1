package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/apiguard/apiguard/internal/problem"
)

// Dependency gauge names, one series per [Check] with the attribute
// dependency=[Check.Name].
const (
	// MetricDependencyReady is 1 while the dependency's last check found
	// it ready, else 0.
	MetricDependencyReady = "apiguard.dependency.ready"
	// MetricDependencyLatency is the duration of the last check, in
	// seconds.
	MetricDependencyLatency = "apiguard.dependency.latency"
	// MetricKeySetAge is the age of the key set, in seconds, of a
	// dependency with KeySetAge, while it has one loaded.
	MetricKeySetAge = "apiguard.keyset.age"
	// MetricKeySetRefreshFailing is 1 while the last refresh of such a
	// key set failed, else 0.
	MetricKeySetRefreshFailing = "apiguard.keyset.refresh.failing"
)

// Readier is a dependency that can say whether it is ready to serve:
// auth.Verifier, the redisstore stores, ratelimit.Limiter and attest's
// App Check have a Ready method. Ready returns nil when ready, and
// otherwise an error whose text names what is wrong and no secret.
type Readier interface {
	Ready(ctx context.Context) error
}

// Check is one dependency of [Observer.Health]. If Ready also has a
// method KeySetAge() (age time.Duration, loaded bool, lastErr error), as
// auth.Verifier does, its key set is measured too.
type Check struct {
	// Name names the dependency in the health answer and in the
	// dependency attribute of the gauges: 1 to 64 characters of
	// [a-z0-9_.-], fixed by the application ("jwks", "redis"). Required.
	Name string
	// Ready is the dependency. Required.
	Ready Readier
}

// keySetAger is the optional key-set method of a [Readier].
type keySetAger interface {
	KeySetAge() (age time.Duration, loaded bool, lastErr error)
}

// maxErrorText caps the error text of one check in the health answer.
const maxErrorText = 256

// Health returns a readiness handler (mount it at GET /readyz, say) and
// starts reporting the dependency gauges of checks on
// [Config.MeterProvider].
//
// A request runs every check concurrently, each bounded by
// [Config.CheckTimeout], and answers 200 when all are ready and 503
// otherwise, with a JSON body:
//
//	{"status":"not_ready","checks":[
//	  {"name":"jwks","status":"ready","latency_seconds":0.012},
//	  {"name":"redis","status":"not_ready","latency_seconds":2,"error":"..."}]}
//
// An error text is cut to 256 bytes. A result is reused for
// [Config.CheckCacheTTL], and a dependency never has more than one check
// running, so a storm of probes or scrapes cannot hammer it; a check that
// outlives its timeout is reported as failed while it finishes. A
// collection of the gauges runs the checks the same way. Methods other
// than GET and HEAD are answered 405. The answer names the dependencies
// and their errors: serve it to the orchestrator and the operators, not
// to the internet. Call Health once per set of checks.
//
// It panics, at wiring time, if a check has no Ready, an invalid Name,
// or the Name of another.
func (o *Observer) Health(checks ...Check) http.Handler {
	h := &health{o: o}
	seen := map[string]bool{}
	for _, c := range checks {
		if c.Ready == nil {
			panic(fmt.Sprintf("telemetry: Health: check %q has no Ready", c.Name))
		}
		if !validCheckName(c.Name) {
			panic(fmt.Sprintf("telemetry: Health: check name %q is not 1 to 64 characters of [a-z0-9_.-]", c.Name))
		}
		if seen[c.Name] {
			panic(fmt.Sprintf("telemetry: Health: check name %q is used twice", c.Name))
		}
		seen[c.Name] = true
		d := &dependency{name: c.Name, ready: c.Ready,
			attrs: metric.WithAttributeSet(attribute.NewSet(attribute.String("dependency", c.Name)))}
		d.ager, _ = c.Ready.(keySetAger)
		h.deps = append(h.deps, d)
	}
	if err := h.registerGauges(); err != nil {
		// The SDK returns no error for valid names and types; the handler
		// still answers without gauges if a custom provider does.
		o.logger.Error("telemetry: dependency gauges not registered", "error", err.Error())
	}
	return h
}

func validCheckName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

type health struct {
	o    *Observer
	deps []*dependency
}

// dependency holds a check's last result and its running check, if any.
type dependency struct {
	name  string
	ready Readier
	ager  keySetAger // nil when Ready has no KeySetAge
	attrs metric.MeasurementOption

	mu      sync.Mutex
	last    checkResult
	have    bool          // last holds a result
	running chan struct{} // closed when the running check ends; nil when none
}

type checkResult struct {
	err     string // "" when ready
	latency time.Duration
	at      time.Time // when the check ended
}

// result returns the dependency's result: the last one while it is
// fresh, else that of the running check, started if none is, waiting at
// most the check timeout for it.
func (d *dependency) result(ctx context.Context, o *Observer) checkResult {
	now := o.now()
	d.mu.Lock()
	if age := now.Sub(d.last.at); d.have && age >= 0 && age < o.checkTTL {
		r := d.last
		d.mu.Unlock()
		return r
	}
	done := d.running
	if done == nil {
		done = make(chan struct{})
		d.running = done
		go d.run(o, done) // #nosec G118 -- on purpose: a client that hangs up must not cancel the check the others wait for; d.run bounds it by CheckTimeout
	}
	d.mu.Unlock()

	timer := time.NewTimer(o.checkTimeout)
	defer timer.Stop()
	select {
	case <-done:
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.last
	case <-timer.C:
		return checkResult{err: "telemetry: check timed out after " + o.checkTimeout.String(), latency: o.checkTimeout, at: now}
	case <-ctx.Done():
		return checkResult{err: "telemetry: check abandoned: " + ctx.Err().Error(), latency: o.now().Sub(now), at: now}
	}
}

// run runs one check and keeps its result. It does not inherit the
// caller's context: its result is shared, so that one impatient caller
// must not cancel it for the others.
func (d *dependency) run(o *Observer, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), o.checkTimeout)
	defer cancel()
	start := o.now()
	err := callReady(ctx, d.ready)
	end := o.now()
	r := checkResult{latency: end.Sub(start), at: end}
	if err != nil {
		r.err = errorText(err)
	}
	d.mu.Lock()
	d.last, d.have, d.running = r, true, nil
	d.mu.Unlock()
	close(done)
}

// callReady calls Ready, turning a panic into an error: the check runs on
// a goroutine of telemetry's, where a panic would end the process.
func callReady(ctx context.Context, r Readier) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.New("telemetry: check panicked")
		}
	}()
	return r.Ready(ctx)
}

// errorText returns the text of err as valid UTF-8 of at most
// maxErrorText bytes.
func errorText(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if s == "" {
		return "not ready"
	}
	if len(s) > maxErrorText {
		s = s[:maxErrorText]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// results checks every dependency concurrently.
func (h *health) results(ctx context.Context) []checkResult {
	out := make([]checkResult, len(h.deps))
	var wg sync.WaitGroup
	for i, d := range h.deps {
		wg.Go(func() { out[i] = d.result(ctx, h.o) })
	}
	wg.Wait()
	return out
}

type healthAnswer struct {
	Status string        `json:"status"`
	Checks []checkAnswer `json:"checks"`
}

type checkAnswer struct {
	Name           string  `json:"name"`
	Status         string  `json:"status"`
	LatencySeconds float64 `json:"latency_seconds"`
	Error          string  `json:"error,omitempty"`
}

var errHealthMethod = problem.Problem{Type: problem.TypeBase + "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: "Readiness is read with GET."}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Write(w, errHealthMethod)
		return
	}
	res := h.results(r.Context())
	ans := healthAnswer{Status: "ready", Checks: make([]checkAnswer, len(res))}
	code := http.StatusOK
	for i, c := range res {
		a := checkAnswer{Name: h.deps[i].name, Status: "ready", LatencySeconds: c.latency.Seconds(), Error: c.err}
		if c.err != "" {
			a.Status = "not_ready"
			ans.Status = "not_ready"
			code = http.StatusServiceUnavailable
		}
		ans.Checks[i] = a
	}
	body, err := json.Marshal(ans)
	if err != nil { // plain strings and numbers: cannot fail
		body = []byte(`{"status":"not_ready"}`)
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(body, '\n'))
	}
}

// registerGauges reports the dependency gauges on the observer's
// provider, from the checks' results at each collection.
func (h *health) registerGauges() error {
	m := h.o.meter
	ready, err := m.Int64ObservableGauge(MetricDependencyReady,
		metric.WithDescription("1 while the dependency is ready, else 0."))
	if err != nil {
		return err
	}
	latency, err := m.Float64ObservableGauge(MetricDependencyLatency, metric.WithUnit("s"),
		metric.WithDescription("Duration of the dependency's last readiness check."))
	if err != nil {
		return err
	}
	age, err := m.Float64ObservableGauge(MetricKeySetAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the dependency's loaded key set."))
	if err != nil {
		return err
	}
	failing, err := m.Int64ObservableGauge(MetricKeySetRefreshFailing,
		metric.WithDescription("1 while the last refresh of the dependency's key set failed, else 0."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, ob metric.Observer) error {
		res := h.results(ctx)
		for i, d := range h.deps {
			ob.ObserveInt64(ready, boolInt(res[i].err == ""), d.attrs)
			ob.ObserveFloat64(latency, res[i].latency.Seconds(), d.attrs)
			if d.ager != nil {
				a, loaded, lastErr := d.ager.KeySetAge()
				if loaded {
					ob.ObserveFloat64(age, a.Seconds(), d.attrs)
				}
				ob.ObserveInt64(failing, boolInt(lastErr != nil), d.attrs)
			}
		}
		return nil
	}, ready, latency, age, failing)
	return err
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
