package telemetry

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/apiguard/apiguard/internal/events"
)

// Attribute keys read from and added to log records.
const (
	// KeyEvent marks a record as a security event; its value is the event
	// name (auth_failed, replay, rate_limited, ...).
	KeyEvent = "event"
	// KeyReason is the event's reason, a short fixed string.
	KeyReason = "reason"
	// KeyCorrelationID is added to every record logged with a request
	// context.
	KeyCorrelationID = "correlation_id"
	// KeyTraceID and KeySpanID are added when the context carries a valid
	// span context.
	KeyTraceID = "trace_id"
	KeySpanID  = "span_id"
	// KeyDeviceModel is the attribute of security events that carries the
	// device model, when [Config.DeviceModelHeader] is set.
	KeyDeviceModel = "device_model"
	// KeyShadow is the attribute, "true", of the events of refusals that a
	// control in shadow mode did not make (the would-deny count); events
	// of enforced decisions carry no shadow attribute.
	KeyShadow = "shadow"
)

// maxEventSets bounds the distinct (event, reason) pairs counted; further
// pairs are counted as ("other", "other") so that a caller that logs
// unbounded values cannot multiply series.
const maxEventSets = 256

// NewLogHandler returns a slog.Handler that adds correlation_id, trace_id
// and span_id to every record logged with a request context, counts
// security events (records with a string "event" attribute) in the
// apiguard.security.events counter, and passes records on to next.
//
// Events are counted against the [Observer] that handled the request when
// the record carries its context, and otherwise against
// otel.GetMeterProvider(): prefer [Observer.Logger], which counts them on
// the observer's provider. Records at Info level and above are counted
// even when next would drop them for their level. It panics if next is
// nil.
func NewLogHandler(next slog.Handler) slog.Handler {
	if next == nil {
		panic("telemetry: nil slog.Handler")
	}
	if lh, ok := next.(*logHandler); ok {
		return lh
	}
	c, err := newEventCounter(otel.GetMeterProvider())
	if err != nil {
		// The global provider returns no error for a valid name; keep
		// logging even if a custom one does.
		c = nil
	}
	return &logHandler{next: next, counter: c}
}

// bindLogHandler returns h wrapped in a logHandler that counts records
// outside a request with c; a logHandler is rebound rather than wrapped
// again. slog's built-in default handler is replaced by a text handler on
// log.Writer(): the built-in one writes through the log package, which
// slog.SetDefault points back at the new default handler, a deadlock.
func bindLogHandler(h slog.Handler, c *eventCounter) slog.Handler {
	if lh, ok := h.(*logHandler); ok {
		lh2 := *lh
		lh2.counter = c
		return &lh2
	}
	if reflect.TypeOf(h).String() == "*slog.defaultHandler" {
		h = slog.NewTextHandler(log.Writer(), nil)
	}
	return &logHandler{next: h, counter: c}
}

type logHandler struct {
	next    slog.Handler
	counter *eventCounter // fallback for records without a request context
	event   events.Event  // from WithAttrs, at top level
	grouped bool          // attributes added from now on are inside a group
}

// CountsEvents implements [events.Counter]: the events of a record are
// read from its top-level attributes, so none are counted in a group.
func (h *logHandler) CountsEvents() bool { return !h.grouped }

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, rec slog.Record) error {
	event := h.event
	if !h.grouped {
		rec.Attrs(func(a slog.Attr) bool {
			event.Take(a)
			return true
		})
	}
	if ctx == nil {
		ctx = context.Background()
	}
	sc, st, root := spanContextRoot(ctx)
	if event.Name != "" && !events.Counted(ctx) {
		if st != nil {
			st.CountEvent(ctx, event)
		} else {
			h.counter.add(ctx, event, "")
		}
	}
	if !h.next.Enabled(ctx, rec.Level) {
		return nil
	}
	if st != nil || sc.IsValid() {
		rec = rec.Clone()
		if st != nil {
			rec.AddAttrs(slog.String(KeyCorrelationID, st.id))
		}
		if root {
			tid, sid := st.rootHex()
			rec.AddAttrs(slog.String(KeyTraceID, tid), slog.String(KeySpanID, sid))
		} else if sc.IsValid() {
			rec.AddAttrs(slog.String(KeyTraceID, sc.TraceID().String()), slog.String(KeySpanID, sc.SpanID().String()))
		}
	}
	return h.next.Handle(ctx, rec)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.next = h.next.WithAttrs(attrs)
	if !h.grouped {
		for _, a := range attrs {
			h2.event.Take(a)
		}
	}
	return &h2
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.next = h.next.WithGroup(name)
	h2.grouped = true
	return &h2
}

// eventCounter is the apiguard.security.events counter with a bounded
// cache of attribute sets.
type eventCounter struct {
	c     metric.Int64Counter
	sets  sync.Map // eventKey -> []metric.AddOption
	pairs sync.Map // [2]string of admitted (event, reason) pairs
	n     atomic.Int32
}

// eventKey is an (event, reason, policy, device_model) attribute set and
// the shadow flag; an empty policy or device model stands for no such
// attribute, and shadow false for no shadow attribute.
type eventKey struct {
	s      [4]string
	shadow bool
}

func newEventCounter(mp metric.MeterProvider) (*eventCounter, error) {
	c, err := mp.Meter(scope).Int64Counter(MetricSecurityEvents,
		metric.WithUnit("{event}"),
		metric.WithDescription("Security events by event, reason and policy."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: create %s: %w", MetricSecurityEvents, err)
	}
	return &eventCounter{c: c}, nil
}

func eventOptions(k eventKey) []metric.AddOption {
	kv := []attribute.KeyValue{attribute.String(KeyEvent, k.s[0]), attribute.String(KeyReason, k.s[1])}
	if k.s[2] != "" {
		kv = append(kv, attribute.String(events.KeyPolicy, k.s[2]))
	}
	if k.s[3] != "" {
		kv = append(kv, attribute.String(KeyDeviceModel, k.s[3]))
	}
	if k.shadow {
		kv = append(kv, attribute.String(KeyShadow, "true"))
	}
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

// add counts one event. The first [maxEventSets] distinct (event, reason,
// policy) sets are counted as such, later ones as ("other", "other", no
// policy); device is already bounded by the caller.
func (c *eventCounter) add(ctx context.Context, e events.Event, device string) {
	if c == nil {
		return
	}
	k := eventKey{s: [4]string{e.Name, e.Reason, e.Policy, device}, shadow: e.Shadow}
	if v, ok := c.sets.Load(k); ok {
		c.c.Add(ctx, 1, v.([]metric.AddOption)...)
		return
	}
	if !c.admit(e) {
		k.s[0], k.s[1], k.s[2] = "other", "other", ""
	}
	v, ok := c.sets.Load(k)
	if !ok {
		v, _ = c.sets.LoadOrStore(k, eventOptions(k))
	}
	c.c.Add(ctx, 1, v.([]metric.AddOption)...)
}

// admit reports whether the event's (event, reason, policy) set has, or
// can still get, its own series.
func (c *eventCounter) admit(e events.Event) bool {
	p := [3]string{e.Name, e.Reason, e.Policy}
	if _, ok := c.pairs.Load(p); ok {
		return true
	}
	if c.n.Load() >= maxEventSets {
		return false
	}
	if _, loaded := c.pairs.LoadOrStore(p, struct{}{}); !loaded {
		c.n.Add(1)
	}
	return true
}

// deviceSet bounds the device_model values: the first max distinct valid
// ones are kept.
type deviceSet struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

func newDeviceSet(maxModels int) *deviceSet {
	return &deviceSet{max: maxModels, seen: make(map[string]struct{}, maxModels)}
}

// Values of device_model besides the models themselves.
const (
	deviceUnknown = "unknown" // header missing, repeated or invalid
	deviceOther   = "other"   // past the first Config.MaxDeviceModels
)

// value returns the device_model value for a header value.
func (d *deviceSet) value(s string) string {
	s = deviceModel(s)
	if s == "" {
		return deviceUnknown
	}
	d.mu.RLock()
	_, ok := d.seen[s]
	n := len(d.seen)
	d.mu.RUnlock()
	if ok {
		return s
	}
	if n >= d.max {
		return deviceOther
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[s]; ok {
		return s
	}
	if len(d.seen) >= d.max {
		return deviceOther
	}
	s = strings.Clone(s) // keep no reference to the request's header memory
	d.seen[s] = struct{}{}
	return s
}

// deviceModel returns s cut to 64 bytes if it is made of
// [A-Za-z0-9 ._,()/-] only, and "" otherwise; it is the rule signing
// applies to the device model it logs.
func deviceModel(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == ' ' ||
			c == '.' || c == '_' || c == ',' || c == '-' || c == '(' || c == ')' || c == '/') {
			return ""
		}
	}
	return s
}
