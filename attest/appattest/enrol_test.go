package appattest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

// seEnv is an enrolment endpoint over a verifier with one attested App
// Attest key, and a store recording what it was given.
type seEnv struct {
	a        *Verifier
	dev      *attesttest.Device
	logs     *logSink
	h        http.Handler
	mu       sync.Mutex
	stored   map[string]crypto.PublicKey
	storeErr error
}

func newSEEnv(t *testing.T) *seEnv {
	t.Helper()
	a, ca, logs := newSynthetic(t)
	dev, err := attesttest.NewDevice(testAppID)
	require.NoError(t, err)
	cdh := ClientDataHash([]byte("attest"))
	obj, err := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	require.NoError(t, err)
	_, err = a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh)
	require.NoError(t, err)
	e := &seEnv{a: a, dev: dev, logs: logs, stored: map[string]crypto.PublicKey{}}
	e.h, err = a.EnrolHandler(Enrolment{Enrol: func(_ context.Context, keyID string, pub crypto.PublicKey, _ []string) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.storeErr != nil {
			return e.storeErr
		}
		if _, ok := e.stored[keyID]; ok {
			return ErrKeyTaken
		}
		e.stored[keyID] = pub
		return nil
	}})
	require.NoError(t, err)
	return e
}

// enrolment is the JSON body of an enrolment request.
type enrolment struct {
	KeyID     string `json:"key_id"`
	DeviceKey string `json:"device_key"`
	Challenge string `json:"challenge"`
	Assertion string `json:"assertion"`
}

// sign issues a challenge for the device and asserts over spki.
func (e *seEnv) sign(t *testing.T, spki []byte) enrolment {
	t.Helper()
	ch, _, err := e.a.IssueChallenge(context.Background(), e.dev.KeyID)
	require.NoError(t, err)
	as, err := e.dev.Assert(EnrolClientData(spki, ch))
	require.NoError(t, err)
	return enrolment{KeyID: e.dev.KeyID, DeviceKey: base64.StdEncoding.EncodeToString(spki), Challenge: ch, Assertion: base64.StdEncoding.EncodeToString(as)}
}

func (e *seEnv) post(t *testing.T, body any) *httptest.ResponseRecorder {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/enrol/ios", bytes.NewReader(b)))
	return w
}

func (e *seEnv) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.stored)
}

func seKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)
	return k, spki
}

// TestEnrolClientDataBytes pins the bytes an app signs, and the SPKI
// prefix the documentation gives for a Secure Enclave key's point.
func TestEnrolClientDataBytes(t *testing.T) {
	require.Equal(t, "apiguard-enrol-v1\n"+
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"+
		"Zm9vYmFy", string(EnrolClientData(nil, "Zm9vYmFy")))
	k, spki := seKey(t)
	sum := sha256.Sum256(spki)
	require.Equal(t, "apiguard-enrol-v1\n"+hex.EncodeToString(sum[:])+"\nch-1", string(EnrolClientData(spki, "ch-1")))
	point, err := k.PublicKey.Bytes()
	require.NoError(t, err)
	prefix, _ := hex.DecodeString("3059301306072a8648ce3d020106082a8648ce3d030107034200")
	require.Equal(t, append(prefix, point...), spki)
	require.Len(t, spki, 91)
}

// TestEnrolSecureEnclaveKey: the device key the App Attest key vouches
// for is enrolled under the App Attest key ID.
func TestEnrolSecureEnclaveKey(t *testing.T) {
	e := newSEEnv(t)
	k, spki := seKey(t)
	w := e.post(t, e.sign(t, spki))
	require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	require.JSONEq(t, `{"key_id":"`+e.dev.KeyID+`","algorithm":"ecdsa-p256-sha256"}`, w.Body.String())
	pub, ok := e.stored[e.dev.KeyID].(*ecdsa.PublicKey)
	require.True(t, ok)
	require.True(t, pub.Equal(&k.PublicKey))
}

// TestEnrolSecureEnclaveAttacksRefused: each attack is answered with
// problem+json and nothing is enrolled.
func TestEnrolSecureEnclaveAttacksRefused(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaSPKI, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	p384SPKI, err := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	require.NoError(t, err)
	tests := []struct {
		name   string
		body   func(t *testing.T, e *seEnv) any
		status int
	}{
		{name: "device_key_swapped_after_assertion", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			b := e.sign(t, spki)
			_, attacker := seKey(t)
			b.DeviceKey = base64.StdEncoding.EncodeToString(attacker)
			return b
		}, status: 401},
		{name: "challenge_for_another_key", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			ch, _, err := e.a.IssueChallenge(context.Background(), "another-key-id")
			require.NoError(t, err)
			as, err := e.dev.Assert(EnrolClientData(spki, ch))
			require.NoError(t, err)
			return enrolment{e.dev.KeyID, base64.StdEncoding.EncodeToString(spki), ch, base64.StdEncoding.EncodeToString(as)}
		}, status: 401},
		{name: "challenge_not_issued", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			as, err := e.dev.Assert(EnrolClientData(spki, "made-up"))
			require.NoError(t, err)
			return enrolment{e.dev.KeyID, base64.StdEncoding.EncodeToString(spki), "made-up", base64.StdEncoding.EncodeToString(as)}
		}, status: 401},
		{name: "request_assertion_replayed_as_enrolment", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			ch, _, err := e.a.IssueChallenge(context.Background(), e.dev.KeyID)
			require.NoError(t, err)
			as, err := e.dev.Assert(ClientData("POST", "/enrol/ios", "", spki, ch))
			require.NoError(t, err)
			return enrolment{e.dev.KeyID, base64.StdEncoding.EncodeToString(spki), ch, base64.StdEncoding.EncodeToString(as)}
		}, status: 401},
		{name: "unknown_app_attest_key", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			b := e.sign(t, spki)
			b.KeyID = base64.StdEncoding.EncodeToString(make([]byte, 32))
			return b
		}, status: 401},
		{name: "rsa_device_key", body: func(t *testing.T, e *seEnv) any { return e.sign(t, rsaSPKI) }, status: 401},
		{name: "p384_device_key", body: func(t *testing.T, e *seEnv) any { return e.sign(t, p384SPKI) }, status: 401},
		{name: "bare_point_not_spki", body: func(t *testing.T, e *seEnv) any {
			k, _ := seKey(t)
			point, err := k.PublicKey.Bytes()
			require.NoError(t, err)
			return e.sign(t, point)
		}, status: 401},
		{name: "spki_with_trailing_bytes", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			return e.sign(t, append(spki, 0))
		}, status: 401},
		{name: "key_id_with_line_feed", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			b := e.sign(t, spki)
			b.KeyID += "\n"
			return b
		}, status: 400},
		{name: "assertion_not_base64", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			b := e.sign(t, spki)
			b.Assertion = "%%%"
			return b
		}, status: 400},
		{name: "missing_challenge", body: func(t *testing.T, e *seEnv) any {
			_, spki := seKey(t)
			b := e.sign(t, spki)
			b.Challenge = ""
			return b
		}, status: 400},
		{name: "unknown_field", body: func(t *testing.T, e *seEnv) any {
			return map[string]string{"key_id": e.dev.KeyID, "secret": "x"}
		}, status: 400},
		{name: "body_too_large", body: func(t *testing.T, e *seEnv) any {
			return map[string]string{"key_id": strings.Repeat("a", 70<<10)}
		}, status: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newSEEnv(t)
			body := tt.body(t, e)
			w := e.post(t, body)
			require.Equal(t, tt.status, w.Code, w.Body.String())
			require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
			require.Zero(t, e.count())
			if b, ok := body.(enrolment); ok {
				for _, secret := range []string{b.Challenge, b.DeviceKey, b.Assertion} {
					if len(secret) > 8 {
						require.NotContains(t, e.logs.String(), secret)
					}
				}
			}
		})
	}
}

// TestEnrolSecureEnclaveReplayedChallenge: a challenge enrols once; a
// fresh assertion (next counter) over the same challenge is refused.
func TestEnrolSecureEnclaveReplayedChallenge(t *testing.T) {
	e := newSEEnv(t)
	_, spki := seKey(t)
	b := e.sign(t, spki)
	require.Equal(t, http.StatusCreated, e.post(t, b).Code)
	_, spki2 := seKey(t)
	as, err := e.dev.Assert(EnrolClientData(spki2, b.Challenge))
	require.NoError(t, err)
	w := e.post(t, enrolment{e.dev.KeyID, base64.StdEncoding.EncodeToString(spki2), b.Challenge, base64.StdEncoding.EncodeToString(as)})
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.Equal(t, 1, e.count())
}

// TestEnrolSwappedKeyKeepsChallenge: a forged enrolment does not burn
// the genuine client's challenge (the signature is checked first).
func TestEnrolSwappedKeyKeepsChallenge(t *testing.T) {
	e := newSEEnv(t)
	_, spki := seKey(t)
	b := e.sign(t, spki)
	forged := b
	_, attacker := seKey(t)
	forged.DeviceKey = base64.StdEncoding.EncodeToString(attacker)
	require.Equal(t, http.StatusUnauthorized, e.post(t, forged).Code)
	require.Equal(t, http.StatusCreated, e.post(t, b).Code)
}

// TestEnrolSecureEnclaveKeyIDTaken: an App Attest key enrols one device
// key; a second is 409.
func TestEnrolSecureEnclaveKeyIDTaken(t *testing.T) {
	e := newSEEnv(t)
	_, spki := seKey(t)
	require.Equal(t, http.StatusCreated, e.post(t, e.sign(t, spki)).Code)
	_, spki2 := seKey(t)
	require.Equal(t, http.StatusConflict, e.post(t, e.sign(t, spki2)).Code)
	require.Equal(t, 1, e.count())
}

// TestEnrolSecureEnclaveStoreOutage: the application's store failing
// is a 503 with Retry-After, its error not shown.
func TestEnrolSecureEnclaveStoreOutage(t *testing.T) {
	e := newSEEnv(t)
	e.storeErr = errors.New("redis: connection refused")
	_, spki := seKey(t)
	w := e.post(t, e.sign(t, spki))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.NotContains(t, w.Body.String(), "redis")
}

// TestEnrolmentEnrolRequired: Enrol is required.
func TestEnrolmentEnrolRequired(t *testing.T) {
	a, _, _ := newSynthetic(t)
	_, err := a.EnrolHandler(Enrolment{})
	require.Error(t, err)
}
