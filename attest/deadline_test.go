package attest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/playintegrity"
	"github.com/stretchr/testify/require"
)

// deadlines records the context deadline of every store call it sees.
type deadlines struct {
	mu   sync.Mutex
	seen []time.Time
	none int // calls without a deadline
}

func (d *deadlines) record(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		d.seen = append(d.seen, dl)
	} else {
		d.none++
	}
}

// hang blocks until ctx ends: a store that never answers. (A fallback
// ends it if nothing bounds ctx, so that a missing deadline fails the
// test instead of hanging it.)
func hang(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return errors.New("no deadline: the call would have hung")
	}
}

type recordingKeys struct {
	appattest.KeyStore
	d     *deadlines
	block bool
}

func (s recordingKeys) Lookup(ctx context.Context, id string) ([]byte, uint32, bool, error) {
	s.d.record(ctx)
	if s.block {
		return nil, 0, false, hang(ctx)
	}
	return s.KeyStore.Lookup(ctx, id)
}

func (s recordingKeys) AdvanceCounter(ctx context.Context, id string, from, to uint32) (bool, error) {
	s.d.record(ctx)
	if s.block {
		return false, hang(ctx)
	}
	return s.KeyStore.AdvanceCounter(ctx, id, from, to)
}

type recordingChallenges struct {
	appattest.ChallengeStore
	d     *deadlines
	block bool
}

func (s recordingChallenges) Take(ctx context.Context, c string) (string, bool, error) {
	s.d.record(ctx)
	if s.block {
		return "", false, hang(ctx)
	}
	return s.ChallengeStore.Take(ctx, c)
}

type recordingHistory struct {
	HistoryStore
	d     *deadlines
	block bool
}

func (s recordingHistory) Swap(ctx context.Context, subject string, rec []byte, ttl time.Duration) ([]byte, error) {
	s.d.record(ctx)
	if s.block {
		return nil, hang(ctx)
	}
	return s.HistoryStore.Swap(ctx, subject, rec, ttl)
}

func (s recordingHistory) AddKey(ctx context.Context, subject, keyID string, at time.Time, ttl time.Duration) (int, error) {
	s.d.record(ctx)
	if s.block {
		return 0, hang(ctx)
	}
	return s.HistoryStore.AddKey(ctx, subject, keyID, at, ttl)
}

type recordingNonces struct {
	playintegrity.NonceStore
	d     *deadlines
	block bool
}

func (s recordingNonces) Use(ctx context.Context, id string, exp time.Time) (bool, error) {
	s.d.record(ctx)
	if s.block {
		return false, hang(ctx)
	}
	return s.NonceStore.Use(ctx, id, exp)
}

// fixedLocator places every request in Paris.
type fixedLocator struct{}

func (fixedLocator) Locate(*http.Request) (Location, bool) {
	return Location{Lat: 48.8566, Lon: 2.3522, AccuracyKm: 10}, true
}

// requireOneDeadline checks that calls store calls were made, all under
// the same deadline, set StoreTimeout after an instant between before and
// after: the request's total wait on its store is one timeout, however
// many calls it makes.
func requireOneDeadline(t *testing.T, d *deadlines, calls int, timeout time.Duration, before, after time.Time) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Zero(t, d.none, "a store call without a deadline")
	require.Len(t, d.seen, calls)
	for _, dl := range d.seen {
		require.Equal(t, d.seen[0], dl, "every store call shares the request's deadline")
	}
	require.False(t, d.seen[0].Before(before.Add(timeout)), "the deadline is StoreTimeout from the request's start")
	require.False(t, d.seen[0].After(after.Add(timeout)), "the deadline is StoreTimeout from the request's start")
}

// TestStoreCallsShareOneDeadline: the risk check makes several store
// calls in sequence (key lookup, counter, challenge, history); each used
// to get its own timeout, so a slow store cost a request several
// timeouts. Now one deadline per request bounds them all; a store that
// blocks until its context ends costs one StoreTimeout.
func TestStoreCallsShareOneDeadline(t *testing.T) {
	const timeout = 40 * time.Millisecond
	t.Run("risk_app_attest_history_hangs", func(t *testing.T) {
		d := &deadlines{}
		e := newRiskEnv(t, func(c *Config) {
			c.StoreTimeout = timeout
			c.History = recordingHistory{HistoryStore: newMemoryHistoryStore(10, nil), d: d, block: true}
		})
		dev := e.device(attesttest.AttestOptions{})
		e.keys.set(recordingKeys{KeyStore: e.keys.get(), d: d})
		e.chs.set(recordingChallenges{ChallengeStore: e.chs.get(), d: d})
		r := e.request(dev, "lee", paris, "")
		before := time.Now()
		_, err := assessRequest(e.v, r, Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
		after := time.Now()
		require.NoError(t, err)
		// Lookup, AdvanceCounter, Take, then the history, which hangs
		// until the deadline.
		d.mu.Lock()
		n := len(d.seen) + d.none
		d.mu.Unlock()
		require.GreaterOrEqual(t, n, 4)
		requireOneDeadline(t, d, n, timeout, before, after)
	})
	t.Run("risk_app_attest_key_store_hangs", func(t *testing.T) {
		d := &deadlines{}
		e := newRiskEnv(t, func(c *Config) {
			c.StoreTimeout = timeout
			c.History = recordingHistory{HistoryStore: newMemoryHistoryStore(10, nil), d: d}
		})
		dev := e.device(attesttest.AttestOptions{})
		e.keys.set(recordingKeys{KeyStore: e.keys.get(), d: d, block: true})
		r := e.request(dev, "lee", paris, "")
		before := time.Now()
		risk, err := assessRequest(e.v, r, Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
		after := time.Now()
		require.NoError(t, err)
		require.Contains(t, risk.Reasons, ReasonVendorOutage)
		d.mu.Lock()
		n := len(d.seen) + d.none
		d.mu.Unlock()
		require.GreaterOrEqual(t, n, 2, "the lookup, then the history")
		requireOneDeadline(t, d, n, timeout, before, after)
	})
	t.Run("risk_play_integrity_nonce_store_hangs", func(t *testing.T) {
		d := &deadlines{}
		body := []byte("{}")
		api, _ := playAPI(t, func(string) map[string]any {
			return attesttest.Verdict(pkg, "", playintegrity.RequestHash("POST", "/premium", "", body), synthNow.Add(-time.Second).UnixMilli(), certDigest)
		})
		play, _ := newPlay(t, nil, func(c *playintegrity.Config) {
			c.APIBaseURL, c.HTTPClient = api.URL, api.Client()
			c.Nonces = recordingNonces{d: d, block: true} // blocks: no backend is reached
		})
		v, err := New(Config{PlayIntegrity: play, StoreTimeout: timeout, Locator: fixedLocator{},
			History: recordingHistory{HistoryStore: newMemoryHistoryStore(10, nil), d: d},
			Subject: func(*http.Request) (string, error) { return "mo", nil }, Now: func() time.Time { return synthNow }, Logger: nopLogger()})
		require.NoError(t, err)
		r := httptest.NewRequest("POST", "/premium", bytesReader(body))
		r.Header.Set(playintegrity.Header, "token")
		before := time.Now()
		risk, err := assessRequest(v, r, Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
		after := time.Now()
		require.NoError(t, err)
		require.Contains(t, risk.Reasons, ReasonVendorOutage)
		d.mu.Lock()
		n := len(d.seen) + d.none
		d.mu.Unlock()
		require.GreaterOrEqual(t, n, 2, "the token's single use, then the history")
		requireOneDeadline(t, d, n, timeout, before, after)
	})
}
