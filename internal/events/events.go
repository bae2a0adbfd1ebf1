// Package events is the contract by which apiguard's packages report
// security events to telemetry without importing it.
//
// A security event is a slog record with the string attributes "event"
// and "reason". A package logs it with [Log] rather than
// Logger.LogAttrs. When the context came through telemetry's middleware,
// Log counts the event there, whatever handler the logger has, and marks
// the context so that a log handler that also counts events (telemetry's)
// does not count it again. Events outside a request are counted only by a
// logger whose handler counts them ([Observed]); a package's New calls
// [WarnUnobserved] so that a logger that does not is reported once, at
// start-up.
package events

import (
	"context"
	"log/slog"
)

// Attribute keys of a security event. Policy names the limit or budget
// (a ratelimit Limiter's or FailureBudget's Name) an event is about.
// Shadow (a bool) is true on the event of a refusal that a control in
// shadow mode did not make: the request went on to the next handler.
const (
	KeyEvent  = "event"
	KeyReason = "reason"
	KeyPolicy = "policy"
	KeyShadow = "shadow"
)

// Event is what a security event is counted by: its name, its reason,
// for rate limits its policy, and whether it is a shadow-mode refusal
// (a would-deny). Every field is a bounded set chosen by apiguard or by
// the application's configuration, never by a client.
type Event struct {
	Name, Reason, Policy string
	Shadow               bool
}

// Take sets the field of e that a names, if a is a string attribute of
// an event (or the bool shadow attribute), and reports whether it did.
func (e *Event) Take(a slog.Attr) bool {
	if a.Key == KeyShadow && a.Value.Kind() == slog.KindBool {
		e.Shadow = a.Value.Bool()
		return true
	}
	if a.Value.Kind() != slog.KindString {
		return false
	}
	switch a.Key {
	case KeyEvent:
		e.Name = a.Value.String()
	case KeyReason:
		e.Reason = a.Value.String()
	case KeyPolicy:
		e.Policy = a.Value.String()
	default:
		return false
	}
	return true
}

// Sink counts security events. The context of a request that telemetry's
// middleware handles holds one under [SinkKey].
type Sink interface {
	// CountEvent counts one event; ctx is the context it was logged with.
	CountEvent(ctx context.Context, e Event)
}

// SinkKey is the context key of a request's [Sink].
type SinkKey struct{}

// Counter is implemented by slog handlers that count the security events
// they handle, in request or not (telemetry's).
type Counter interface {
	// CountsEvents reports whether the handler counts the events logged
	// through it; false, for instance, once attributes go into a group.
	CountsEvents() bool
}

// countedKey marks a context whose event [Log] has counted.
type countedKey struct{}

type counted struct{ context.Context }

func (c counted) Value(key any) any {
	if key == (countedKey{}) {
		return true
	}
	return c.Context.Value(key)
}

// Log logs a record through l, as l.LogAttrs(ctx, level, msg, attrs...)
// does, and counts it first in the [Sink] of ctx when it is a security
// event (a string "event" attribute among attrs), at any level.
// A counted record reaches l's handler with a context for which [Counted]
// reports true, so that it is counted once.
func Log(ctx context.Context, l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	if ctx == nil {
		ctx = context.Background()
	}
	if s, ok := ctx.Value(SinkKey{}).(Sink); ok {
		var e Event
		for _, a := range attrs {
			e.Take(a)
		}
		if e.Name != "" {
			s.CountEvent(ctx, e)
			ctx = counted{ctx}
		}
	}
	l.LogAttrs(ctx, level, msg, attrs...)
}

// Counted reports whether [Log] has counted the event logged with ctx;
// a counting handler must then not count it again.
func Counted(ctx context.Context) bool {
	return ctx != nil && ctx.Value(countedKey{}) != nil
}

// Observed reports whether the security events logged through l are
// counted outside requests too: whether its handler is a [Counter] that
// counts. A nil l stands for slog.Default().
func Observed(l *slog.Logger) bool {
	if l == nil {
		l = slog.Default()
	}
	c, ok := l.Handler().(Counter)
	return ok && c.CountsEvents()
}

// WarnUnobserved logs one warning through l, naming pkg and the fix, when
// l does not count security events ([Observed]). A package's New calls it
// once with its Config.Logger. A nil l stands for slog.Default().
func WarnUnobserved(l *slog.Logger, pkg string) {
	if l == nil {
		l = slog.Default()
	}
	if Observed(l) {
		return
	}
	l.LogAttrs(context.Background(), slog.LevelWarn,
		pkg+": Config.Logger does not count security events, so events outside a request "+
			"(key-set and store failures) never reach metrics; set Config.Logger to the "+
			"telemetry Observer's Logger()",
		slog.String("package", pkg))
}
