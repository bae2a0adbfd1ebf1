// Package shadowtest proves that a control's shadow mode decides exactly
// as its enforce mode: it replays one table of recorded requests, valid
// ones and attacks, through an enforce-mode and a shadow-mode instance of
// a middleware (each with its own fresh stores and its own clock reading
// the same instants) and compares the decisions request by request. It is
// imported only by tests.
package shadowtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/testkit"
)

// Start is the instant both instances' clocks read at the first request.
var Start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Case is one recorded request, replayed byte for byte in both modes.
type Case struct {
	// Name describes the request: the attack, or the valid use.
	Name string
	// Method, Target, Header and Body are the recorded request; Target is
	// an absolute URL or a path, as httptest.NewRequest takes it.
	Method, Target string
	Header         http.Header
	Body           []byte
	// Advance moves both clocks forward before the request.
	Advance time.Duration
	// Want is the sentinel enforce mode refuses the request with
	// (errors.Is), or nil for a request it must let through.
	Want error
}

// Record returns r as a Case named name that enforce mode refuses with
// want (nil: lets through). It reads r's body and gives r a new one that
// reads the same bytes, so that r can be recorded again.
func Record(tb testing.TB, name string, r *http.Request, want error) Case {
	tb.Helper()
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		require.NoError(tb, err)
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	return Case{Name: name, Method: r.Method, Target: r.URL.String(), Header: r.Header.Clone(), Body: body, Want: want}
}

// Instance is what Build returns: the middleware under test.
type Instance = func(http.Handler) http.Handler

// Wiring is what the driver hands Build for one mode.
type Wiring struct {
	// Shadow is the mode: true for the shadow instance.
	Shadow bool
	// Now is the instance's clock.
	Now func() time.Time
	// Logger records the instance's security events; set it as the
	// Config.Logger.
	Logger *slog.Logger
	// ErrorHandler records the refusals of the enforce instance; set it as
	// the Config.ErrorHandler (it answers 418).
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// Build makes one fresh instance (fresh stores) for a mode.
type Build func(t *testing.T, w Wiring) Instance

// event is one security event of one request.
type event struct {
	Name, Reason string
	Shadow       bool
}

// outcome is what one mode did with one request.
type outcome struct {
	reached bool
	refusal error
	events  []event
}

type caseKey struct{}

// recorder is a slog handler that keeps the security events logged with
// a request context, by the request's index.
type recorder struct{ by map[int][]event }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) Handle(ctx context.Context, rec slog.Record) error {
	i, ok := ctx.Value(caseKey{}).(int)
	if !ok {
		return nil // background work: key-set fetches, start-up warnings
	}
	var e events.Event
	rec.Attrs(func(a slog.Attr) bool {
		e.Take(a)
		return true
	})
	if e.Name != "" {
		h.by[i] = append(h.by[i], event{e.Name, e.Reason, e.Shadow})
	}
	return nil
}
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

// replay runs cases in order through a fresh instance in one mode, its
// clock starting at start.
func replay(t *testing.T, start time.Time, cases []Case, build Build, shadow bool) []outcome {
	t.Helper()
	clk := testkit.NewClock(start)
	rec := &recorder{by: map[int][]event{}}
	out := make([]outcome, len(cases))
	cur := -1
	h := build(t, Wiring{
		Shadow: shadow,
		Now:    clk.Now,
		Logger: slog.New(rec),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			out[cur].refusal = err
			w.WriteHeader(http.StatusTeapot)
		},
	})(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		out[cur].reached = true
		w.WriteHeader(http.StatusNoContent)
	}))
	for i, c := range cases {
		cur = i
		clk.Advance(c.Advance)
		r := httptest.NewRequest(c.Method, c.Target, bytes.NewReader(c.Body))
		if c.Body == nil {
			r.Body = http.NoBody
		}
		r.Header = c.Header.Clone()
		r = r.WithContext(context.WithValue(r.Context(), caseKey{}, i))
		h.ServeHTTP(httptest.NewRecorder(), r)
		out[i].events = rec.by[i]
	}
	return out
}

// Run replays cases through an enforce-mode and a shadow-mode instance
// made by build and requires, request by request: that enforce mode
// refuses exactly the cases with a Want (with that sentinel) and lets the
// others reach the handler; that shadow mode lets every request reach the
// handler; that shadow mode logs the same security events with the same
// reasons, in the same order, the refusal's own marked shadow=true and no
// other; and that the shadow events number exactly enforce mode's
// refusals.
func Run(t *testing.T, cases []Case, build Build) {
	t.Helper()
	RunFrom(t, Start, cases, build)
}

// RunFrom is [Run] with both clocks starting at start instead of [Start].
func RunFrom(t *testing.T, start time.Time, cases []Case, build Build) {
	t.Helper()
	enforce := replay(t, start, cases, build, false)
	shadow := replay(t, start, cases, build, true)
	refusals, wouldDeny := 0, 0
	for i, c := range cases {
		e, s := enforce[i], shadow[i]
		if c.Want == nil {
			require.Truef(t, e.reached, "%s: enforce mode refused a valid request: %v", c.Name, e.refusal)
			require.NoErrorf(t, e.refusal, "%s", c.Name)
		} else {
			require.Falsef(t, e.reached, "%s: enforce mode let the attack through", c.Name)
			require.Truef(t, errors.Is(e.refusal, c.Want), "%s: enforce mode refused with %v, want %v", c.Name, e.refusal, c.Want)
			refusals++
		}
		require.Truef(t, s.reached, "%s: shadow mode did not reach the handler", c.Name)
		require.NoErrorf(t, s.refusal, "%s: shadow mode refused", c.Name)
		n := 0
		for _, ev := range s.events {
			if ev.Shadow {
				n++
			}
		}
		wouldDeny += n
		want := 0
		if c.Want != nil {
			want = 1
		}
		require.Equalf(t, want, n, "%s: shadow events of one request (events %v)", c.Name, s.events)
		require.Equalf(t, plain(e.events), plain(s.events), "%s: shadow mode decided otherwise than enforce mode", c.Name)
		for _, ev := range e.events {
			require.Falsef(t, ev.Shadow, "%s: enforce mode logged shadow=true", c.Name)
		}
	}
	require.Equal(t, refusals, wouldDeny, "shadow events against enforce mode's refusals")
	t.Logf("%d requests, %d refused in enforce mode, %d would-deny events in shadow mode", len(cases), refusals, wouldDeny)
}

// plain returns the events without their shadow flag.
func plain(evs []event) []event {
	out := make([]event, len(evs))
	for i, e := range evs {
		out[i] = event{e.Name, e.Reason, false}
	}
	return out
}
