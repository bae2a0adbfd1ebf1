package provider

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFetcherFetchStormIsOneFetch: a flood of requests that find no
// document (a key set, a status list) never loaded makes one fetch, not
// one each, and the outage they are answered with says what is missing,
// why, and when the next fetch will be; once the vendor is back and the
// back-off has passed, one fetch loads the document, its max-age clamped
// to MinRefresh.
func TestFetcherFetchStormIsOneFetch(t *testing.T) {
	var fetches atomic.Int64
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=5")
		_, _ = w.Write([]byte("3"))
	}))
	defer srv.Close()
	var mu sync.Mutex
	clock := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	f := NewFetcher(FetchConfig[int]{
		Name: "test set", Message: "test set", Event: "test", Fetch: "fetch test set",
		URL: srv.URL, Client: srv.Client(), MaxBytes: 16, Parse: func(b []byte) (int, error) { return strconv.Atoi(string(b)) },
		Size:          func(n int) slog.Attr { return slog.Int("n", n) },
		DefaultMaxAge: time.Hour, MaxMaxAge: time.Hour, MinRefresh: time.Minute, FetchTimeout: 5 * time.Second, MaxStale: 24 * time.Hour,
		Now: now, Logger: slog.New(slog.DiscardHandler),
	})
	defer f.Close()

	const n = 100
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			f.Await(context.Background(), now(), 0)
			if f.Current(now()) == nil {
				errs[i] = f.Unavailable(now(), f.Missing())
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(1), fetches.Load(), "fetch_storm: one fetch for a flood before the first load")
	for _, err := range errs {
		require.ErrorIs(t, err, ErrVendor)
		require.ErrorContains(t, err, "test set not loaded: fetch test set: status 503")
		ue, ok := errors.AsType[*UnavailableError](err)
		require.True(t, ok)
		require.GreaterOrEqual(t, ue.RetryAfter, 48*time.Second, "the back-off after one failure: a minute, jittered by 20 %")
	}
	_, loaded, lastErr := f.Age()
	require.False(t, loaded)
	require.ErrorContains(t, lastErr, "status 503")

	down.Store(false)
	mu.Lock()
	clock = clock.Add(2 * time.Minute)
	mu.Unlock()
	f.Await(context.Background(), now(), 0)
	d := f.Current(now())
	require.NotNil(t, d)
	require.Equal(t, 3, d.Value)
	require.Equal(t, time.Minute, d.MaxAge, "max-age=5 is clamped to MinRefresh")
	require.Equal(t, int64(2), fetches.Load())
	age, loaded, lastErr := f.Age()
	require.True(t, loaded)
	require.NoError(t, lastErr)
	require.Zero(t, age)
}
