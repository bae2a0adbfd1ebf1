package androidkey

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

// enrolEnv is an enrolment endpoint over a test verifier, with a store
// that records what it was given.
type enrolEnv struct {
	*testEnv
	h         http.Handler
	challenge []byte
	mu        sync.Mutex
	stored    map[string]crypto.PublicKey
	signals   map[string][]string
	storeErr  error
	logs      *testkit.LogSink
}

func newEnrolEnv(t *testing.T, adjust func(*Config)) *enrolEnv {
	t.Helper()
	logs := &testkit.LogSink{}
	e := &enrolEnv{challenge: []byte("enrol-challenge-1"), stored: map[string]crypto.PublicKey{}, signals: map[string][]string{}, logs: logs}
	e.testEnv = newTestEnv(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		if adjust != nil {
			adjust(c)
		}
	})
	h, err := e.v.EnrolHandler(Enrolment{
		Challenge: func(*http.Request) ([]byte, error) { return e.challenge, nil },
		Enrol: func(_ context.Context, keyID string, pub crypto.PublicKey, signals []string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.storeErr != nil {
				return e.storeErr
			}
			if _, ok := e.stored[keyID]; ok {
				return ErrKeyTaken
			}
			e.stored[keyID], e.signals[keyID] = pub, signals
			return nil
		},
	})
	require.NoError(t, err)
	e.h = h
	return e
}

func enrolRequest(t *testing.T, keyID string, chain [][]byte) *http.Request {
	t.Helper()
	var enc []string
	for _, c := range chain {
		enc = append(enc, base64.StdEncoding.EncodeToString(c))
	}
	b, err := json.Marshal(map[string]any{"key_id": keyID, "chain": enc})
	require.NoError(t, err)
	return httptest.NewRequest(http.MethodPost, "/enrol/android", bytes.NewReader(b))
}

func (e *enrolEnv) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *enrolEnv) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.stored)
}

// TestEnrolAndroidKey: the attested Keystore key is enrolled, and is the
// key the device signs with.
func TestEnrolAndroidKey(t *testing.T) {
	e := newEnrolEnv(t, nil)
	chain, priv, err := e.ca.Attest(goodKey(string(e.challenge)))
	require.NoError(t, err)
	w := e.serve(enrolRequest(t, "dev-1", chain))
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	require.JSONEq(t, `{"key_id":"dev-1","algorithm":"ecdsa-p256-sha256"}`, w.Body.String())
	pub, ok := e.stored["dev-1"].(*ecdsa.PublicKey)
	require.True(t, ok)
	require.True(t, pub.Equal(&priv.PublicKey))
	require.Empty(t, e.signals["dev-1"])
	digest := sha256.Sum256([]byte("POST /v1/payments"))
	sig, err := ecdsa.SignASN1(nil, priv, digest[:])
	require.NoError(t, err)
	require.True(t, ecdsa.VerifyASN1(pub, digest[:], sig))
}

// TestEnrolAndroidSignals: a loosened policy's signals reach Enrol.
func TestEnrolAndroidSignals(t *testing.T) {
	e := newEnrolEnv(t, func(c *Config) { c.InsecureAllowUnlockedBootloader = true })
	k := goodKey(string(e.challenge))
	k.Unlocked = true
	w := e.serve(enrolRequest(t, "dev-1", e.attest(t, k)))
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	require.Equal(t, []string{SignalBootloaderUnlocked}, e.signals["dev-1"])
}

// TestEnrolAndroidAttacksRefused: each attack is answered with
// problem+json, and nothing is enrolled.
func TestEnrolAndroidAttacksRefused(t *testing.T) {
	tests := []struct {
		name   string
		key    func(k *attesttest.AndroidKey)
		req    func(t *testing.T, e *enrolEnv, chain [][]byte) *http.Request
		status int
	}{
		{name: "key_without_sign_purpose", key: func(k *attesttest.AndroidKey) { k.Purposes = []int{3} }, status: 401},
		{name: "rsa_key", key: func(k *attesttest.AndroidKey) { k.RSA = true }, status: 401},
		{name: "imported_key", key: func(k *attesttest.AndroidKey) { k.Imported = true }, status: 401},
		{name: "software_key", key: func(k *attesttest.AndroidKey) { k.Software = true }, status: 401},
		{name: "chain_for_another_package", key: func(k *attesttest.AndroidKey) { k.Packages = []string{"com.example.clone"} }, status: 401},
		{name: "unlocked_bootloader", key: func(k *attesttest.AndroidKey) { k.Unlocked = true }, status: 401},
		{name: "chain_for_another_challenge", key: func(k *attesttest.AndroidKey) { k.Challenge = []byte("attacker-chosen") }, status: 401},
		{name: "leaf_only", req: func(t *testing.T, _ *enrolEnv, chain [][]byte) *http.Request {
			return enrolRequest(t, "dev-1", chain[:1])
		}, status: 401},
		{name: "key_id_with_line_feed", req: func(t *testing.T, _ *enrolEnv, chain [][]byte) *http.Request {
			return enrolRequest(t, "dev\n1", chain)
		}, status: 400},
		{name: "key_id_too_long", req: func(t *testing.T, _ *enrolEnv, chain [][]byte) *http.Request {
			return enrolRequest(t, strings.Repeat("a", 129), chain)
		}, status: 400},
		{name: "chain_not_base64", req: func(t *testing.T, _ *enrolEnv, _ [][]byte) *http.Request {
			return httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"key_id":"dev-1","chain":["%%%"]}`))
		}, status: 400},
		{name: "unknown_field", req: func(t *testing.T, _ *enrolEnv, _ [][]byte) *http.Request {
			return httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"key_id":"dev-1","chain":[],"public_key":"x"}`))
		}, status: 400},
		{name: "get", req: func(t *testing.T, _ *enrolEnv, _ [][]byte) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/", nil)
		}, status: 400},
		{name: "body_too_large", req: func(t *testing.T, _ *enrolEnv, _ [][]byte) *http.Request {
			return httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"key_id":"`+strings.Repeat("a", 70<<10)+`"}`))
		}, status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnrolEnv(t, nil)
			k := goodKey(string(e.challenge))
			if tt.key != nil {
				tt.key(&k)
			}
			chain := e.attest(t, k)
			r := enrolRequest(t, "dev-1", chain)
			if tt.req != nil {
				r = tt.req(t, e, chain)
			}
			w := e.serve(r)
			require.Equal(t, tt.status, w.Code, w.Body.String())
			require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
			require.Zero(t, e.count())
			require.NotContains(t, e.logs.String(), string(e.challenge))
		})
	}
}

// TestEnrolAndroidReplayedChallenge: a chain enrolled once is refused
// the second time, under another key ID too.
func TestEnrolAndroidReplayedChallenge(t *testing.T) {
	e := newEnrolEnv(t, nil)
	chain := e.attest(t, goodKey(string(e.challenge)))
	require.Equal(t, http.StatusCreated, e.serve(enrolRequest(t, "dev-1", chain)).Code)
	w := e.serve(enrolRequest(t, "dev-2", chain))
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Equal(t, 1, e.count())
}

// TestEnrolAndroidReplayedChallengeConcurrent: of many concurrent
// enrolments of one chain, exactly one succeeds.
func TestEnrolAndroidReplayedChallengeConcurrent(t *testing.T) {
	e := newEnrolEnv(t, nil)
	chain := e.attest(t, goodKey(string(e.challenge)))
	const n = 32
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes <- e.serve(enrolRequest(t, "dev-"+string(rune('a'+i)), chain)).Code })
	}
	wg.Wait()
	close(codes)
	created := 0
	for c := range codes {
		if c == http.StatusCreated {
			created++
		}
	}
	require.Equal(t, 1, created)
	require.Equal(t, 1, e.count())
}

// TestEnrolAndroidKeyIDTaken: a key ID cannot be enrolled over: 409.
func TestEnrolAndroidKeyIDTaken(t *testing.T) {
	e := newEnrolEnv(t, nil)
	require.Equal(t, http.StatusCreated, e.serve(enrolRequest(t, "dev-1", e.attest(t, goodKey(string(e.challenge))))).Code)
	e.challenge = []byte("enrol-challenge-2")
	w := e.serve(enrolRequest(t, "dev-1", e.attest(t, goodKey(string(e.challenge)))))
	require.Equal(t, http.StatusConflict, w.Code)
	require.Equal(t, 1, e.count())
}

// TestEnrolAndroidStoreOutage: the application's store failing, or its
// challenge source, is a 503 with Retry-After, never a 401 or a 500.
func TestEnrolAndroidStoreOutage(t *testing.T) {
	e := newEnrolEnv(t, nil)
	e.storeErr = errors.New("redis: connection refused")
	w := e.serve(enrolRequest(t, "dev-1", e.attest(t, goodKey(string(e.challenge)))))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.NotContains(t, w.Body.String(), "redis")

	h, err := e.v.EnrolHandler(Enrolment{
		Challenge: func(*http.Request) ([]byte, error) { return nil, ErrStore },
		Enrol:     func(context.Context, string, crypto.PublicKey, []string) error { return nil },
	})
	require.NoError(t, err)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, enrolRequest(t, "dev-1", e.attest(t, goodKey(string(e.challenge)))))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
}

// TestEnrolmentRequired: the callbacks are required.
func TestEnrolmentRequired(t *testing.T) {
	e := newTestEnv(t, nil)
	_, err := e.v.EnrolHandler(Enrolment{Challenge: func(*http.Request) ([]byte, error) { return nil, nil }})
	require.Error(t, err)
}
