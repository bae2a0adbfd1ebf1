package appcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// flood verifies token from n goroutines at once and returns their
// errors.
func flood(c *Verifier, n int, token func(i int) string) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Verify(context.Background(), token(i))
		}()
	}
	wg.Wait()
	return errs
}

func retryAfterOf(t *testing.T, err error) time.Duration {
	t.Helper()
	ue, ok := errors.AsType[*UnavailableError](err)
	require.True(t, ok, "%v", err)
	require.ErrorIs(t, err, ErrVendor)
	return ue.RetryAfter
}

// TestAppCheckJWKSFetchStorm: while the App Check key set has never
// loaded, each request used to start a new fetch as soon as the previous
// one failed, so any client could turn traffic into a fetch storm against
// Google. Fetches are now one at a time and spaced in every state, with a
// jittered back-off after failures, and Retry-After says when the next
// one will be.
func TestAppCheckJWKSFetchStorm(t *testing.T) {
	is := newAppCheckIssuer(t)
	is.down = true
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	valid := func() string {
		return is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"iat": clock.Unix(), "exp": clock.Add(time.Hour).Unix()})
	}
	tok := valid()

	// Before the first load: a hundred requests, one fetch.
	for _, err := range flood(c, 100, func(int) string { return tok }) {
		require.ErrorIs(t, err, ErrVendor)
	}
	require.Equal(t, int64(1), is.fetches.Load(), "appcheck_jwks_fetch_storm: one fetch for a flood before the first load")
	_, err := c.Verify(context.Background(), tok)
	retry := retryAfterOf(t, err)
	require.GreaterOrEqual(t, retry, 48*time.Second, "MinRefresh with jitter")
	require.Less(t, retry, 72*time.Second, "MinRefresh with jitter")

	// Retry-After is what the server does: no fetch before it, one at it.
	clock = clock.Add(retry - time.Millisecond)
	flood(c, 50, func(int) string { return tok })
	require.Equal(t, int64(1), is.fetches.Load(), "no fetch before Retry-After")
	clock = clock.Add(time.Millisecond)
	flood(c, 50, func(int) string { return tok })
	require.Equal(t, int64(2), is.fetches.Load(), "one fetch at Retry-After")

	// A second failure backs off further.
	_, err = c.Verify(context.Background(), tok)
	retry = retryAfterOf(t, err)
	require.GreaterOrEqual(t, retry, 96*time.Second, "doubled, with jitter")
	require.Less(t, retry, 144*time.Second, "doubled, with jitter")

	// The set loads at the next allowed fetch.
	is.mu.Lock()
	is.down = false
	is.mu.Unlock()
	clock = clock.Add(retry)
	tok = valid()
	for _, err := range flood(c, 50, func(int) string { return tok }) {
		require.NoError(t, err)
	}
	require.Equal(t, int64(3), is.fetches.Load())

	// After the load: a flood of unknown kids costs no fetch within
	// MinRefresh, and one fetch after it.
	forged := make([]string, 100)
	for i := range forged {
		forged[i] = forgeKid(t, is, fmt.Sprintf("kid-%d", i))
	}
	bogus := func(i int) string { return forged[i] }
	for _, err := range flood(c, 100, bogus) {
		require.ErrorIs(t, err, ErrVendor, "a kid the set lacks while a refresh is due: an outage, not an invalid token")
	}
	require.Equal(t, int64(3), is.fetches.Load(), "appcheck_jwks_fetch_storm: no fetch for unknown kids within MinRefresh")
	clock = clock.Add(time.Minute)
	flood(c, 100, bogus)
	require.Equal(t, int64(4), is.fetches.Load(), "one fetch for a flood of unknown kids")
	_, err = c.Verify(context.Background(), tok)
	require.NoError(t, err, "the known key still verifies")
}

// forgeKid mints a token under a kid the key set does not hold, signed
// with a key of its own.
func forgeKid(t *testing.T, is *appCheckIssuer, kid string) string {
	t.Helper()
	is.mu.Lock()
	k := is.keys["k1"]
	is.keys[kid] = k
	is.mu.Unlock()
	tok := is.mint(t, kid, jwa.RS256, "JWT", nil)
	is.mu.Lock()
	delete(is.keys, kid)
	is.mu.Unlock()
	return tok
}

// TestAppCheckSlowJWKSBoundedWait: with a key set endpoint that does not
// answer, a request waits at most MaxWait and is answered as an outage;
// the fetch goes on in the background and later requests use its result.
func TestAppCheckSlowJWKSBoundedWait(t *testing.T) {
	is := newAppCheckIssuer(t)
	hold := make(chan struct{})
	is.hold = hold
	clock := synthNow
	c, err := New(Config{
		ProjectNumber: "123456789", JWKSURL: is.srv.URL, HTTPClient: is.srv.Client(), MaxWait: 20 * time.Millisecond,
		Now: func() time.Time { return clock }, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	tok := is.mint(t, "k1", jwa.RS256, "JWT", nil)
	for _, err := range flood(c, 20, func(int) string { return tok }) {
		require.Equal(t, time.Second, retryAfterOf(t, err), "the fetch under way may answer any moment")
	}
	// The fetch is under way (held by the server) when the requests give
	// up; on a loaded machine it may reach the server only after they
	// have. Wait for it to arrive, then check that it is the only one.
	require.Eventually(t, func() bool { return is.fetches.Load() >= 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, int64(1), is.fetches.Load())
	is.mu.Lock()
	is.hold = nil
	is.mu.Unlock()
	close(hold)
	require.NoError(t, c.Close(), "Close waits for the fetch")
	// A new verifier whose fetch answers at once.
	c2 := newAppCheck(t, is, &clock)
	_, err = c2.Verify(context.Background(), tok)
	require.NoError(t, err)
}
