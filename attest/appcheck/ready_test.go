package appcheck

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func (is *appCheckIssuer) setDown(down bool) {
	is.mu.Lock()
	is.down = down
	is.mu.Unlock()
}

// TestReadyKeyServerDownUpDown: the key server is down when the service
// starts, comes up, and goes down again. Ready is an error until a key
// set is loaded, nil while the set is fresh (refreshes failing behind
// it), and an error again once the set is too stale to use; probes never
// fetch faster than the spacing allows. KeySetAge follows: not loaded,
// then the age since the last good fetch with the last fetch's error.
func TestReadyKeyServerDownUpDown(t *testing.T) {
	is := newAppCheckIssuer(t)
	is.setDown(true)
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	ctx := context.Background()

	_, loaded, lastErr := c.KeySetAge()
	require.False(t, loaded)
	require.NoError(t, lastErr, "nothing fetched yet")

	// Down at start: Ready fetches once, waits for it, and says why.
	err := c.Ready(ctx)
	require.ErrorIs(t, err, ErrVendor)
	require.ErrorContains(t, err, "not loaded")
	require.ErrorContains(t, err, "status 503")
	ue, ok := errors.AsType[*UnavailableError](err)
	require.True(t, ok)
	require.GreaterOrEqual(t, ue.RetryAfter, 48*time.Second, "the next fetch after the back-off")
	require.LessOrEqual(t, ue.RetryAfter, 72*time.Second)
	_, loaded, lastErr = c.KeySetAge()
	require.False(t, loaded)
	require.ErrorContains(t, lastErr, "status 503")
	require.Error(t, c.Ready(ctx), "a probe inside the back-off")
	require.Equal(t, int64(1), is.fetches.Load(), "probes inside the back-off do not fetch")

	// Comes up: at the end of the back-off, a probe loads the set.
	is.setDown(false)
	clock = clock.Add(ue.RetryAfter)
	require.NoError(t, c.Ready(ctx))
	require.Equal(t, int64(2), is.fetches.Load())
	age, loaded, lastErr := c.KeySetAge()
	require.True(t, loaded)
	require.Zero(t, age)
	require.NoError(t, lastErr)
	clock = clock.Add(time.Hour)
	age, _, _ = c.KeySetAge()
	require.Equal(t, time.Hour, age)

	// Goes down again: past its max-age the set is refreshed in the
	// background; the refresh fails, and the set is still used.
	is.setDown(true)
	clock = clock.Add(6 * time.Hour)
	require.NoError(t, c.Ready(ctx), "a set within 24 hours is still used")
	require.Eventually(t, func() bool { _, _, err := c.KeySetAge(); return err != nil }, 10*time.Second, time.Millisecond)
	age, loaded, lastErr = c.KeySetAge()
	require.True(t, loaded)
	require.Equal(t, 7*time.Hour, age, "the age counts from the last good fetch")
	require.ErrorContains(t, lastErr, "status 503")
	require.Equal(t, int64(3), is.fetches.Load())

	// Past 24 hours the set is too stale to use: not ready.
	clock = clock.Add(18 * time.Hour)
	err = c.Ready(ctx)
	require.ErrorIs(t, err, ErrVendor)
	require.ErrorContains(t, err, "stale")
	require.Equal(t, int64(4), is.fetches.Load())
}

// TestReadyWaitsBoundedAtStartUp: Ready with a deadline is the documented
// way to wait for the first key set; a key server that holds its answer
// costs the caller the deadline, not the fetch timeout.
func TestReadyWaitsBoundedAtStartUp(t *testing.T) {
	is := newAppCheckIssuer(t)
	hold := make(chan struct{})
	is.mu.Lock()
	is.hold = hold
	is.mu.Unlock()
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Ready(ctx)
	require.ErrorIs(t, err, ErrVendor)
	require.ErrorContains(t, err, "not loaded")
	close(hold)
	is.mu.Lock()
	is.hold = nil
	is.mu.Unlock()
	require.NoError(t, c.Ready(context.Background()), "the fetch under way lands, and Ready waits for it")
}

// TestReadyProbeFlood: readiness probes from many goroutines while the
// key server is down make one fetch, not one each.
func TestReadyProbeFlood(t *testing.T) {
	is := newAppCheckIssuer(t)
	is.setDown(true)
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	const n = 64
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			errs <- c.Ready(context.Background())
		}()
	}
	close(start)
	for range n {
		require.ErrorIs(t, <-errs, ErrVendor)
	}
	require.Equal(t, int64(1), is.fetches.Load(), "one fetch for a flood of probes")
}
