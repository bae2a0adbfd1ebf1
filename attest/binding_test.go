package attest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/playintegrity"
	"github.com/stretchr/testify/require"
)

// TestClientDataFormat: a Play Integrity request hash is SHA-256 of the
// App Attest client data of the request without a challenge, as
// documented.
func TestClientDataFormat(t *testing.T) {
	h := sha256.Sum256(appattest.ClientData("POST", "/v1/transfer", "to=alice", []byte("x"), ""))
	require.Equal(t, hex.EncodeToString(h[:]), playintegrity.RequestHash("POST", "/v1/transfer", "to=alice", []byte("x")))
}

// bindingEnv is an App Attest verifier with one enrolled device, behind
// both its own Handler and the risk middleware.
type bindingEnv struct {
	a   *appattest.Verifier
	dev *attesttest.Device
}

func newBindingEnv(t *testing.T, legacy bool) *bindingEnv {
	t.Helper()
	ae := newSynthetic(t, func(c *appattest.Config) { c.InsecureAllowLegacyClientData = legacy })
	return &bindingEnv{a: ae.a, dev: enrolDirect(t, ae.keys)}
}

// request signs clientData(challenge) with the device and sends target:
// what reaches the server after any proxy.
func (e *bindingEnv) request(t *testing.T, target, body string, clientData func(ch string) []byte) *http.Request {
	t.Helper()
	ch, _, err := e.a.IssueChallenge(context.Background(), e.dev.KeyID)
	require.NoError(t, err)
	as, err := e.dev.Assert(clientData(ch))
	require.NoError(t, err)
	r := httptest.NewRequest("POST", target, strings.NewReader(body))
	r.Header.Set(appattest.HeaderKeyID, e.dev.KeyID)
	r.Header.Set(appattest.HeaderChallenge, ch)
	r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(as))
	return r
}

// TestQueryBinding: the app asks to pay alice 10; an intercepting proxy
// rewrites the query to pay mallory 1000. The assertion covers the query
// as sent, so the rewritten request is refused, by the App Attest
// middleware and by the risk assessment alike. Clients of the first
// profile (no query in the client data) are refused unless the Insecure
// compatibility setting is on, and then only they lose the query binding.
func TestQueryBinding(t *testing.T) {
	body := `{"memo":"rent"}`
	current := func(ch string) []byte {
		return appattest.ClientData("POST", "/transfer", "to=alice&amount=10", []byte(body), ch)
	}
	legacyClient := func(ch string) []byte {
		sum := sha256.Sum256([]byte(body))
		return []byte("POST\n/transfer\n" + hex.EncodeToString(sum[:]) + "\n" + ch)
	}
	tests := []struct {
		name       string
		legacy     bool // InsecureAllowLegacyClientData
		target     string
		clientData func(string) []byte
		want       int
		wantLegacy bool
	}{
		{name: "query_as_sent", target: "/transfer?to=alice&amount=10", clientData: current, want: 200},
		{name: "query_rewritten_in_flight", target: "/transfer?to=mallory&amount=1000", clientData: current, want: 401},
		{name: "query_added_in_flight", target: "/transfer?to=alice&amount=10&fee=0", clientData: current, want: 401},
		{name: "query_reordered_in_flight", target: "/transfer?amount=10&to=alice", clientData: current, want: 401},
		{name: "query_dropped_in_flight", target: "/transfer", clientData: current, want: 401},
		{name: "legacy_client_refused_by_default", target: "/transfer?to=alice&amount=10", clientData: legacyClient, want: 401},
		{name: "legacy_client_admitted_when_insecure_allowed", legacy: true, target: "/transfer?to=alice&amount=10", clientData: legacyClient, want: 200, wantLegacy: true},
		{name: "legacy_client_query_rewritten_admitted_when_insecure_allowed", legacy: true, target: "/transfer?to=mallory&amount=1000", clientData: legacyClient, want: 200, wantLegacy: true},
		{name: "current_client_query_rewritten_refused_even_when_insecure_allowed", legacy: true, target: "/transfer?to=mallory&amount=1000", clientData: current, want: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/handler", func(t *testing.T) {
			e := newBindingEnv(t, tt.legacy)
			var got *appattest.Assertion
			rec := httptest.NewRecorder()
			e.a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, _ = appattest.AssertionFrom(r.Context())
			})).ServeHTTP(rec, e.request(t, tt.target, body, tt.clientData))
			require.Equal(t, tt.want, rec.Code)
			if tt.want == 200 {
				require.Equal(t, tt.wantLegacy, got.LegacyClientData)
			}
		})
		t.Run(tt.name+"/risk", func(t *testing.T) {
			e := newBindingEnv(t, tt.legacy)
			v, err := New(Config{AppAttest: e.a, Subject: func(*http.Request) (string, error) { return "", nil },
				Now: func() time.Time { return synthNow }, Logger: nopLogger()})
			require.NoError(t, err)
			risk, err := assessRequest(v, e.request(t, tt.target, body, tt.clientData), Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
			require.NoError(t, err)
			if tt.want == 200 {
				require.Equal(t, "app_attest", risk.Provider)
				require.Empty(t, risk.Reasons)
			} else {
				require.Equal(t, []string{ReasonAttestationFailed}, risk.Reasons)
			}
		})
	}
}

// TestPlayRequestHashBinding: the same attack against a standard Play
// Integrity token, whose requestHash covers the query.
func TestPlayRequestHashBinding(t *testing.T) {
	body := []byte(`{"memo":"rent"}`)
	sum := sha256.Sum256(body)
	legacyHash := sha256.Sum256([]byte("POST\n/transfer\n" + hex.EncodeToString(sum[:]) + "\n"))
	tests := []struct {
		name   string
		legacy bool // InsecureAllowLegacyRequestHash
		target string
		hash   string // what the app passed to the Play Integrity API
		want   []string
	}{
		{name: "query_as_sent", target: "/transfer?to=alice&amount=10", hash: playintegrity.RequestHash("POST", "/transfer", "to=alice&amount=10", body)},
		{name: "query_rewritten_in_flight", target: "/transfer?to=mallory&amount=1000", hash: playintegrity.RequestHash("POST", "/transfer", "to=alice&amount=10", body), want: []string{ReasonAttestationFailed}},
		{name: "legacy_hash_refused_by_default", target: "/transfer?to=alice&amount=10", hash: hex.EncodeToString(legacyHash[:]), want: []string{ReasonAttestationFailed}},
		{name: "legacy_hash_admitted_when_insecure_allowed", legacy: true, target: "/transfer?to=mallory&amount=1000", hash: hex.EncodeToString(legacyHash[:])},
		{name: "current_hash_query_rewritten_refused_even_when_insecure_allowed", legacy: true, target: "/transfer?to=mallory&amount=1000", hash: playintegrity.RequestHash("POST", "/transfer", "to=alice&amount=10", body), want: []string{ReasonAttestationFailed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict := attesttest.Verdict(pkg, "", tt.hash, synthNow.Add(-5*time.Second).UnixMilli(), certDigest)
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": verdict})
			}))
			defer api.Close()
			play, logs := newPlay(t, nil, func(c *playintegrity.Config) {
				c.APIBaseURL, c.HTTPClient, c.InsecureAllowLegacyRequestHash = api.URL, api.Client(), tt.legacy
			})
			v, err := New(Config{PlayIntegrity: play, Subject: func(*http.Request) (string, error) { return "", nil },
				Now: func() time.Time { return synthNow }, Logger: nopLogger()})
			require.NoError(t, err)
			r := httptest.NewRequest("POST", tt.target, strings.NewReader(string(body)))
			r.Header.Set(playintegrity.Header, "standard-token")
			risk, err := assessRequest(v, r, Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
			require.NoError(t, err)
			require.Equal(t, tt.want, risk.Reasons)
			if tt.legacy && tt.want == nil {
				require.Contains(t, logs.String(), `"event":"attestation_legacy_binding"`)
			}
		})
	}
}
