package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
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
// otel.GetMeterProvider(). Records at Info level and above are counted even
// when next would drop them for their level. It panics if next is nil.
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

type logHandler struct {
	next    slog.Handler
	counter *eventCounter // fallback for records without a request context
	event   string        // from WithAttrs, at top level
	reason  string
	grouped bool // attributes added from now on are inside a group
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, rec slog.Record) error {
	event, reason := h.event, h.reason
	if !h.grouped {
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case KeyEvent:
				if a.Value.Kind() == slog.KindString {
					event = a.Value.String()
				}
			case KeyReason:
				if a.Value.Kind() == slog.KindString {
					reason = a.Value.String()
				}
			}
			return true
		})
	}
	if ctx == nil {
		ctx = context.Background()
	}
	sc, st, root := spanContextRoot(ctx)
	if event != "" {
		c := h.counter
		if st != nil {
			c = st.obs.events
		}
		c.add(ctx, event, reason)
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
			if a.Value.Kind() != slog.KindString {
				continue
			}
			switch a.Key {
			case KeyEvent:
				h2.event = a.Value.String()
			case KeyReason:
				h2.reason = a.Value.String()
			}
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
	sets  sync.Map // [2]string -> []metric.AddOption
	n     atomic.Int32
	other []metric.AddOption
}

func newEventCounter(mp metric.MeterProvider) (*eventCounter, error) {
	c, err := mp.Meter(scope).Int64Counter(MetricSecurityEvents,
		metric.WithUnit("{event}"),
		metric.WithDescription("Security events by event and reason."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: create %s: %w", MetricSecurityEvents, err)
	}
	return &eventCounter{c: c, other: eventOptions("other", "other")}, nil
}

func eventOptions(event, reason string) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String(KeyEvent, event), attribute.String(KeyReason, reason)))}
}

func (c *eventCounter) add(ctx context.Context, event, reason string) {
	if c == nil {
		return
	}
	k := [2]string{event, reason}
	if v, ok := c.sets.Load(k); ok {
		c.c.Add(ctx, 1, v.([]metric.AddOption)...)
		return
	}
	opts := c.other
	if c.n.Load() < maxEventSets {
		opts = eventOptions(event, reason)
		if v, loaded := c.sets.LoadOrStore(k, opts); loaded {
			opts = v.([]metric.AddOption)
		} else {
			c.n.Add(1)
		}
	}
	c.c.Add(ctx, 1, opts...)
}
