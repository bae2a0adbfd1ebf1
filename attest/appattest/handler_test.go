package appattest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/stretchr/testify/require"
)

// TestClientDataFormat pins the documented canonical form, so that a
// client built from the documentation alone computes the same bytes.
func TestClientDataFormat(t *testing.T) {
	got := ClientData("POST", "/v1/transfer", "to=alice&amount=10", []byte(`{"memo":"rent"}`), "Y2hhbGxlbmdl")
	sum := sha256.Sum256([]byte(`{"memo":"rent"}`))
	want := "apiguard-attest-v2\nPOST\n/v1/transfer\nto=alice&amount=10\n" + hex.EncodeToString(sum[:]) + "\nY2hhbGxlbmdl"
	require.Equal(t, want, string(got))
	empty := sha256.Sum256(nil)
	require.Equal(t, "apiguard-attest-v2\nGET\n/\n\n"+hex.EncodeToString(empty[:])+"\n", string(ClientData("GET", "/", "", nil, "")))
}

// TestHandlerBodyOverLimit: the App Attest Handler reads the body whole
// to check what the assertion binds; one larger than MaxBodyBytes is
// refused with 413 problem+json before the assertion is checked (and its
// challenge spent); one at the limit is handed on intact.
func TestHandlerBodyOverLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit int64 // Config.MaxBodyBytes
		size  int   // the body sent
		want  int
	}{
		{"oversized_body_default_limit", 0, 1<<20 + 1, http.StatusRequestEntityTooLarge},
		{"oversized_body_configured_limit", 16, 17, http.StatusRequestEntityTooLarge},
		{"body_at_limit", 16, 16, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newBindingEnv(t, false)
			e.a.cfg.MaxBodyBytes = tt.limit
			if tt.limit == 0 {
				e.a.cfg.MaxBodyBytes = 1 << 20 // what New makes of 0
			}
			body := bytes.Repeat([]byte("a"), tt.size)
			r := e.request(t, "/transfer", string(body), func(ch string) []byte { return ClientData("POST", "/transfer", "", body, ch) })
			var got []byte
			rec := httptest.NewRecorder()
			e.a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = make([]byte, len(body))
				n, _ := r.Body.Read(got)
				got = got[:n]
			})).ServeHTTP(rec, r)
			require.Equal(t, tt.want, rec.Code)
			if tt.want == http.StatusOK {
				require.Equal(t, body, got, "the body is handed on intact")
				return
			}
			require.Nil(t, got, "next is not called")
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			require.Contains(t, rec.Body.String(), "body-too-large")
			require.NoError(t, e.a.ConsumeChallenge(context.Background(), r.Header.Get(HeaderChallenge), e.dev.KeyID),
				"the oversized request did not spend the challenge")
		})
	}
	t.Run("negative_limit_refused", func(t *testing.T) {
		_, err := New(Config{AppIDs: []string{testAppID}, MaxBodyBytes: -1})
		require.ErrorContains(t, err, "MaxBodyBytes")
	})
	t.Run("limit_over_1GiB_refused", func(t *testing.T) {
		_, err := New(Config{AppIDs: []string{testAppID}, MaxBodyBytes: 1<<30 + 1})
		require.ErrorContains(t, err, "MaxBodyBytes")
	})
}

// TestHandlerErrorHandlerGetsSentinel: a custom Config.ErrorHandler is
// handed every rejection of the Handler and the ChallengeHandler as an
// error it can tell apart with errors.Is, and writes the answer.
func TestHandlerErrorHandlerGetsSentinel(t *testing.T) {
	var got error
	handle := func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		w.WriteHeader(http.StatusTeapot)
	}
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("served") })
	tests := []struct {
		name string
		mod  func(e *bindingEnv, r *http.Request)
		want error
	}{
		{name: "missing_headers", mod: func(_ *bindingEnv, r *http.Request) { r.Header.Del(HeaderAssertion) }, want: ErrMalformed},
		{name: "replayed_challenge", mod: func(e *bindingEnv, r *http.Request) {
			require.NoError(t, e.a.ConsumeChallenge(context.Background(), r.Header.Get(HeaderChallenge), e.dev.KeyID))
		}, want: ErrChallenge},
		{name: "forged_key_id", mod: func(_ *bindingEnv, r *http.Request) {
			r.Header.Set(HeaderKeyID, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
		}, want: ErrUnknownKey},
		{name: "oversized_body", mod: func(e *bindingEnv, r *http.Request) { e.a.cfg.MaxBodyBytes = 1 }, want: ErrBodyTooLarge},
		{name: "key_store_down", mod: func(e *bindingEnv, _ *http.Request) { e.a.cfg.Keys = downKeys{} }, want: ErrStore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			e := newBindingEnv(t, false)
			e.a.cfg.ErrorHandler = handle
			r := e.request(t, "/transfer", "{}", func(ch string) []byte { return ClientData("POST", "/transfer", "", []byte("{}"), ch) })
			tt.mod(e, r)
			rec := httptest.NewRecorder()
			e.a.Handler(next).ServeHTTP(rec, r)
			require.Equal(t, http.StatusTeapot, rec.Code)
			require.ErrorIs(t, got, tt.want)
		})
	}
	t.Run("challenge_handler_store_down", func(t *testing.T) {
		got = nil
		a, _, _ := newSynthetic(t)
		a.cfg.ErrorHandler = handle
		a.challeng.store = downChallenges{}
		rec := httptest.NewRecorder()
		a.ChallengeHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/attest/challenge", nil))
		require.Equal(t, http.StatusTeapot, rec.Code)
		require.ErrorIs(t, got, ErrStore)
	})
	t.Run("default_store_down_is_503", func(t *testing.T) {
		a, _, _ := newSynthetic(t)
		a.challeng.store = downChallenges{}
		rec := httptest.NewRecorder()
		a.ChallengeHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/attest/challenge", nil))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
		require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	})
}

// downKeys and downChallenges are stores that cannot be reached.
type (
	downKeys       struct{}
	downChallenges struct{}
)

var errDown = errors.New("dial tcp: connection refused")

func (downKeys) Enroll(context.Context, string, []byte) (bool, error) { return false, errDown }
func (downKeys) Lookup(context.Context, string) ([]byte, uint32, bool, error) {
	return nil, 0, false, errDown
}
func (downKeys) AdvanceCounter(context.Context, string, uint32, uint32) (bool, error) {
	return false, errDown
}
func (downChallenges) Put(context.Context, string, string, time.Time) error { return errDown }
func (downChallenges) Take(context.Context, string) (string, bool, error)   { return "", false, errDown }

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

// hang blocks until ctx ends: a store that never answers.
func hang(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return errors.New("no deadline: the call would have hung")
	}
}

type recordingKeys struct {
	KeyStore
	d *deadlines
}

func (s recordingKeys) Lookup(ctx context.Context, id string) ([]byte, uint32, bool, error) {
	s.d.record(ctx)
	return s.KeyStore.Lookup(ctx, id)
}

func (s recordingKeys) AdvanceCounter(ctx context.Context, id string, from, to uint32) (bool, error) {
	s.d.record(ctx)
	return s.KeyStore.AdvanceCounter(ctx, id, from, to)
}

type hangingChallenges struct {
	ChallengeStore
	d *deadlines
}

func (s hangingChallenges) Take(ctx context.Context, c string) (string, bool, error) {
	s.d.record(ctx)
	return "", false, hang(ctx)
}

// TestHandlerStoreCallsShareOneDeadline: the Handler's store calls (key
// lookup, counter, challenge) share one deadline, StoreTimeout from the
// request's start, so a store that hangs costs one timeout.
func TestHandlerStoreCallsShareOneDeadline(t *testing.T) {
	const timeout = 40 * time.Millisecond
	d := &deadlines{}
	e := newBindingEnv(t, false)
	e.a.cfg.StoreTimeout = timeout
	e.a.cfg.Keys = recordingKeys{KeyStore: e.a.cfg.Keys, d: d}
	r := e.request(t, "/transfer", "", func(ch string) []byte { return ClientData("POST", "/transfer", "", nil, ch) })
	e.a.challeng.store = hangingChallenges{ChallengeStore: e.a.cfg.Challenges, d: d}
	rec := httptest.NewRecorder()
	before := time.Now()
	e.a.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(rec, r)
	after := time.Now()
	require.Equal(t, 503, rec.Code)
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Zero(t, d.none, "a store call without a deadline")
	require.Len(t, d.seen, 3) // Lookup, AdvanceCounter, Take
	for _, dl := range d.seen {
		require.Equal(t, d.seen[0], dl, "every store call shares the request's deadline")
	}
	require.False(t, d.seen[0].Before(before.Add(timeout)), "the deadline is StoreTimeout from the request's start")
	require.False(t, d.seen[0].After(after.Add(timeout)), "the deadline is StoreTimeout from the request's start")
}

// TestNamesMatchTheEngine: the risk engine reads the same headers and
// builds the same client data as this package documents.
func TestNamesMatchTheEngine(t *testing.T) {
	require.Equal(t, provider.HeaderKeyID, HeaderKeyID)
	require.Equal(t, provider.HeaderAssertion, HeaderAssertion)
	require.Equal(t, provider.HeaderChallenge, HeaderChallenge)
	require.Equal(t, provider.ClientDataVersion, ClientDataVersion)
}

// TestNegativeConfigNamesField: a negative timeout or size is an error
// naming its field, never a silent default.
func TestNegativeConfigNamesField(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative_challenge_ttl", func(c *Config) { c.ChallengeTTL = -time.Second }, "appattest.Config.ChallengeTTL must not be negative (got -1s)"},
		{"negative_store_timeout", func(c *Config) { c.StoreTimeout = -time.Millisecond }, "appattest.Config.StoreTimeout must not be negative (got -1ms)"},
		{"negative_max_keys", func(c *Config) { c.MaxKeys = -1 }, "appattest.Config.MaxKeys must not be negative (got -1)"},
		{"negative_max_object_size", func(c *Config) { c.MaxObjectSize = -1 }, "appattest.Config.MaxObjectSize must not be negative"},
		{"negative_max_body_bytes", func(c *Config) { c.MaxBodyBytes = -1 }, "appattest.Config.MaxBodyBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{AppIDs: []string{testAppID}}
			tt.mod(&cfg)
			_, err := New(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// readyKeys and readyChallenges are stores with a Ready method, like
// redisstore's; readyKeys records whether Ready had a deadline.
type readyKeys struct {
	KeyStore
	err         error
	hadDeadline *bool
}

func (s readyKeys) Ready(ctx context.Context) error {
	_, *s.hadDeadline = ctx.Deadline()
	return s.err
}

type readyChallenges struct {
	ChallengeStore
	err error
}

func (s readyChallenges) Ready(context.Context) error { return s.err }

// TestReady: the in-memory stores are always ready; a store with a
// Ready method is asked, within StoreTimeout, and its failure is
// ErrStore naming the store.
func TestReady(t *testing.T) {
	a, _, _ := newSynthetic(t)
	ctx := context.Background()
	require.NoError(t, a.Ready(ctx), "in-memory stores")
	var hadDeadline bool
	a.cfg.Keys = readyKeys{KeyStore: a.cfg.Keys, hadDeadline: &hadDeadline}
	a.cfg.Challenges = readyChallenges{ChallengeStore: a.cfg.Challenges}
	require.NoError(t, a.Ready(ctx))
	require.True(t, hadDeadline, "bounded by StoreTimeout")
	a.cfg.Keys = readyKeys{KeyStore: a.cfg.Keys, err: errDown, hadDeadline: &hadDeadline}
	err := a.Ready(ctx)
	require.ErrorIs(t, err, ErrStore)
	require.ErrorContains(t, err, "key store")
	a.cfg.Keys = readyKeys{KeyStore: a.cfg.Keys, hadDeadline: &hadDeadline}
	a.cfg.Challenges = readyChallenges{ChallengeStore: a.cfg.Challenges, err: errDown}
	err = a.Ready(ctx)
	require.ErrorIs(t, err, ErrStore)
	require.ErrorContains(t, err, "challenge store")
}
