package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiguard/apiguard/internal/shadowtest"
)

// TestShadowDecidesAsEnforce replays one recorded table of requests, a
// device within its limit, the same device bursting past it, a request
// without a key, and the device again after the window, through an
// enforce-mode and a shadow-mode Limiter (each with its own buckets, both
// clocks at the same instants) and compares every decision: shadow mode
// refuses nothing, logs each refusal enforce mode makes as the same event
// and reason with shadow=true, and no other. A refused request charges
// no bucket in either mode, so the device's next window is the same.
func TestShadowDecidesAsEnforce(t *testing.T) {
	device := func(id string) *http.Request {
		r := httptest.NewRequest("GET", "/v1/orders", nil)
		if id != "" {
			r.Header.Set("X-Device-ID", id)
		}
		return r
	}
	rec := func(name string, r *http.Request, want error) shadowtest.Case {
		return shadowtest.Record(t, name, r, want)
	}
	cases := []shadowtest.Case{
		rec("first_request", device("a"), nil),
		rec("second_request", device("a"), nil),
		rec("burst_past_limit", device("a"), ErrLimited),
		rec("burst_past_limit_again", device("a"), ErrLimited),
		rec("other_device", device("b"), nil),
		rec("no_key", device(""), ErrNoKey),
	}
	later := rec("after_the_window", device("a"), nil)
	later.Advance = time.Hour
	cases = append(cases, later)
	shadowtest.Run(t, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
		l, err := New(Config{Limit: Limit{Requests: 2, Per: time.Hour}, Key: KeyByHeader("X-Device-ID"),
			Shadow: w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler})
		require.NoError(t, err)
		return l.Handler
	})
}

// statusAs makes the recorded handler answer code instead: the app behind
// a control, as the request it is replayed with would make it answer.
type statusAs struct {
	http.ResponseWriter
	code int
}

func (w statusAs) WriteHeader(int) { w.ResponseWriter.WriteHeader(w.code) }

// TestConcurrencyShadowDecidesAsEnforce replays one recorded table through
// an enforce-mode and a shadow-mode Concurrency limiter (limit 2), whose
// "export" key already has both slots taken by long exports: a further
// export over the limit, searches of another key, a request without a
// key, an export after one of the long ones finished (header X-Finish),
// and one over the limit again. Shadow mode refuses nothing and logs each
// refusal as the same event with shadow=true, and, holding no slot for
// what it passes, admits exactly what enforce mode admits. A second table
// replays a store outage under FailClosed.
func TestConcurrencyShadowDecidesAsEnforce(t *testing.T) {
	req := func(user, finish string) *http.Request {
		r := userRequest(context.Background(), user)
		if finish != "" {
			r.Header.Set("X-Finish", finish)
		}
		return r
	}
	rec := func(name string, r *http.Request, want error) shadowtest.Case {
		return shadowtest.Record(t, name, r, want)
	}
	t.Run("over_the_limit", func(t *testing.T) {
		cases := []shadowtest.Case{
			rec("third_export_at_once", req("export", ""), ErrConcurrency),
			rec("other_key", req("search", ""), nil),
			rec("other_key_again", req("search", ""), nil),
			rec("no_key", req("", ""), ErrNoKey),
			rec("export_over_limit_again", req("export", ""), ErrConcurrency),
			rec("export_after_one_finished", req("search", "export"), nil),
			rec("export_takes_the_freed_slot", req("export", ""), nil),
		}
		shadowtest.Run(t, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
			c := newConcurrency(t, ConcurrencyConfig{Limit: 2, Shadow: w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler})
			var held []func()
			for range 2 {
				release, err := c.Acquire(context.Background(), "export")
				require.NoError(t, err)
				held = append(held, release)
			}
			t.Cleanup(func() {
				for _, release := range held {
					release()
				}
				require.Zero(t, c.mem.len(), "every slot released")
			})
			return func(next http.Handler) http.Handler {
				return c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Header.Get("X-Finish") == "export" {
						held[0]() // the long export ends
					}
					next.ServeHTTP(w, r)
				}))
			}
		})
	})
	t.Run("store_outage_fail_closed", func(t *testing.T) {
		cases := []shadowtest.Case{
			rec("store_down", req("alice", ""), ErrStoreUnavailable),
			rec("store_down_again", req("bob", ""), ErrStoreUnavailable),
		}
		shadowtest.Run(t, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
			c := newConcurrency(t, ConcurrencyConfig{Limit: 1, Store: &flakyInFlight{down: true}, KeySecret: bytes.Repeat([]byte{1}, 32),
				StorePolicy: FailClosed, Shadow: w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler})
			return c.Handler
		})
	})
}

// slots returns the slots taken in m, all keys together.
func (m *inFlight) slots() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, k := range m.keys {
		n += k
	}
	return n
}

// One caller opens 200 parallel requests on an endpoint limited to 5 in
// flight, in shadow mode: all 200 are inside the handler at once, exactly
// 5 of them holding a slot and 195 logged as would-deny (rate_limited,
// shadow=true); once they finish no slot is left taken.
func TestConcurrencyShadowParallelFloodExact(t *testing.T) {
	const limit, n = 5, 200
	logs := &logSink{}
	c := newConcurrency(t, ConcurrencyConfig{Limit: limit, Shadow: true, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	g := newGated(n)
	h := c.Handler(g)
	codes := make(chan int, n)
	for range n {
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, userRequest(context.Background(), "alice"))
			codes <- rec.Code
		}()
	}
	for range n {
		<-g.entered
	}
	require.EqualValues(t, n, g.inside.Load(), "every request reaches the handler")
	require.Equal(t, limit, c.mem.slots(), "only the requests enforce mode admits hold a slot")
	require.Equal(t, n-limit, strings.Count(logs.String(), `"shadow":true`))
	require.Equal(t, n-limit, strings.Count(logs.String(), `"event":"rate_limited"`))
	close(g.gate)
	for range n {
		require.Equal(t, http.StatusNoContent, <-codes)
	}
	require.Zero(t, c.mem.slots(), "every slot released")
	require.Zero(t, c.mem.len())
	require.Equal(t, n-limit, strings.Count(logs.String(), `"event":"rate_limited"`), "no event after the flood")
}

// TestFailureBudgetShadowDecidesAsEnforce replays one recorded table of
// logins through an enforce-mode and a shadow-mode FailureBudget (3
// failures per 15 minutes, 30-minute lockout doubling), whose app answers
// 401 to a wrong password: guesses that spend the budget, guesses and the
// right password while locked out, another account, a request without an
// account, the right password after the lockout, a second lockout (60
// minutes) and guesses during and after it. Shadow mode refuses nothing
// and logs each refusal as the same event with shadow=true; the failures
// of the requests it passes while locked out are not recorded, so the
// failures, lockouts and their doubling are exactly enforce mode's. A
// second table replays a store outage under FailClosed.
func TestFailureBudgetShadowDecidesAsEnforce(t *testing.T) {
	login := func(account, password string) *http.Request {
		r := httptest.NewRequest("POST", "/login", nil)
		if account != "" {
			r.Header.Set("X-Account", account)
		}
		r.Header.Set("X-Password", password)
		return r
	}
	rec := func(name string, r *http.Request, want error) shadowtest.Case {
		return shadowtest.Record(t, name, r, want)
	}
	after := func(d time.Duration, c shadowtest.Case) shadowtest.Case {
		c.Advance = d
		return c
	}
	// app answers the recorded login: 401 to a wrong password.
	app := func(b *FailureBudget) shadowtest.Instance {
		return func(next http.Handler) http.Handler {
			return b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Password") != "correct horse" {
					w = statusAs{w, http.StatusUnauthorized}
				}
				next.ServeHTTP(w, r)
			}))
		}
	}
	t.Run("lockouts", func(t *testing.T) {
		cases := []shadowtest.Case{
			rec("guess_1", login("alice", "guess-1"), nil),
			rec("guess_2", login("alice", "guess-2"), nil),
			rec("guess_3_spends_the_budget", login("alice", "guess-3"), nil),
			rec("guess_while_locked_out", login("alice", "guess-4"), ErrLimited),
			rec("right_password_while_locked_out", login("alice", "correct horse"), ErrLimited),
			rec("other_account", login("bob", "guess-1"), nil),
			rec("no_account", login("", "guess-1"), ErrNoKey),
			after(31*time.Minute, rec("right_password_after_the_lockout", login("alice", "correct horse"), nil)),
			rec("guess_5", login("alice", "guess-5"), nil),
			rec("guess_6", login("alice", "guess-6"), nil),
			rec("guess_7_locks_out_again", login("alice", "guess-7"), nil),
			after(31*time.Minute, rec("guess_in_the_doubled_lockout", login("alice", "guess-8"), ErrLimited)),
			after(30*time.Minute, rec("right_password_after_the_doubled_lockout", login("alice", "correct horse"), nil)),
		}
		shadowtest.Run(t, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
			b, err := NewFailureBudget(FailureConfig{Key: KeyByHeader("X-Account"), Budget: 3, Per: 15 * time.Minute, Lockout: 30 * time.Minute,
				Shadow: w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler})
			require.NoError(t, err)
			return app(b)
		})
	})
	t.Run("store_outage_fail_closed", func(t *testing.T) {
		cases := []shadowtest.Case{
			rec("store_down", login("alice", "guess-1"), ErrStoreUnavailable),
			rec("store_down_right_password", login("alice", "correct horse"), ErrStoreUnavailable),
		}
		shadowtest.Run(t, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
			b, err := NewFailureBudget(FailureConfig{Key: KeyByHeader("X-Account"), Budget: 3, Per: 15 * time.Minute,
				Store: downFailureStore{}, KeySecret: bytes.Repeat([]byte{1}, 32),
				Shadow: w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler})
			require.NoError(t, err)
			return app(b)
		})
	})
}

// downFailureStore is a shared FailureStore that is down.
type downFailureStore struct{}

var errDown = errors.New("store down")

func (downFailureStore) Reserve(context.Context, string, FailurePolicy, time.Time) (bool, int64, int, time.Duration, error) {
	return false, 0, 0, 0, errDown
}

func (downFailureStore) Settle(context.Context, string, int64, bool, bool, FailurePolicy, time.Time) (int, time.Duration, int, error) {
	return 0, 0, 0, errDown
}

func (downFailureStore) Peek(context.Context, string, FailurePolicy, time.Time) (int, time.Duration, error) {
	return 0, 0, errDown
}
