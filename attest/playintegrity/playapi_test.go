package playintegrity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

// flakyAPI is a decodeIntegrityToken endpoint whose health the test
// sets, which can hold its answers, and which counts its calls.
type flakyAPI struct {
	srv     *httptest.Server
	calls   atomic.Int64
	arrived chan struct{} // one value per call, when hold is set
	mu      sync.Mutex
	down    bool
	hold    chan struct{}
	verdict map[string]any
	stamps  map[string]int64 // each token's timestampMillis
}

func newFlakyAPI(t *testing.T, verdict map[string]any) *flakyAPI {
	t.Helper()
	f := &flakyAPI{verdict: verdict, stamps: map[string]int64{}, arrived: make(chan struct{}, 1000)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.mu.Lock()
		hold, down := f.hold, f.down
		f.mu.Unlock()
		if hold != nil {
			f.arrived <- struct{}{}
			<-hold
		}
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		// Each token was prepared at its own millisecond, as Google's are:
		// single use follows the verdict.
		var in struct{ IntegrityToken string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		ts, ok := f.stamps[in.IntegrityToken]
		if !ok {
			ts = f.verdict["requestDetails"].(map[string]any)["timestampMillis"].(int64) - int64(len(f.stamps))
			f.stamps[in.IntegrityToken] = ts
		}
		f.mu.Unlock()
		v := maps.Clone(f.verdict)
		rd := maps.Clone(v["requestDetails"].(map[string]any))
		rd["timestampMillis"], v["requestDetails"] = ts, rd
		_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": v})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// waitArrival waits for a held call to reach the API; it fails the test,
// rather than hanging it, if none comes.
func (f *flakyAPI) waitArrival(t *testing.T) {
	t.Helper()
	select {
	case <-f.arrived:
	case <-time.After(time.Minute):
		f.mu.Lock()
		if f.hold != nil { // let the held calls go, or the server's Close would wait for them
			close(f.hold)
			f.hold = nil
		}
		f.mu.Unlock()
		t.Fatal("no call reached the API")
	}
}

func (f *flakyAPI) set(down bool, hold chan struct{}) {
	f.mu.Lock()
	f.down, f.hold = down, hold
	f.mu.Unlock()
}

// TestPlayIntegrityAPIStorm: every request with a standard token used to
// call Google's API, whatever state the API was in: a flood of tokens
// became a flood of calls, and an API outage was paid by every request.
// Calls are now capped, deduplicated per token and backed off after a
// failure, and Retry-After is when the next call will be made.
func TestPlayIntegrityAPIStorm(t *testing.T) {
	hash := RequestHash("POST", "/premium", "", nil)
	api := newFlakyAPI(t, attesttest.Verdict(pkg, "", hash, synthNow.Add(-time.Second).UnixMilli(), certDigest))
	clock := synthNow
	play, _ := newPlay(t, nil, func(c *Config) {
		c.APIBaseURL, c.HTTPClient, c.MaxConcurrentCalls = api.srv.URL, api.srv.Client(), 8
		// Long enough that no held call times out on a loaded machine
		// before it reaches the API (the test waits for its arrival).
		c.APITimeout = time.Minute
		c.Now = func() time.Time { return clock }
	})
	verify := func(token string) error {
		_, err := play.VerifyStandard(context.Background(), token, hash)
		return err
	}
	// floodHeld sends n distinct tokens while the API holds its answers:
	// it returns once every request is answered, releasing the API after
	// the requests the gate turned away have returned.
	floodHeld := func(n, admitted int, prefix string) []error {
		hold := make(chan struct{})
		api.set(api.down, hold)
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- verify(fmt.Sprintf("%s-%d", prefix, i)) }()
		}
		var out []error
		for range n - admitted {
			out = append(out, <-errs)
		}
		for range admitted {
			api.waitArrival(t)
		}
		api.set(api.down, nil)
		close(hold)
		for range admitted {
			out = append(out, <-errs)
		}
		return out
	}

	// The API is down: a hundred tokens at once make at most
	// MaxConcurrentCalls calls; the rest are turned away at once.
	api.set(true, nil)
	for _, err := range floodHeld(100, 8, "a") {
		require.ErrorIs(t, err, ErrVendor)
	}
	require.Equal(t, int64(8), api.calls.Load(), "play_integrity_api_storm: capped calls")

	// Backed off: no call until Retry-After, then one probe at a time.
	err := verify("b")
	ue, ok := errors.AsType[*UnavailableError](err)
	require.True(t, ok, "%v", err)
	require.GreaterOrEqual(t, ue.RetryAfter, 1600*time.Millisecond)
	require.Less(t, ue.RetryAfter, 2400*time.Millisecond)
	for i := range 100 {
		require.ErrorIs(t, verify(fmt.Sprintf("c-%d", i)), ErrVendor)
	}
	require.Equal(t, int64(8), api.calls.Load(), "no call while backed off")
	clock = clock.Add(ue.RetryAfter)
	for _, err := range floodHeld(50, 1, "d") {
		require.ErrorIs(t, err, ErrVendor)
	}
	require.Equal(t, int64(9), api.calls.Load(), "one probe at Retry-After")
	ue, _ = errors.AsType[*UnavailableError](verify("e"))
	require.NotNil(t, ue)
	require.GreaterOrEqual(t, ue.RetryAfter, 3200*time.Millisecond, "the back-off doubles")

	// The API recovers: the next probe succeeds and calls flow again.
	api.set(false, nil)
	clock = clock.Add(ue.RetryAfter)
	require.NoError(t, verify("f"))
	require.NoError(t, verify("g"))
	require.Equal(t, int64(11), api.calls.Load())

	// One token sent by many requests at once: one call, one admission.
	hold := make(chan struct{})
	api.set(false, hold)
	errs := make(chan error, 50)
	for range 50 {
		go func() { errs <- verify("same") }()
	}
	api.waitArrival(t)
	api.set(false, nil)
	// Every request has joined the call or will find it done; release it.
	close(hold)
	admitted := 0
	for range 50 {
		if err := <-errs; err == nil {
			admitted++
		} else {
			require.ErrorIs(t, err, ErrPolicy, "the token was used")
		}
	}
	require.Equal(t, 1, admitted)
	require.LessOrEqual(t, api.calls.Load(), int64(12+49), "calls")
}

// TestPlayIntegrityAPIBoundedWait: an API that does not answer holds a
// request for APITimeout at most, and counts as a failure.
func TestPlayIntegrityAPIBoundedWait(t *testing.T) {
	hash := RequestHash("POST", "/premium", "", nil)
	api := newFlakyAPI(t, attesttest.Verdict(pkg, "", hash, synthNow.Add(-time.Second).UnixMilli(), certDigest))
	hold := make(chan struct{})
	defer close(hold)
	api.set(false, hold)
	play, _ := newPlay(t, nil, func(c *Config) {
		c.APIBaseURL, c.HTTPClient, c.APITimeout = api.srv.URL, api.srv.Client(), 250*time.Millisecond
	})
	_, err := play.VerifyStandard(context.Background(), "t", hash)
	require.ErrorIs(t, err, ErrVendor)
	_, err = play.VerifyStandard(context.Background(), "u", hash)
	_, ok := errors.AsType[*UnavailableError](err)
	require.True(t, ok, "backed off after the timeout: %v", err)
	require.Equal(t, int64(1), api.calls.Load())
}
