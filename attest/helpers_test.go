package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/attest/playintegrity"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

// logSink collects log output from concurrent writers.
type logSink = testkit.LogSink

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

const (
	testAppID  = "ABCDE12345.com.example.shop"
	pkg        = "com.example.shop"
	certDigest = "Ru4hFDTmPMbDjG1tLyXf7jdxa7vC8bp3l4eSqeapmBo"
)

var synthNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// assessRequest is what the risk Handler decides for r: its Evidence, as
// [Verifier.EvidenceFrom] gathers it, assessed under th.
func assessRequest(v *Verifier, r *http.Request, th Thresholds) (*Risk, error) {
	ev, err := v.EvidenceFrom(r)
	if err != nil {
		return nil, err
	}
	return v.Assess(r.Context(), ev, th)
}

// appAttestEnv is an App Attest verifier on a test root, whose stores a
// test can swap (take down, record) after it is built.
type appAttestEnv struct {
	a    *appattest.Verifier
	ca   *attesttest.CA
	keys *swapKeys
	chs  *swapChallenges
	logs *logSink
}

// newSynthetic builds an App Attest verifier for testAppID on a test
// root, at synthNow unless mod sets Now.
func newSynthetic(t *testing.T, mod func(*appattest.Config)) *appAttestEnv {
	t.Helper()
	ca := sharedCA(t)
	e := &appAttestEnv{ca: ca, keys: &swapKeys{s: newMemKeys()}, chs: &swapChallenges{s: newMemChallenges()}, logs: &logSink{}}
	cfg := appattest.Config{AppIDs: []string{testAppID}, Roots: ca.Roots(), Keys: e.keys, Challenges: e.chs,
		Now: func() time.Time { return synthNow }, Logger: slog.New(slog.NewJSONHandler(e.logs, nil))}
	if mod != nil {
		mod(&cfg)
	}
	var err error
	e.a, err = appattest.New(cfg)
	require.NoError(t, err)
	return e
}

// newPlay builds a Play Integrity verifier for pkg at synthNow.
func newPlay(t *testing.T, _ []*attesttest.PlayKeys, mod func(*playintegrity.Config)) (*playintegrity.Verifier, *logSink) {
	t.Helper()
	logs := &logSink{}
	cfg := playintegrity.Config{
		Policy: playintegrity.Policy{PackageName: pkg, CertificateDigests: []string{certDigest}, MinVersionCode: 40},
		Now:    func() time.Time { return synthNow },
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := playintegrity.New(cfg)
	require.NoError(t, err)
	return p, logs
}

// swapKeys is a key store whose backend a test can replace.
type swapKeys struct {
	mu sync.Mutex
	s  appattest.KeyStore
}

func (k *swapKeys) get() appattest.KeyStore {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.s
}

func (k *swapKeys) set(s appattest.KeyStore) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.s = s
}

func (k *swapKeys) Enroll(ctx context.Context, id string, rec []byte) (bool, error) {
	return k.get().Enroll(ctx, id, rec)
}

func (k *swapKeys) Lookup(ctx context.Context, id string) ([]byte, uint32, bool, error) {
	return k.get().Lookup(ctx, id)
}

func (k *swapKeys) AdvanceCounter(ctx context.Context, id string, from, to uint32) (bool, error) {
	return k.get().AdvanceCounter(ctx, id, from, to)
}

// swapChallenges is a challenge store whose backend a test can replace.
type swapChallenges struct {
	mu sync.Mutex
	s  appattest.ChallengeStore
}

func (c *swapChallenges) get() appattest.ChallengeStore {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

func (c *swapChallenges) set(s appattest.ChallengeStore) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s = s
}

func (c *swapChallenges) Put(ctx context.Context, ch, binding string, exp time.Time) error {
	return c.get().Put(ctx, ch, binding, exp)
}

func (c *swapChallenges) Take(ctx context.Context, ch string) (string, bool, error) {
	return c.get().Take(ctx, ch)
}

// memKeys and memChallenges are plain in-memory stores for these tests
// (appattest's own are unexported).
type memKeys struct {
	mu sync.Mutex
	m  map[string]*memKey
}

type memKey struct {
	rec     []byte
	counter uint32
}

func newMemKeys() *memKeys { return &memKeys{m: map[string]*memKey{}} }

func (s *memKeys) Enroll(_ context.Context, id string, rec []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[id] != nil {
		return false, nil
	}
	s.m[id] = &memKey{rec: rec}
	return true, nil
}

func (s *memKeys) Lookup(_ context.Context, id string) ([]byte, uint32, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.m[id]
	if k == nil {
		return nil, 0, false, nil
	}
	return k.rec, k.counter, true, nil
}

func (s *memKeys) AdvanceCounter(_ context.Context, id string, from, to uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.m[id]
	if k == nil || k.counter != from {
		return false, nil
	}
	k.counter = to
	return true, nil
}

type memChallenges struct {
	mu sync.Mutex
	m  map[string]memChallenge
}

type memChallenge struct {
	binding string
	exp     time.Time
}

func newMemChallenges() *memChallenges { return &memChallenges{m: map[string]memChallenge{}} }

func (s *memChallenges) Put(_ context.Context, ch, binding string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[ch] = memChallenge{binding: binding, exp: exp}
	return nil
}

func (s *memChallenges) Take(_ context.Context, ch string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[ch]
	delete(s.m, ch)
	return c.binding, ok, nil
}

// sharedCA is one test root for the whole test binary, valid a day
// around synthNow: a CA's two P-384 keys cost tens of milliseconds under
// the race detector, and the tests need a trusted root, not a fresh one.
func sharedCA(t *testing.T) *attesttest.CA {
	t.Helper()
	ca, err := sharedCAOnce()
	require.NoError(t, err)
	return ca
}

var sharedCAOnce = sync.OnceValues(func() (*attesttest.CA, error) {
	return attesttest.NewCA(synthNow.Add(-24*time.Hour), synthNow.Add(24*time.Hour))
})

// enrolDirect enrols a new device's key in keys as
// appattest.Verifier.VerifyAttestation would, without the attestation:
// the tests that need many devices would spend seconds on chain
// verification under the race detector, and attestation is tested in
// appattest.
func enrolDirect(t *testing.T, keys appattest.KeyStore) *attesttest.Device {
	t.Helper()
	d, err := attesttest.NewDevice(testAppID)
	require.NoError(t, err)
	point, err := d.Key.PublicKey.Bytes()
	require.NoError(t, err)
	rec, err := json.Marshal(appattest.AttestedKey{KeyID: d.KeyID, PublicKey: point, AppID: testAppID,
		Environment: appattest.Production, OSVersion: "18.1", AttestedAt: synthNow})
	require.NoError(t, err)
	ok, err := keys.Enroll(context.Background(), provider.Scope("app-attest-key", testAppID)+d.KeyID, rec)
	require.NoError(t, err)
	require.True(t, ok)
	return d
}
