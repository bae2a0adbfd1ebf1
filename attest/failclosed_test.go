package attest

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

// erroringKeys is a key store that cannot be reached.
type erroringKeys struct{}

func (erroringKeys) Enroll(context.Context, string, []byte) (bool, error) {
	return false, errors.New("dial tcp: connection refused")
}
func (erroringKeys) Lookup(context.Context, string) ([]byte, uint32, bool, error) {
	return nil, 0, false, errors.New("dial tcp: connection refused")
}
func (erroringKeys) AdvanceCounter(context.Context, string, uint32, uint32) (bool, error) {
	return false, errors.New("dial tcp: connection refused")
}

// neverEnrolled is a request whose assertion comes from a key that was
// never attested: whatever the device signs, the key store is the only
// thing that can tell it apart from a real one.
func (e *riskEnv) neverEnrolled(user string) *http.Request {
	stranger, err := attesttest.NewDevice(testAppID)
	require.NoError(e.t, err)
	ch, _, err := e.a.IssueChallenge(context.Background(), stranger.KeyID)
	require.NoError(e.t, err)
	as, err := stranger.Assert(appattest.ClientData("POST", "/premium", "", nil, ch))
	require.NoError(e.t, err)
	r := httptest.NewRequest("POST", "https://api.example.com/premium", nil)
	r.RemoteAddr = "10.1.2.3:443"
	r.Header.Set("X-User", user)
	r.Header.Set(appattest.HeaderKeyID, stranger.KeyID)
	r.Header.Set(appattest.HeaderChallenge, ch)
	r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(as))
	return r
}

// TestNeverEnrolledKeyWhileKeyStoreDown: with the key store unreachable,
// an assertion from a key that was never attested cannot be told from a
// real one. The default (fail open) serves it with the vendor_outage
// penalty; a route that must not admit unverified devices fails closed
// with one line of config, Route.Outage (or Config.Outage for every
// route), and answers 503.
func TestNeverEnrolledKeyWhileKeyStoreDown(t *testing.T) {
	th := Thresholds{Monitor: 30, StepUp: 60, Deny: 85}
	tests := []struct {
		name   string
		config OutagePolicy // Config.Outage
		route  func(v *Verifier) func(http.Handler) http.Handler
		want   int
	}{
		{name: "default_fails_open_with_penalty", route: func(v *Verifier) func(http.Handler) http.Handler { return v.Require(th) }, want: 200},
		{name: "route_fails_closed", route: func(v *Verifier) func(http.Handler) http.Handler {
			return v.RequireRoute(Route{Thresholds: th, Outage: OutageFailClosed})
		}, want: 503},
		{name: "verifier_fails_closed", config: OutageFailClosed, route: func(v *Verifier) func(http.Handler) http.Handler { return v.Require(th) }, want: 503},
		{name: "route_without_policy_inherits_verifier_fail_closed", config: OutageFailClosed, route: func(v *Verifier) func(http.Handler) http.Handler {
			return v.RequireRoute(Route{Thresholds: th})
		}, want: 503},
		{name: "route_fails_open_under_fail_closed_verifier", config: OutageFailClosed, route: func(v *Verifier) func(http.Handler) http.Handler {
			return v.RequireRoute(Route{Thresholds: th, Outage: OutageFailOpen})
		}, want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRiskEnv(t, func(c *Config) { c.Outage = tt.config })
			e.keys.set(erroringKeys{})
			served := false
			rec := httptest.NewRecorder()
			tt.route(e.v)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served = true })).ServeHTTP(rec, e.neverEnrolled("nia"))
			require.Equal(t, tt.want, rec.Code)
			require.Equal(t, tt.want == 200, served, "the never-enrolled key reached the handler")
			if tt.want == 503 {
				require.NotEmpty(t, rec.Header().Get("Retry-After"))
			}
		})
	}
}

// TestOutageScoresNoBetterThanMissingEvidence: evidence that cannot be
// checked (the store or the vendor is down) must never score better than
// no evidence at all, or sending junk assertions during an outage would be
// an attacker's way to a lower score.
func TestOutageScoresNoBetterThanMissingEvidence(t *testing.T) {
	e := newRiskEnv(t, nil)
	_, missing, _ := e.serve(e.v.Handler, e.request(nil, "ola", paris, ""))
	e.keys.set(erroringKeys{})
	_, junk, _ := e.serve(e.v.Handler, e.neverEnrolled("pia"))
	require.Equal(t, []string{ReasonVendorOutage}, junk.Reasons)
	require.GreaterOrEqual(t, junk.Score, missing.Score)
	require.GreaterOrEqual(t, junk.Band, missing.Band)
}

func TestOutagePolicyValidated(t *testing.T) {
	a := newSynthetic(t, nil).a
	_, err := New(Config{AppAttest: a, Subject: func(*http.Request) (string, error) { return "", nil }, Outage: OutagePolicy(7)})
	require.ErrorContains(t, err, "Config.Outage")
	v, err := New(Config{AppAttest: a, Subject: func(*http.Request) (string, error) { return "", nil }})
	require.NoError(t, err)
	require.Panics(t, func() {
		v.RequireRoute(Route{Thresholds: Thresholds{Monitor: 1, StepUp: 2, Deny: 3}, Outage: OutagePolicy(7)})
	})
}

// erroringHistory is a history store that cannot be reached.
type erroringHistory struct{}

func (erroringHistory) Swap(context.Context, string, []byte, time.Duration) ([]byte, error) {
	return nil, errors.New("dial tcp: connection refused")
}
func (erroringHistory) AddKey(context.Context, string, string, time.Time, time.Duration) (int, error) {
	return 0, errors.New("dial tcp: connection refused")
}

// TestHistoryStoreDown: without the history, key churn and impossible
// travel cannot be checked: that is an outage like any other, decided by
// the route's policy, not a silent pass.
func TestHistoryStoreDown(t *testing.T) {
	for _, tt := range []struct {
		name   string
		policy OutagePolicy
		want   int
	}{{"history_store_down_fails_open_with_penalty", OutageFailOpen, 200}, {"history_store_down_fails_closed", OutageFailClosed, 503}} {
		t.Run(tt.name, func(t *testing.T) {
			e := newRiskEnv(t, func(c *Config) { c.Outage, c.History = tt.policy, erroringHistory{} })
			rec, risk, _ := e.serve(e.v.Handler, e.request(e.device(attesttest.AttestOptions{}), "quinn", paris, ""))
			require.Equal(t, tt.want, rec.Code)
			if tt.want == 200 {
				require.Equal(t, []string{ReasonVendorOutage}, risk.Reasons)
			}
		})
	}
}

type failingSIM struct{}

func (failingSIM) CheckSIMSwap(context.Context, string, time.Duration) (bool, error) {
	return false, errors.New("carrier API down")
}

// TestSIMSwapCheckDown: a SIM swap checker that cannot answer is an outage
// under the route's policy, not "no swap": a fail-closed route must not
// serve a request whose SIM could not be checked, and a fail-open one
// scores it as an outage.
func TestSIMSwapCheckDown(t *testing.T) {
	th := Thresholds{Monitor: 30, StepUp: 60, Deny: 85}
	t.Run("sim_swap_check_down_fails_closed", func(t *testing.T) {
		e := newRiskEnv(t, func(c *Config) { c.SIMSwap = failingSIM{}; c.Outage = OutageFailClosed })
		d := e.device(attesttest.AttestOptions{})
		served := false
		rec := httptest.NewRecorder()
		e.v.Require(th)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served = true })).ServeHTTP(rec, e.request(d, "sam", paris, ""))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		require.False(t, served, "a request whose SIM could not be checked reached a fail-closed route")
		require.NotEmpty(t, rec.Header().Get("Retry-After"))
	})
	t.Run("sim_swap_check_down_fails_open_with_penalty", func(t *testing.T) {
		e := newRiskEnv(t, func(c *Config) { c.SIMSwap = failingSIM{} })
		d := e.device(attesttest.AttestOptions{})
		_, risk, _ := e.serve(e.v.Handler, e.request(d, "sam", paris, ""))
		require.Equal(t, []string{ReasonVendorOutage}, risk.Reasons)
	})
}

// readyHistory is a history store with a Ready method, like redisstore's.
type readyHistory struct {
	HistoryStore
	err         error
	hadDeadline *bool
}

func (s readyHistory) Ready(ctx context.Context) error {
	_, *s.hadDeadline = ctx.Deadline()
	return s.err
}

// TestVerifierReady: the Verifier is as ready as its history store, asked
// within StoreTimeout; the in-memory default always is.
func TestVerifierReady(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, newRiskEnv(t, nil).v.Ready(ctx), "in-memory history")
	var hadDeadline bool
	e := newRiskEnv(t, func(c *Config) {
		c.History = readyHistory{HistoryStore: newMemoryHistoryStore(10, nil), hadDeadline: &hadDeadline}
	})
	require.NoError(t, e.v.Ready(ctx))
	require.True(t, hadDeadline, "bounded by StoreTimeout")
	e = newRiskEnv(t, func(c *Config) {
		c.History = readyHistory{HistoryStore: newMemoryHistoryStore(10, nil), err: errors.New("dial tcp: connection refused"), hadDeadline: &hadDeadline}
	})
	err := e.v.Ready(ctx)
	require.ErrorIs(t, err, ErrStore)
	require.ErrorContains(t, err, "history store")
}
