package ratelimit

import (
	"net/http"
	"net/http/httptest"
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
