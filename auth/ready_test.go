package auth

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// TestReadyFollowsJWKS: a JWKS that is down (404) when the service starts,
// comes up, then goes down again. Ready, WaitReady and KeySetAge follow it
// on the injected clock: error naming the issuer and the 404, then nil,
// then (a refresh failed, the keys still serve) nil with the refresh
// error in KeySetAge, then past MaxKeyStaleness an error naming the
// failed refresh; and back up, nil with no error left. Fetches keep to
// the schedule however many probes ask.
func TestReadyFollowsJWKS(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newJWKSServer(t, a)
	srv.serve(http.StatusNotFound, []byte("not found"))
	srv.mu.Lock()
	srv.cc = "max-age=60"
	srv.mu.Unlock()
	v, _ := newRemoteVerifier(t, clk, srv.URL, func(c *Config) { c.MaxKeyStaleness = 10 * time.Minute })
	ctx := t.Context()

	// Down at start: every probe at this instant shares the first fetch.
	probeAtOnce := func(n int) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = v.Ready(ctx) })
		}
		wg.Wait()
		return errs
	}
	for _, err := range probeAtOnce(50) {
		require.ErrorIs(t, err, ErrKeysUnavailable)
		require.EqualError(t, err, "auth: signing keys unavailable: key set of "+testIssuer+" not loaded: GET "+srv.URL+" returned 404")
	}
	require.Equal(t, int32(1), srv.fetches.Load(), "fifty probes, one fetch")
	age, loaded, lastErr := v.KeySetAge()
	require.Zero(t, age)
	require.False(t, loaded)
	require.EqualError(t, lastErr, "auth: key set of "+testIssuer+": GET "+srv.URL+" returned 404")

	// WaitReady bounded by its context: it gives up with Ready's reason.
	expired, cancel := context.WithDeadline(ctx, time.Now())
	defer cancel()
	err := v.WaitReady(expired)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.ErrorContains(t, err, "key set of "+testIssuer+" not loaded: GET "+srv.URL+" returned 404 (stopped waiting: context deadline exceeded)")
	require.Equal(t, int32(1), srv.fetches.Load(), "WaitReady makes no fetch the schedule does not")

	// Comes up. The next fetch may start 1s after the first: a waiter at
	// start-up wakes with the fetch a probe then makes.
	waited := make(chan error, 1)
	go func() { waited <- v.WaitReady(ctx) }()
	srv.serveKeys(t, a)
	require.Error(t, v.Ready(ctx), "not before the schedule allows a fetch")
	clk.Advance(time.Second)
	for _, err := range probeAtOnce(50) {
		require.NoError(t, err)
	}
	require.NoError(t, <-waited)
	require.Equal(t, int32(2), srv.fetches.Load())
	clk.Advance(30 * time.Second)
	age, loaded, lastErr = v.KeySetAge()
	require.Equal(t, 30*time.Second, age)
	require.True(t, loaded)
	require.NoError(t, lastErr)

	// Goes down again. A token signed with a new kid wants a refresh at
	// 61s; it fails. The keys still serve: Ready stays nil, KeySetAge
	// carries the failure.
	srv.serve(http.StatusServiceUnavailable, []byte("down"))
	clk.Advance(30 * time.Second)
	_, err = v.VerifyToken(ctx, forgedKid(t, a, "key-b", clk.Now()))
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.Equal(t, int32(3), srv.fetches.Load())
	require.NoError(t, v.Ready(ctx), "keys within MaxKeyStaleness serve: ready")
	age, loaded, lastErr = v.KeySetAge()
	require.Equal(t, time.Minute, age)
	require.True(t, loaded)
	require.EqualError(t, lastErr, "auth: key set of "+testIssuer+": GET "+srv.URL+" returned 503")

	// Past MaxKeyStaleness: probes make the due fetch (one), which fails,
	// and Ready names the issuer, the age and the failed fetch.
	clk.Advance(10 * time.Minute)
	for _, err := range probeAtOnce(50) {
		require.ErrorIs(t, err, ErrKeysUnavailable)
		require.EqualError(t, err, "auth: signing keys unavailable: key set of "+testIssuer+
			" is stale: fetched 11m0s ago, over Config.MaxKeyStaleness (10m0s): GET "+srv.URL+" returned 503")
	}
	require.Equal(t, int32(4), srv.fetches.Load())
	age, loaded, lastErr = v.KeySetAge()
	require.Equal(t, 11*time.Minute, age)
	require.True(t, loaded)
	require.ErrorContains(t, lastErr, "returned 503")

	// Back up: once the back-off has passed, a probe refreshes; nothing
	// of the outage is left.
	srv.serveKeys(t, a)
	var ue *UnavailableError
	require.ErrorAs(t, v.Ready(ctx), &ue)
	clk.Advance(ue.RetryAfter)
	require.NoError(t, v.Ready(ctx))
	age, loaded, lastErr = v.KeySetAge()
	require.Zero(t, age)
	require.True(t, loaded)
	require.NoError(t, lastErr)
	require.Equal(t, int32(5), srv.fetches.Load())
}

// TestReadyRefusedAtStart: the JWKS host refuses connections at start-up,
// then starts listening. Ready names the refusal, then turns nil.
func TestReadyRefusedAtStart(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens: connections are refused
	v, _ := newRemoteVerifier(t, clk, "http://"+addr+"/jwks", nil)

	err = v.Ready(t.Context())
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.ErrorContains(t, err, "key set of "+testIssuer+" not loaded: GET http://"+addr+"/jwks: dial tcp "+addr+": connect: connection refused")
	_, loaded, lastErr := v.KeySetAge()
	require.False(t, loaded)
	require.ErrorContains(t, lastErr, "connection refused")

	body, err := json.Marshal(jwkSet(t, a))
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	require.NoError(t, srv.Listener.Close())
	srv.Listener, err = net.Listen("tcp", addr)
	require.NoError(t, err, "the port was free a moment ago")
	srv.Start()
	defer srv.Close()
	clk.Advance(time.Second)
	require.NoError(t, v.Ready(t.Context()))
	_, loaded, lastErr = v.KeySetAge()
	require.True(t, loaded)
	require.NoError(t, lastErr)
}

// TestReadyBoundedByContext: with a JWKS that does not answer, Ready
// returns when its context is done, and WaitReady when the Verifier is
// closed.
func TestReadyBoundedByContext(t *testing.T) {
	clk := testkit.NewClock(t0)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	defer close(release)
	v, _ := newRemoteVerifier(t, clk, srv.URL, nil)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := v.Ready(ctx)
	require.EqualError(t, err, "auth: signing keys unavailable: key set of "+testIssuer+" not loaded: no fetch of "+srv.URL+" has ended yet")
	var ue *UnavailableError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, time.Second, ue.RetryAfter, "a fetch is under way")

	waited := make(chan error, 1)
	go func() { waited <- v.WaitReady(t.Context()) }()
	require.NoError(t, v.Close())
	require.ErrorContains(t, <-waited, "(verifier closed)")
}

// TestReadyStaticKeys: static key sets are always ready, of age zero.
func TestReadyStaticKeys(t *testing.T) {
	clk := testkit.NewClock(t0)
	v, _ := newTestVerifier(t, clk, nil, newSigner(t, jwa.ES256, "k"))
	clk.Advance(48 * time.Hour)
	require.NoError(t, v.Ready(t.Context()))
	require.NoError(t, v.WaitReady(t.Context()))
	age, loaded, lastErr := v.KeySetAge()
	require.Zero(t, age)
	require.True(t, loaded)
	require.NoError(t, lastErr)
}

// TestReadyTwoIssuers: Ready names each issuer that is not ready;
// KeySetAge reports the oldest set and the latest failure.
func TestReadyTwoIssuers(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	up, down := newJWKSServer(t, a), newJWKSServer(t, a)
	down.serve(http.StatusNotFound, nil)
	const iss2 = "https://other.example.com/"
	v, _ := newRemoteVerifier(t, clk, up.URL, func(c *Config) {
		c.Issuers = append(c.Issuers, Issuer{Issuer: iss2, Audience: []string{testAudience}, JWKSURL: down.URL})
	})
	err := v.Ready(t.Context())
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.EqualError(t, err, "auth: signing keys unavailable: key set of "+iss2+" not loaded: GET "+down.URL+" returned 404")
	clk.Advance(5 * time.Second)
	age, loaded, lastErr := v.KeySetAge()
	require.Equal(t, 5*time.Second, age)
	require.False(t, loaded)
	require.EqualError(t, lastErr, "auth: key set of "+iss2+": GET "+down.URL+" returned 404")

	up.serve(http.StatusNotFound, nil)
	clk.Advance(11 * time.Minute)
	_, _ = v.VerifyToken(t.Context(), forgedKid(t, a, "new", clk.Now()))
	_, _, lastErr = v.KeySetAge()
	require.EqualError(t, lastErr, "auth: key set of "+testIssuer+": GET "+up.URL+" returned 404", "the most recent failure")
}
