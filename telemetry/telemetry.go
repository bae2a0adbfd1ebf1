package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiguard/apiguard/internal/events"
)

// scope is the instrumentation scope of apiguard's meters and tracers.
const scope = "github.com/apiguard/apiguard/telemetry"

// Metric names.
const (
	// MetricRequestDuration is the server request duration histogram, in
	// seconds, as OpenTelemetry's HTTP semantic conventions name it.
	MetricRequestDuration = "http.server.request.duration"
	// MetricSecurityEvents counts security events by event, reason and policy.
	MetricSecurityEvents = "apiguard.security.events"
)

// UnmatchedRoute is the http.route value of requests that matched no
// route pattern.
const UnmatchedRoute = "unmatched"

// Config configures an [Observer]. A zero field takes the default in its
// comment; the zero Config is ready to use.
type Config struct {
	// Header carries the correlation ID in and out. Default: X-Request-ID.
	Header string
	// Logger is where the observer's records go (replaced IDs, client
	// reports, baseline drift), and the packages' records through
	// [Observer.Logger]. Default: slog.Default(); while that is still
	// slog's built-in logger, a [log/slog.TextHandler] on log.Writer() in
	// its place, so that [Observer.Logger] may be passed to
	// slog.SetDefault without a deadlock.
	Logger *slog.Logger
	// MeterProvider creates the request-duration histogram, the
	// security-event counter and the dependency gauges. Default:
	// otel.GetMeterProvider(), a no-op until the application installs an
	// SDK.
	MeterProvider metric.MeterProvider
	// TracerProvider starts one server span per request, a child of a
	// valid incoming traceparent or else a new root. Set it to
	// otel.GetTracerProvider() to use the global one.
	//
	// Default: nil, no spans, which costs three fewer allocations per
	// request. Trace context still works: a valid incoming traceparent is
	// continued (it is in the request context, and [NewTransport] forwards
	// it), and a missing or malformed one is replaced by a new root trace
	// ID that the log records and [NewTransport] carry.
	TracerProvider trace.TracerProvider
	// Propagator extracts the incoming trace context. Default:
	// propagation.TraceContext{} (W3C traceparent and tracestate).
	Propagator propagation.TextMapPropagator
	// Rand is the source of new correlation IDs. Default: crypto/rand,
	// read 4 KiB at a time and handed out in pieces, so that a request
	// does not pay for a call to the system's generator.
	Rand io.Reader
	// Now is the clock for durations and the drift baseline. Default: time.Now.
	Now func() time.Time
	// MaxReportBytes caps the body of one client report request; a larger
	// body is answered 413. Default: 64 KiB.
	MaxReportBytes int64
	// MaxReports caps the reports in one request; more are answered 400.
	// Default: 100.
	MaxReports int
	// Drift configures baseline-drift detection.
	Drift DriftConfig
	// DeviceModelHeader names a request header (X-Device-Model, say)
	// whose value becomes the device_model attribute of the security
	// events counted in that request, so that an emulator farm shows up as
	// one model. A value is kept if it is 1 to 64 characters of
	// [A-Za-z0-9 ._,()/-] (longer ones are cut at 64) and is one of the
	// first [Config.MaxDeviceModels] distinct ones; a missing or invalid
	// value is "unknown", any further one "other". The header is the
	// client's to forge: it labels traffic, it proves nothing. Default: ""
	// (no device_model attribute).
	DeviceModelHeader string
	// MaxDeviceModels bounds the distinct device_model values. Default: 50.
	MaxDeviceModels int
	// CheckTimeout bounds one readiness check of [Observer.Health].
	// Default: 2 seconds.
	CheckTimeout time.Duration
	// CheckCacheTTL is how long a readiness result is reused before the
	// check runs again, so that probes and scrapes cannot hammer a
	// dependency. Default: 1 second.
	CheckCacheTTL time.Duration
	// NoRequestMetrics skips the request-duration histogram and drift
	// detection, and with them the two clock reads per request, for
	// services that measure requests elsewhere and want correlation IDs
	// and trace context only. Security events are still counted by the
	// log handler. Default: false.
	NoRequestMetrics bool
}

// Observer is the telemetry middleware and its state. It is safe for
// concurrent use by multiple goroutines. The zero value is not usable;
// create one with [New].
type Observer struct {
	header     string // canonical form
	logger     *slog.Logger
	tracer     trace.Tracer // nil: no spans
	prop       propagation.TextMapPropagator
	fastProp   bool // prop is the default TraceContext: skip it when no traceparent
	noMetrics  bool
	rand       io.Reader
	now        func() time.Time
	maxReport  int64
	maxReports int

	duration metric.Float64Histogram
	events   *eventCounter
	drift    *drift

	deviceHeader string // canonical form; "" when off
	devices      *deviceSet
	meter        metric.Meter
	checkTimeout time.Duration
	checkTTL     time.Duration

	spanOpts  []trace.SpanStartOption
	routesMu  sync.RWMutex
	routes    map[string]*routeEntry
	overflow  *routeEntry
	maxRoutes int // [maxRoutes]; lowered by tests only
}

// maxAttrSets bounds the cached attribute sets of one route.
const maxAttrSets = 256

// maxRoutes bounds the routes telemetry keeps state for; past it, new
// routes are measured as [OverflowRoute].
const maxRoutes = 1024

// OverflowRoute is the http.route value of routes past the first 1024
// distinct ones, which only a misuse of [SetRoute] can produce.
const OverflowRoute = "other"

// New returns an Observer for cfg. It returns an error for an invalid
// configuration: a Header or DeviceModelHeader that is not a valid header
// field name, or a negative limit or duration.
func New(cfg Config) (*Observer, error) {
	if cfg.Header == "" {
		cfg.Header = "X-Request-ID"
	}
	if !validHeaderName(cfg.Header) {
		return nil, fmt.Errorf("telemetry: Config.Header %q is not a valid header name", cfg.Header)
	}
	if cfg.DeviceModelHeader != "" && !validHeaderName(cfg.DeviceModelHeader) {
		return nil, fmt.Errorf("telemetry: Config.DeviceModelHeader %q is not a valid header name", cfg.DeviceModelHeader)
	}
	if cfg.MaxReportBytes < 0 || cfg.MaxReports < 0 {
		return nil, errors.New("telemetry: Config.MaxReportBytes and Config.MaxReports must not be negative")
	}
	if cfg.MaxDeviceModels < 0 {
		return nil, errors.New("telemetry: Config.MaxDeviceModels must not be negative")
	}
	if cfg.CheckTimeout < 0 {
		return nil, errors.New("telemetry: Config.CheckTimeout must not be negative")
	}
	if cfg.CheckCacheTTL < 0 {
		return nil, errors.New("telemetry: Config.CheckCacheTTL must not be negative")
	}
	if cfg.MaxDeviceModels == 0 {
		cfg.MaxDeviceModels = 50
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.CheckCacheTTL == 0 {
		cfg.CheckCacheTTL = time.Second
	}
	if cfg.MaxReportBytes == 0 {
		cfg.MaxReportBytes = 64 << 10
	}
	if cfg.MaxReports == 0 {
		cfg.MaxReports = 100
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = otel.GetMeterProvider()
	}
	fastTraceparent := cfg.Propagator == nil
	if cfg.Propagator == nil {
		cfg.Propagator = propagation.TraceContext{}
	}
	if cfg.Rand == nil {
		cfg.Rand = batchedRand{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d, err := newDrift(cfg.Drift)
	if err != nil {
		return nil, err
	}
	meter := cfg.MeterProvider.Meter(scope)
	duration, err := meter.Float64Histogram(MetricRequestDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	if err != nil {
		return nil, fmt.Errorf("telemetry: create %s: %w", MetricRequestDuration, err)
	}
	events, err := newEventCounter(cfg.MeterProvider)
	if err != nil {
		return nil, err
	}
	o := &Observer{
		header:     textproto.CanonicalMIMEHeaderKey(cfg.Header),
		prop:       cfg.Propagator,
		fastProp:   fastTraceparent,
		noMetrics:  cfg.NoRequestMetrics,
		rand:       cfg.Rand,
		now:        cfg.Now,
		maxReport:  cfg.MaxReportBytes,
		maxReports: cfg.MaxReports,
		duration:   duration,
		events:     events,
		drift:      d,
		spanOpts:   []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)},
		routes:     make(map[string]*routeEntry),
		overflow:   newRouteEntry(OverflowRoute, cfg.Now()),
		maxRoutes:  maxRoutes,

		meter:        meter,
		checkTimeout: cfg.CheckTimeout,
		checkTTL:     cfg.CheckCacheTTL,
	}
	if cfg.DeviceModelHeader != "" {
		o.deviceHeader = textproto.CanonicalMIMEHeaderKey(cfg.DeviceModelHeader)
		o.devices = newDeviceSet(cfg.MaxDeviceModels)
	}
	if cfg.TracerProvider != nil {
		o.tracer = cfg.TracerProvider.Tracer(scope)
	}
	o.logger = slog.New(bindLogHandler(cfg.Logger.Handler(), events))
	return o, nil
}

// Logger returns the logger to give every apiguard package as its
// Config.Logger: [Config.Logger] with correlation and trace IDs added to
// records logged with a request context, and security events counted on
// [Config.MeterProvider], in a request or not (key-set refresh failures,
// store outages). An event a package logs in a request is counted once,
// whichever logger it logs with.
//
// It may be passed to slog.SetDefault, so that the application's own
// records carry the IDs too.
func (o *Observer) Logger() *slog.Logger {
	return o.logger
}

// Handler returns next wrapped with correlation IDs, trace context,
// metrics and drift detection. Put it outermost, so that every other
// middleware sees the ID. It panics if next is nil.
func (o *Observer) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("telemetry: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.serve(w, r, next)
	})
}

func (o *Observer) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	var start time.Time
	if !o.noMetrics {
		start = o.now()
	}
	st := &reqState{obs: o}
	if o.devices != nil {
		st.reqHeader = r.Header
	}
	replaced := false
	if vals := r.Header[o.header]; len(vals) == 1 && ValidID(vals[0]) {
		st.id = vals[0]
	} else {
		replaced = len(vals) > 0
		st.id = newID(o.rand, &st.rnd, &st.idBuf)
		st.fresh = true
	}
	parent := r.Context()
	if _, ok := r.Header["Traceparent"]; ok || !o.fastProp {
		parent = o.prop.Extract(parent, propagation.HeaderCarrier(r.Header))
	}
	st.Context = parent
	var ctx context.Context = st
	var span trace.Span
	if o.tracer != nil {
		ctx, span = o.tracer.Start(st, r.Method, o.spanOpts...)
	}
	st.hdr[0] = st.id
	w.Header()[o.header] = st.hdr[:]
	st.rw.w = w
	r2 := r.WithContext(ctx)
	if replaced {
		o.logger.LogAttrs(ctx, slog.LevelWarn, "telemetry: incoming correlation ID replaced",
			slog.String("event", "correlation_id_replaced"),
			slog.String("reason", "invalid_id"))
	}

	next.ServeHTTP(&st.rw, r2)
	if o.noMetrics && span == nil {
		return
	}

	status := st.rw.statusCode()
	route := st.route
	if route == "" {
		route = patternPath(r2.Pattern)
	}
	if route == "" {
		route = UnmatchedRoute
	}
	method := normalizeMethod(r.Method)
	var e *routeEntry
	var end time.Time
	var elapsed time.Duration
	if !o.noMetrics {
		end = o.now()
		elapsed = end.Sub(start)
		e = o.route(route)
		o.duration.Record(ctx, elapsed.Seconds(), e.recordOptions(method, status)...)
	}
	if span != nil && span.IsRecording() {
		span.SetName(method + " " + route)
		span.SetAttributes(
			attribute.String("http.request.method", method),
			attribute.Int("http.response.status_code", status),
			attribute.String("http.route", route),
			attribute.String("apiguard.correlation_id", st.id))
		if status >= 500 {
			span.SetStatus(codes.Error, "")
		}
	}
	if span != nil {
		span.End()
	}
	if o.drift != nil && e != nil {
		if ev := o.drift.observe(&e.stats, status, elapsed, end); ev != nil {
			o.logger.LogAttrs(ctx, slog.LevelWarn, "telemetry: baseline drift",
				slog.String("event", "baseline_drift"),
				slog.String("reason", ev.reason),
				slog.String("route", e.name),
				slog.Float64("live", ev.live),
				slog.Float64("baseline", ev.baseline))
		}
	}
}

// route returns the entry of a route, creating it if there is room; past
// o.maxRoutes routes, new ones share the entry named [OverflowRoute].
func (o *Observer) route(name string) *routeEntry {
	o.routesMu.RLock()
	e := o.routes[name]
	o.routesMu.RUnlock()
	if e != nil {
		return e
	}
	o.routesMu.Lock()
	defer o.routesMu.Unlock()
	if e = o.routes[name]; e != nil {
		return e
	}
	if len(o.routes) >= o.maxRoutes {
		return o.overflow
	}
	e = newRouteEntry(name, o.now())
	o.routes[name] = e
	return e
}

// routeEntry holds what telemetry keeps per route: the cached metric
// attribute sets and the drift statistics.
type routeEntry struct {
	name  string
	attrs atomic.Pointer[map[uint32][]metric.RecordOption] // copy on write
	mu    sync.Mutex                                       // serialises writers of attrs
	stats routeStats
}

func newRouteEntry(name string, now time.Time) *routeEntry {
	e := &routeEntry{name: name}
	e.stats.start = now
	e.attrs.Store(&map[uint32][]metric.RecordOption{})
	return e
}

func (e *routeEntry) recordOptions(method string, status int) []metric.RecordOption {
	k := uint32(methodIndex(method))<<16 | uint32(status&0xffff) // #nosec G115 -- 0..9 and masked to 16 bits
	if opts, ok := (*e.attrs.Load())[k]; ok {
		return opts
	}
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String("http.request.method", method),
		attribute.Int("http.response.status_code", status),
		attribute.String("http.route", e.name)))}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.attrs.Load()
	if len(old) < maxAttrSets {
		m := make(map[uint32][]metric.RecordOption, len(old)+1)
		for k2, v := range old {
			m[k2] = v
		}
		m[k] = opts
		e.attrs.Store(&m)
	}
	return opts
}

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 1
	case http.MethodHead:
		return 2
	case http.MethodPost:
		return 3
	case http.MethodPut:
		return 4
	case http.MethodPatch:
		return 5
	case http.MethodDelete:
		return 6
	case http.MethodConnect:
		return 7
	case http.MethodOptions:
		return 8
	case http.MethodTrace:
		return 9
	}
	return 0
}

// patternPath drops the method from a ServeMux pattern ("GET /x/{id}"
// becomes "/x/{id}"), as http.route holds the path template only.
func patternPath(p string) string {
	if i := strings.IndexByte(p, ' '); i >= 0 {
		return strings.TrimLeft(p[i+1:], " \t")
	}
	return p
}

// normalizeMethod keeps the standard methods and folds the rest into
// "_OTHER", as OpenTelemetry's HTTP conventions ask, so that a client
// inventing methods cannot add series.
func normalizeMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '"' || c == '(' || c == ')' || c == ',' ||
			c == '/' || c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' ||
			c == '[' || c == '\\' || c == ']' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// reqState is the per-request state. It is itself the context that
// carries it, which saves an allocation per request.
type reqState struct {
	context.Context
	obs   *Observer
	id    string
	route string
	hdr   [1]string
	rnd   [24]byte          // random bytes of a new ID and root span; here to save an allocation
	idBuf [32]byte          // the hex of a new ID, which id points into; also the hex of the root trace ID
	spHex [16]byte          // the hex of the root span ID
	hexOK bool              // idBuf and spHex hold the root span context's hex
	fresh bool              // id was generated here, from rnd
	once  sync.Once         // makes sc
	sc    trace.SpanContext // without a tracer: the root trace of this request
	rw    responseWriter

	reqHeader http.Header // the request's header, for the device model; nil when off
}

type stateKeyType struct{}

var stateKey = &stateKeyType{}

// Value returns the request state for telemetry's key and as the events
// sink of the request, and defers to the parent context for every other
// key.
func (s *reqState) Value(key any) any {
	if key == stateKey || key == (events.SinkKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// CountEvent counts a security event of the request on its observer's
// provider; it implements [events.Sink].
func (s *reqState) CountEvent(ctx context.Context, e events.Event) {
	s.obs.events.add(ctx, e, s.deviceModel())
}

// deviceModel returns the device_model attribute value of the request,
// or "" when the observer has none.
func (s *reqState) deviceModel() string {
	if s.obs.devices == nil {
		return ""
	}
	var v string
	if vals := s.reqHeader[s.obs.deviceHeader]; len(vals) == 1 {
		v = vals[0]
	}
	return s.obs.devices.value(v)
}

func stateFrom(ctx context.Context) *reqState {
	if ctx == nil {
		return nil
	}
	st, _ := ctx.Value(stateKey).(*reqState)
	return st
}

// spanContextOf returns the span context of ctx: the current span's, or
// else the one telemetry keeps for the request when no tracer is set.
func spanContextOf(ctx context.Context) (trace.SpanContext, *reqState) {
	sc, st, _ := spanContextRoot(ctx)
	return sc, st
}

// spanContextRoot is spanContextOf, and reports whether the span context
// is the request's root kept by telemetry, whose IDs are in hex in
// [reqState.rootHex].
func spanContextRoot(ctx context.Context) (trace.SpanContext, *reqState, bool) {
	st := stateFrom(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() && st != nil && st.obs.tracer == nil {
		st.once.Do(st.newRootSpanContext)
		return st.sc, st, st.hexOK
	}
	return sc, st, false
}

// rootHex returns the trace and span IDs of the request's root span
// context in hex, without allocating: they were encoded into the request
// state with it. Call it only after spanContextRoot reported the root.
func (st *reqState) rootHex() (traceID, spanID string) {
	// idBuf and spHex are heap memory written once, under st.once, before
	// this is reached, and never again.
	return unsafe.String(&st.idBuf[0], len(st.idBuf)), unsafe.String(&st.spHex[0], len(st.spHex)) // #nosec G103 -- audited: see above
}

// newRootSpanContext returns a new, unsampled root span context. When the
// request's correlation ID was just generated, its random bytes are the
// trace ID (so the two match in logs) and the rest of the random read is
// the span ID; otherwise trace and span IDs, which need uniqueness rather
// than secrecy, come from a fast generator.
// It is made on first use, which most requests never reach.
func (st *reqState) newRootSpanContext() {
	var tid trace.TraceID
	var sid trace.SpanID
	if st.fresh {
		copy(tid[:], st.rnd[:16])
		copy(sid[:], st.rnd[16:])
	}
	// #nosec G404 -- trace and span IDs need uniqueness, not secrecy (W3C
	// Trace Context §3.2.2.3); the correlation ID uses crypto/rand.
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], mrand.Uint64()) // #nosec G404 -- see above
		binary.BigEndian.PutUint64(tid[8:], mrand.Uint64()) // #nosec G404 -- see above
	}
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], mrand.Uint64()) // #nosec G404 -- see above
	}
	st.sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
	// The hex for log records, in memory the request state already has: a
	// fresh ID's idBuf is the trace ID's hex already (the same bytes); an
	// incoming ID does not use idBuf.
	switch {
	case !st.fresh:
		hex.Encode(st.idBuf[:], tid[:])
	case [16]byte(st.rnd[:16]) != tid:
		return // the random bytes were all zero and replaced: no hex kept
	}
	hex.Encode(st.spHex[:], sid[:])
	st.hexOK = true
}

// IDFrom returns the correlation ID of the request whose context is ctx.
// It reports false, with "", when ctx did not come through
// [Observer.Handler].
func IDFrom(ctx context.Context) (string, bool) {
	if st := stateFrom(ctx); st != nil {
		return st.id, true
	}
	return "", false
}

// SetRoute names the route of the request whose context is ctx, for
// routers other than [net/http.ServeMux] (chi's route pattern, say), or
// when middleware between telemetry and the mux copies the request so
// that telemetry cannot see r.Pattern. The route becomes the http.route
// metric attribute, so it must be a pattern, never a raw path. Call it
// from the handler's goroutine before the handler returns. It does nothing
// for a context that did not come through [Observer.Handler].
func SetRoute(ctx context.Context, route string) {
	if st := stateFrom(ctx); st != nil {
		st.route = route
	}
}
