package appattest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
	"math/big"
)

const testAppID = "ABCDE12345.com.example.shop"

var synthNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func newSynthetic(t *testing.T) (*Verifier, *attesttest.CA, *logSink) {
	t.Helper()
	ca := sharedCA(t)
	a, logs := newAppAttestAt(t, synthNow, func(c *Config) {
		c.AppIDs = []string{testAppID}
		c.Environments = []Environment{Production}
		c.Roots = ca.Roots()
	})
	return a, ca, logs
}

func TestSyntheticAttestation(t *testing.T) {
	tests := []struct {
		name string
		opt  attesttest.AttestOptions
		want error
	}{
		{name: "plain"},
		{name: "apple_eku_of_2026_leaves", opt: attesttest.AttestOptions{AppleEKU: true}},
		{name: "ios27_trailing_extensions", opt: attesttest.AttestOptions{TrailingExtensions: true}},
		{name: "counter_not_zero", opt: attesttest.AttestOptions{Counter: 1}, want: ErrCounter},
		{name: "development_not_allowed", opt: attesttest.AttestOptions{Environment: "development"}, want: ErrEnvironment},
		{name: "other_app", opt: attesttest.AttestOptions{AppID: "ABCDE12345.com.example.clone"}, want: ErrAppID},
		{name: "expired_leaf", opt: attesttest.AttestOptions{LeafNotAfter: synthNow.Add(-time.Minute)}, want: ErrCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ca, _ := newSynthetic(t)
			dev, err := attesttest.NewDevice(testAppID)
			require.NoError(t, err)
			cdh := ClientDataHash([]byte("challenge-1"))
			obj, err := ca.Attest(dev, cdh, tt.opt)
			require.NoError(t, err)
			k, err := a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "18.1", k.OSVersion)
			as, err := dev.Assert([]byte("client data"))
			require.NoError(t, err)
			got, err := a.VerifyAssertion(context.Background(), dev.KeyID, as, []byte("client data"))
			require.NoError(t, err)
			require.Equal(t, uint32(1), got.Counter)
		})
	}
}

func TestAppleEKURefusedByDefaultVerify(t *testing.T) {
	// Why the verifier sets an explicit usage policy: with Go's default
	// (server auth), a leaf with Apple's usage does not verify.
	ca, err := attesttest.NewCA(synthNow.Add(-time.Hour), synthNow.Add(time.Hour))
	require.NoError(t, err)
	dev, _ := attesttest.NewDevice(testAppID)
	obj, err := ca.Attest(dev, []byte("x"), attesttest.AttestOptions{AppleEKU: true})
	require.NoError(t, err)
	var o attestationObject
	require.NoError(t, cbor.Unmarshal(obj, &o))
	leaf, err := x509.ParseCertificate(o.AttStmt.X5c[0])
	require.NoError(t, err)
	inter, _ := x509.ParseCertificate(o.AttStmt.X5c[1])
	pool := x509.NewCertPool()
	pool.AddCert(inter)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Roots(), Intermediates: pool, CurrentTime: synthNow})
	require.Error(t, err)
}

// client is an app using the HTTP profile against srv.
type client struct {
	t   *testing.T
	srv *httptest.Server
	dev *attesttest.Device
}

func (c *client) challenge(bind bool) string {
	req, _ := http.NewRequest("POST", c.srv.URL+"/attest/challenge", nil)
	if bind {
		req.Header.Set(HeaderKeyID, c.dev.KeyID)
	}
	resp, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	require.Equal(c.t, 200, resp.StatusCode)
	var out struct{ Challenge string }
	require.NoError(c.t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Challenge
}

func (c *client) call(method, path, body, challenge string, sign func([]byte) []byte) (int, string) {
	req, _ := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	req.Header.Set(HeaderKeyID, c.dev.KeyID)
	req.Header.Set(HeaderChallenge, challenge)
	req.Header.Set(HeaderAssertion, base64.StdEncoding.EncodeToString(sign(ClientData(method, path, "", []byte(body), challenge))))
	resp, err := c.srv.Client().Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAssertionMiddleware(t *testing.T) {
	a, ca, logs := newSynthetic(t)
	mux := http.NewServeMux()
	mux.Handle("POST /attest/challenge", a.ChallengeHandler())
	mux.Handle("POST /premium", a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		as, _ := AssertionFrom(r.Context())
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, as.AppID+"|"+string(b))
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dev, _ := attesttest.NewDevice(testAppID)
	c := &client{t: t, srv: srv, dev: dev}

	// Enrol: the app attests its key with an unbound challenge.
	ch := c.challenge(false)
	obj, err := ca.Attest(dev, ClientDataHash([]byte(ch)), attesttest.AttestOptions{})
	require.NoError(t, err)
	require.NoError(t, a.ConsumeChallenge(context.Background(), ch, ""))
	_, err = a.VerifyAttestation(context.Background(), dev.KeyID, obj, ClientDataHash([]byte(ch)))
	require.NoError(t, err)

	sign := func(cd []byte) []byte {
		as, err := dev.Assert(cd)
		require.NoError(t, err)
		return as
	}
	ch = c.challenge(true)
	code, body := c.call("POST", "/premium", `{"item":7}`, ch, sign)
	require.Equal(t, 200, code, body)
	require.Equal(t, testAppID+`|{"item":7}`, body, "assertion in context, body intact")

	code, _ = c.call("POST", "/premium", `{"item":7}`, ch, sign)
	require.Equal(t, 401, code, "a used challenge")

	// A captured request (same assertion, same challenge) replayed.
	ch = c.challenge(true)
	var captured []byte
	code, _ = c.call("POST", "/premium", "x", ch, func(cd []byte) []byte { captured = sign(cd); return captured })
	require.Equal(t, 200, code)
	code, _ = c.call("POST", "/premium", "x", ch, func([]byte) []byte { return captured })
	require.Equal(t, 401, code, "replayed assertion")

	// The assertion covers method, path, body and challenge.
	ch = c.challenge(true)
	code, _ = c.call("POST", "/premium", "tampered", ch, func([]byte) []byte { return sign(ClientData("POST", "/premium", "", []byte("original"), ch)) })
	require.Equal(t, 401, code, "body changed")

	other, _ := attesttest.NewDevice(testAppID)
	c2 := &client{t: t, srv: srv, dev: other}
	stolen := c2.challenge(true) // bound to the other key
	code, _ = c.call("POST", "/premium", "x", stolen, sign)
	require.Equal(t, 401, code, "challenge bound to another key")
	code, _ = c2.call("POST", "/premium", "x", c2.challenge(true), func(cd []byte) []byte {
		as, _ := other.Assert(cd)
		return as
	})
	require.Equal(t, 401, code, "a key never attested is never enrolled implicitly")

	req, _ := http.NewRequest("POST", srv.URL+"/premium", nil)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode, "no headers")
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	require.Contains(t, logs.String(), `"event":"attestation_failed"`)
}

func TestStoresBounded(t *testing.T) {
	ks := newMemoryKeyStore(10)
	for i := range 100 {
		ok, err := ks.Enroll(context.Background(), string(rune('a'+i)), []byte("r"))
		require.NoError(t, err)
		require.True(t, ok)
	}
	require.Equal(t, 10, ks.len())
	now := synthNow
	cs := newMemoryChallengeStore(10, func() time.Time { return now })
	for i := range 100 {
		require.NoError(t, cs.Put(context.Background(), string(rune('a'+i)), "", now.Add(time.Minute)))
	}
	require.Equal(t, 10, cs.len())
	require.NoError(t, cs.Put(context.Background(), "late", "", now.Add(time.Second)))
	now = now.Add(2 * time.Second)
	_, ok, _ := cs.Take(context.Background(), "late")
	require.False(t, ok, "expired")
}

var _ = bytes.Clone
var _ = slog.LevelInfo

// TestAttestationRSACertRefused: App Attest chains are ECDSA throughout,
// so a certificate with any other key in x5c is refused before the chain
// is built: a crafted chain cannot make the server check signatures of
// large RSA keys.
func TestAttestationRSACertRefused(t *testing.T) {
	a, ca, _ := newSynthetic(t)
	dev, err := attesttest.NewDevice(testAppID)
	require.NoError(t, err)
	cdh := ClientDataHash([]byte("challenge"))
	obj, err := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	require.NoError(t, err)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Apple App Attestation CA 1"},
		NotBefore: synthNow.Add(-time.Hour), NotAfter: synthNow.Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsaKey.PublicKey, rsaKey)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, cbor.Unmarshal(obj, &m))
	stmt := m["attStmt"].(map[any]any)
	x5c := stmt["x5c"].([]any)
	x5c[1] = der
	forged, err := cbor.Marshal(m)
	require.NoError(t, err)

	_, err = a.VerifyAttestation(context.Background(), dev.KeyID, forged, cdh)
	require.ErrorIs(t, err, ErrCertificate)
	require.ErrorContains(t, err, "x5c[1] key is not ECDSA")
	_, err = a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh)
	require.NoError(t, err, "the genuine chain still verifies")
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
