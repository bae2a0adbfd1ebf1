package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/shadowtest"
)

// seededChallenges is a challenge store that holds, once per instance,
// challenges fixed in advance, so that one recorded request carries a
// challenge valid in each of two fresh instances.
type seededChallenges struct {
	mu      sync.Mutex
	binding map[string]string // challenge -> key ID
}

func newSeededChallenges(binding map[string]string) *seededChallenges {
	m := make(map[string]string, len(binding))
	for k, v := range binding {
		m[k] = v
	}
	return &seededChallenges{binding: m}
}

func (s *seededChallenges) Put(context.Context, string, string, time.Time) error { return nil }

// Take finds the challenge at the end of id (after the verifier's
// namespace) and uses it up.
func (s *seededChallenges) Take(_ context.Context, id string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch, b := range s.binding {
		if strings.HasSuffix(id, ch) {
			delete(s.binding, ch)
			return b, true, nil
		}
	}
	return "", false, nil
}

// downFor is a key store that is down for one key ID.
type downFor struct {
	appattest.KeyStore
	keyID string
}

func (d downFor) Lookup(ctx context.Context, id string) ([]byte, uint32, bool, error) {
	if strings.HasSuffix(id, d.keyID) {
		return nil, 0, false, errors.New("store down")
	}
	return d.KeyStore.Lookup(ctx, id)
}

// enrolIn enrols d's key in keys as VerifyAttestation would.
func enrolIn(t *testing.T, keys appattest.KeyStore, d *attesttest.Device) {
	t.Helper()
	point, err := d.Key.PublicKey.Bytes()
	require.NoError(t, err)
	rec, err := json.Marshal(appattest.AttestedKey{KeyID: d.KeyID, PublicKey: point, AppID: testAppID,
		Environment: appattest.Production, OSVersion: "18.1", AttestedAt: synthNow})
	require.NoError(t, err)
	ok, err := keys.Enroll(context.Background(), provider.Scope("app-attest-key", testAppID)+d.KeyID, rec)
	require.NoError(t, err)
	require.True(t, ok)
}

// attestRecording records App Attest requests of enrolled devices over
// challenges fixed in advance.
type attestRecording struct {
	t          *testing.T
	dev, down  *attesttest.Device
	stranger   *attesttest.Device // never enrolled
	challenges map[string]string
	n          int
}

func newAttestRecording(t *testing.T) *attestRecording {
	t.Helper()
	rec := &attestRecording{t: t, challenges: map[string]string{}}
	for _, d := range []**attesttest.Device{&rec.dev, &rec.down, &rec.stranger} {
		var err error
		*d, err = attesttest.NewDevice(testAppID)
		require.NoError(t, err)
	}
	return rec
}

// request records a POST to target with body, asserted by d over a fresh
// challenge bound to d (signed over signedTarget and signedBody when they
// differ: tampering in transit).
func (a *attestRecording) request(d *attesttest.Device, target, body, signedQuery, signedBody string) *http.Request {
	a.t.Helper()
	a.n++
	ch := base64.RawURLEncoding.EncodeToString([]byte{byte(a.n), 's', 'h', 'a', 'd', 'o', 'w'})
	a.challenges[ch] = d.KeyID
	r := httptest.NewRequest("POST", "https://api.example.com"+target, strings.NewReader(body))
	as, err := d.Assert(appattest.ClientData("POST", r.URL.EscapedPath(), signedQuery, []byte(signedBody), ch))
	require.NoError(a.t, err)
	r.Header.Set(appattest.HeaderKeyID, d.KeyID)
	r.Header.Set(appattest.HeaderChallenge, ch)
	r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(as))
	return r
}

// verifier builds a fresh App Attest verifier: fresh stores with dev and
// down enrolled (the key store down for down), the recorded challenges.
func (a *attestRecording) verifier(t *testing.T, w shadowtest.Wiring, shadow bool) *appattest.Verifier {
	t.Helper()
	keys := newMemKeys()
	enrolIn(t, keys, a.dev)
	enrolIn(t, keys, a.down)
	v, err := appattest.New(appattest.Config{AppIDs: []string{testAppID}, Roots: sharedCA(t).Roots(),
		Keys: downFor{KeyStore: keys, keyID: a.down.KeyID}, Challenges: newSeededChallenges(a.challenges),
		MaxBodyBytes: 64, Shadow: shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler})
	require.NoError(t, err)
	return v
}

// TestAppAttestShadowDecidesAsEnforce replays one recorded table of App
// Attest requests, valid ones and the attacks of the App Attest tests,
// through an enforce-mode and a shadow-mode appattest.Verifier.Handler
// (each with its own key and challenge stores, both clocks at the same
// instants) and compares every decision: shadow mode refuses nothing,
// logs each refusal as the same attestation_failed reason with
// shadow=true, and no other. Replays are refused in shadow mode too: the
// first use spent the challenge and advanced the counter there as well.
func TestAppAttestShadowDecidesAsEnforce(t *testing.T) {
	a := newAttestRecording(t)
	body := `{"sku":"gold"}`
	valid := a.request(a.dev, "/premium", body, "", body)
	bodyTampered := a.request(a.dev, "/premium", `{"sku":"free"}`, "", body)
	queryTampered := a.request(a.dev, "/premium?qty=100", body, "qty=1", body)
	wrongChallenge := a.request(a.dev, "/premium", body, "", body)
	wrongChallenge.Header.Set(appattest.HeaderChallenge, a.request(a.dev, "/premium", body, "", body).Header.Get(appattest.HeaderChallenge))
	unknownChallenge := a.request(a.dev, "/premium", body, "", body)
	delete(a.challenges, unknownChallenge.Header.Get(appattest.HeaderChallenge))
	missing := httptest.NewRequest("POST", "https://api.example.com/premium", strings.NewReader(body))
	rec := func(name string, r *http.Request, want error) shadowtest.Case {
		return shadowtest.Record(t, name, r, want)
	}
	cases := []shadowtest.Case{
		rec("valid_assertion", valid, nil),
		rec("assertion_replayed", valid, appattest.ErrCounter),
		rec("body_tampered", bodyTampered, appattest.ErrSignature),
		rec("query_tampered_by_proxy", queryTampered, appattest.ErrSignature),
		rec("wrong_challenge", wrongChallenge, appattest.ErrSignature),
		rec("challenge_never_issued", unknownChallenge, appattest.ErrChallenge),
		rec("headers_missing", missing, appattest.ErrMalformed),
		rec("key_never_attested", a.request(a.stranger, "/premium", body, "", body), appattest.ErrUnknownKey),
		rec("body_too_large", a.request(a.dev, "/premium", strings.Repeat("x", 65), "", strings.Repeat("x", 65)), appattest.ErrBodyTooLarge),
		rec("key_store_down", a.request(a.down, "/premium", body, "", body), appattest.ErrStore),
		rec("valid_assertion_again", a.request(a.dev, "/premium", body, "", body), nil),
	}
	shadowtest.RunFrom(t, synthNow, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
		return a.verifier(t, w, w.Shadow).Handler
	})
}

// TestShadowDecidesAsEnforce replays one recorded table of requests
// through an enforce-mode and a shadow-mode risk Verifier on a route that
// fails closed, with App Attest as its provider: a valid assertion
// (allowed), no attestation (step-up), a forged or replayed assertion
// (deny), a body over the limit, and a key store outage. Shadow mode
// refuses nothing, logs each refusal as the same event and reason with
// shadow=true, and no other; the provider's own attestation_failed
// events, which are no refusal, are logged alike in both modes.
func TestShadowDecidesAsEnforce(t *testing.T) {
	a := newAttestRecording(t)
	body := `{"sku":"gold"}`
	valid := a.request(a.dev, "/premium", body, "", body)
	forged := a.request(a.dev, "/premium", `{"sku":"free"}`, "", body)
	bare := httptest.NewRequest("POST", "https://api.example.com/premium", strings.NewReader(body))
	rec := func(name string, r *http.Request, want error) shadowtest.Case {
		return shadowtest.Record(t, name, r, want)
	}
	cases := []shadowtest.Case{
		rec("valid_assertion", valid, nil),
		rec("assertion_replayed", valid, ErrRiskDenied),
		rec("no_attestation", bare, ErrRiskStepUp),
		rec("body_tampered", forged, ErrRiskDenied),
		rec("body_too_large", a.request(a.dev, "/premium", strings.Repeat("x", 65), "", strings.Repeat("x", 65)), ErrBodyTooLarge),
		rec("key_store_down", a.request(a.down, "/premium", body, "", body), ErrStore),
		rec("valid_assertion_again", a.request(a.dev, "/premium", body, "", body), nil),
	}
	shadowtest.RunFrom(t, synthNow, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
		v, err := New(Config{AppAttest: a.verifier(t, w, false),
			Subject:      func(*http.Request) (string, error) { return "", nil },
			MaxBodyBytes: 64, Shadow: w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler})
		require.NoError(t, err)
		return v.RequireRoute(Route{Thresholds: Thresholds{Monitor: 20, StepUp: 40, Deny: 70}, Outage: OutageFailClosed})
	})
}

// TestShadowNextHandlerSees pins what the next handler gets in shadow
// mode: the Risk of a step-up or deny, no Risk after an outage or a body
// over the limit, and the whole body in every case.
func TestShadowNextHandlerSees(t *testing.T) {
	e := newRiskEnv(t, func(c *Config) { c.Shadow = true; c.MaxBodyBytes = 16 })
	h := e.v.RequireRoute(Route{Thresholds: Thresholds{Monitor: 20, StepUp: 40, Deny: 70}, Outage: OutageFailClosed})
	tests := []struct {
		name     string
		body     string
		wantRisk bool
		reason   string
	}{
		{name: "no_attestation_step_up", body: "{}", wantRisk: true, reason: `"event":"risk_step_up"`},
		{name: "body_over_limit", body: strings.Repeat("x", 40), wantRisk: false, reason: `"reason":"body_too_large"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.logs.Reset()
			rec, risk, got := e.serve(h, e.request(nil, "alice", [2]string{}, tt.body))
			require.Equal(t, http.StatusOK, rec.Code, "shadow mode never refuses")
			require.Equal(t, tt.wantRisk, risk != nil)
			require.Equal(t, tt.body, got, "the whole body")
			require.Contains(t, e.logs.String(), tt.reason)
			require.Contains(t, e.logs.String(), `"shadow":true`)
		})
	}
}
