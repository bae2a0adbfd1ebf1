package events

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sink is a request's Sink in a context, as telemetry's middleware puts it.
type sink struct {
	context.Context
	counts map[string]int
}

func (s *sink) Value(key any) any {
	if key == (SinkKey{}) {
		return s
	}
	return s.Context.Value(key)
}

func (s *sink) CountEvent(_ context.Context, e Event) { s.counts[e.Name+"/"+e.Reason]++ }

// recorder is a handler that keeps the contexts and records it handles;
// when counts is set it is a Counter that counts what Log did not.
type recorder struct {
	ctxs   []context.Context
	recs   []slog.Record
	counts map[string]int
	off    bool // CountsEvents reports false
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) Handle(ctx context.Context, r slog.Record) error {
	h.ctxs = append(h.ctxs, ctx)
	h.recs = append(h.recs, r)
	if h.counts != nil && !Counted(ctx) {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == KeyEvent {
				h.counts[a.Value.String()]++
			}
			return true
		})
	}
	return nil
}
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

type counter struct{ *recorder }

func (c counter) CountsEvents() bool { return !c.off }

func TestLog(t *testing.T) {
	tests := []struct {
		name       string
		level      slog.Level
		attrs      []slog.Attr
		wantCounts map[string]int
	}{
		{name: "event_counted_once", level: slog.LevelWarn,
			attrs:      []slog.Attr{slog.String("event", "auth_failed"), slog.String("reason", "expired"), slog.String("error", "x")},
			wantCounts: map[string]int{"auth_failed/expired": 1}},
		{name: "event_without_reason", level: slog.LevelInfo,
			attrs:      []slog.Attr{slog.String("event", "replay")},
			wantCounts: map[string]int{"replay/": 1}},
		{name: "debug_counted", level: slog.LevelDebug,
			attrs:      []slog.Attr{slog.String("event", "replay"), slog.String("reason", "x")},
			wantCounts: map[string]int{"replay/x": 1}},
		{name: "event_not_a_string", level: slog.LevelWarn,
			attrs:      []slog.Attr{slog.Int("event", 42)},
			wantCounts: map[string]int{}},
		{name: "plain_record", level: slog.LevelWarn, attrs: nil, wantCounts: map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sink{Context: context.Background(), counts: map[string]int{}}
			h := &recorder{counts: map[string]int{}}
			Log(s, slog.New(counter{h}), tt.level, "msg", tt.attrs...)
			require.Equal(t, tt.wantCounts, s.counts)
			require.Len(t, h.recs, 1, "the record is logged")
			require.Equal(t, len(tt.attrs), h.recs[0].NumAttrs())
			require.Equal(t, len(tt.wantCounts) > 0, Counted(h.ctxs[0]))
			if len(tt.wantCounts) > 0 {
				require.Empty(t, h.counts, "a counting handler does not count what Log counted")
			}
			require.Same(t, s, h.ctxs[0].Value(SinkKey{}), "values of ctx stay reachable")
		})
	}
}

// TestLogOutsideRequest: without a Sink in the context, Log leaves the
// counting to the handler.
func TestLogOutsideRequest(t *testing.T) {
	h := &recorder{counts: map[string]int{}}
	//lint:ignore SA1012 a nil context stands for Background, as in slog
	Log(nil, slog.New(counter{h}), slog.LevelWarn, "jwks fetch failed", slog.String("event", "jwks_error"))
	Log(context.Background(), slog.New(counter{h}), slog.LevelWarn, "jwks fetch failed", slog.String("event", "jwks_error"))
	require.Equal(t, map[string]int{"jwks_error": 2}, h.counts)
	require.False(t, Counted(h.ctxs[1]))
	//lint:ignore SA1012 Counted accepts nil
	require.False(t, Counted(nil))
}

func TestWarnUnobserved(t *testing.T) {
	tests := []struct {
		name     string
		handler  func(*bytes.Buffer) slog.Handler
		wantWarn bool
	}{
		{name: "plain_json_logger", handler: func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }, wantWarn: true},
		{name: "counting_handler", handler: func(*bytes.Buffer) slog.Handler { return counter{&recorder{}} }},
		{name: "counting_handler_grouped", handler: func(*bytes.Buffer) slog.Handler { return counter{&recorder{off: true}} }, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := tt.handler(&buf)
			l := slog.New(h)
			require.Equal(t, !tt.wantWarn, Observed(l))
			WarnUnobserved(l, "auth")
			if c, ok := h.(counter); ok {
				require.Equal(t, tt.wantWarn, len(c.recs) == 1)
				if tt.wantWarn {
					require.Equal(t, slog.LevelWarn, c.recs[0].Level)
					require.True(t, strings.HasPrefix(c.recs[0].Message, "auth: Config.Logger"))
				}
				return
			}
			out := buf.String()
			require.Equal(t, 1, strings.Count(out, "\n"), "one record")
			require.Contains(t, out, `"level":"WARN"`)
			require.Contains(t, out, `auth: Config.Logger does not count security events`)
			require.Contains(t, out, "Observer's Logger()", "the warning names the fix")
		})
	}
}

func TestObservedNilIsDefault(t *testing.T) {
	require.Equal(t, Observed(slog.Default()), Observed(nil))
}
