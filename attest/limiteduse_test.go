package attest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appcheck"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// downReplay is an App Check replay store that does not answer.
type downReplay struct{}

func (downReplay) Use(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

// TestAppCheckLimitedUseRoute: Route.LimitedUse makes App Check tokens
// single use on that route only; a replay store outage there fails closed
// unless the route says otherwise.
func TestAppCheckLimitedUseRoute(t *testing.T) {
	is := newAppCheckIssuer(t)
	clock := synthNow
	th := Thresholds{Monitor: 30, StepUp: 50, Deny: 70}
	server := func(t *testing.T, replay appcheck.ReplayStore, route Route) (func(tok string) int, *int) {
		t.Helper()
		c, err := appcheck.New(appcheck.Config{ProjectNumber: "123456789", JWKSURL: is.srv.URL, HTTPClient: is.srv.Client(),
			Replay: replay, Now: func() time.Time { return clock }, Logger: nopLogger()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		v, err := New(Config{AppCheck: c, Subject: func(*http.Request) (string, error) { return "", nil },
			Now: func() time.Time { return clock }, Logger: nopLogger()})
		require.NoError(t, err)
		reached := 0
		route.Thresholds = th
		h := v.RequireRoute(route)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }))
		return func(tok string) int {
			r := httptest.NewRequest("POST", "/pay", nil)
			r.Header.Set(appcheck.Header, tok)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			return rec.Code
		}, &reached
	}
	tok := func(jti string) string { return is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"jti": jti}) }

	t.Run("replayed_limited_use_token", func(t *testing.T) {
		call, reached := server(t, nil, Route{LimitedUse: true})
		captured := tok("j-1")
		require.Equal(t, 200, call(captured))
		require.Equal(t, 1, *reached)
		require.Equal(t, 403, call(captured), "the same token again")
		require.Equal(t, 403, call(tok("")), "a token without jti")
		require.Equal(t, 1, *reached)
	})
	t.Run("non_limited_route_unaffected", func(t *testing.T) {
		call, reached := server(t, downReplay{}, Route{})
		captured := tok("j-2")
		require.Equal(t, 200, call(captured))
		require.Equal(t, 200, call(captured))
		require.Equal(t, 2, *reached)
	})
	t.Run("replay_store_down_fails_closed_on_limited_route", func(t *testing.T) {
		call, reached := server(t, downReplay{}, Route{LimitedUse: true})
		require.Equal(t, 503, call(tok("j-3")))
		require.Equal(t, 0, *reached)
	})
	t.Run("replay_store_down_fail_open_when_route_says_so", func(t *testing.T) {
		call, _ := server(t, downReplay{}, Route{LimitedUse: true, Outage: OutageFailOpen})
		require.NotEqual(t, 503, call(tok("j-4")), "the route's explicit policy decides")
	})
}
