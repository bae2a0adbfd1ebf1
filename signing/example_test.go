package signing_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/apiguard/apiguard/signing"
)

var (
	master = bytes.Repeat([]byte{0x5a}, 32)
	salt   = []byte("shop-api")
	now    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func newVerifier() *signing.Verifier {
	start := now.Add(-time.Minute) // the process started a minute ago
	clock := func() time.Time { return now }
	v, err := signing.New(signing.Config{
		Keys:        signing.DerivedKeys(master, salt),
		ReplayStore: signing.NewMemoryReplayStore(10_000, 5*time.Minute, func() time.Time { return start }),
		Now:         clock,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	return v
}

// signedRequest is what the app on device-42 sends: the secret was handed
// to it at enrolment, derived from the master secret.
func signedRequest(body string) *http.Request {
	secret, _ := signing.DeriveSecret(master, salt, "device-42.v1")
	s := signing.NewSigner("device-42.v1", secret)
	s.Now = func() time.Time { return now }
	r, _ := http.NewRequest("POST", "https://api.example.com/v1/pay", strings.NewReader(body))
	if err := s.Sign(r); err != nil {
		panic(err)
	}
	return r
}

// deliver turns the client's request into the server's.
func deliver(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	body, _ := io.ReadAll(r.Body)
	sr := httptest.NewRequest(r.Method, r.URL.String(), bytes.NewReader(body))
	sr.Header = r.Header.Clone()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, sr)
	return rec
}

func ExampleNew() {
	v := newVerifier()
	pay := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keyID, _ := signing.KeyIDFrom(r.Context())
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s paid %s", keyID, body)
	}))
	rec := deliver(pay, signedRequest(`{"amount":100}`))
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 200 device-42.v1 paid {"amount":100}
}

// A captured request is sent again: the nonce was used, so it is refused.
func ExampleVerifier_Handler_replay() {
	v := newVerifier()
	pay := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Println("paid") }))
	captured := signedRequest(`{"amount":100}`)
	body, _ := io.ReadAll(captured.Body)

	captured.Body = io.NopCloser(bytes.NewReader(body))
	fmt.Println(deliver(pay, captured).Code)
	captured.Body = io.NopCloser(bytes.NewReader(body))
	rec := deliver(pay, captured)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output:
	// paid
	// 200
	// 401 application/problem+json
}

// The body is changed in flight: Content-Digest no longer matches.
func ExampleVerifier_Verify_tamperedBody() {
	v := newVerifier()
	r := signedRequest(`{"amount":100}`)
	sr := httptest.NewRequest(r.Method, r.URL.String(), strings.NewReader(`{"amount":100000}`))
	sr.Header = r.Header.Clone()
	_, err := v.Verify(sr)
	fmt.Println(err)
	// Output: signing: content digest mismatch: sha-256
}

func ExampleSigner_Sign() {
	s := signing.NewSigner("device-42.v1", bytes.Repeat([]byte{1}, 32))
	s.Now = func() time.Time { return now }
	s.Rand = bytes.NewReader(make([]byte, 16)) // a fixed nonce, for the example only
	r, _ := http.NewRequest("POST", "https://api.example.com/v1/pay", strings.NewReader(`{"amount":100}`))
	_ = s.Sign(r)
	fmt.Println(r.Header.Get("Content-Digest"))
	fmt.Println(r.Header.Get("Signature-Input"))
	// Output:
	// sha-256=:TUu+Wcaq0iRCzeGZpqil8DRAX814+1qBwk7ySd4cRfE=:
	// sig1=("@method" "@target-uri" "content-digest");created=1772366400;keyid="device-42.v1";nonce="AAAAAAAAAAAAAAAAAAAAAA";alg="hmac-sha256"
}

func ExampleDerivedKeys() {
	// The enrolment service hands each device its secret; the API keeps
	// only the master secret.
	v1, _ := signing.DeriveSecret(master, salt, "device-42.v1")
	v2, _ := signing.DeriveSecret(master, salt, "device-42.v2") // rotated
	fmt.Println(len(v1), bytes.Equal(v1, v2))
	// Output: 32 false
}

// A device signs with a P-256 key it made in the Secure Enclave or
// Android Keystore (here a Go key stands in); the server holds only the
// public key that enrolment registered.
func ExampleNewKeySigner() {
	deviceKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	enrolled := map[string]signing.Key{"device-7": {
		ID: "device-7", Algorithm: signing.AlgECDSAP256SHA256, PublicKey: &deviceKey.PublicKey,
	}}
	v, _ := signing.New(signing.Config{
		Keys: signing.KeyStoreFunc(func(_ context.Context, id string) (signing.Key, error) {
			k, ok := enrolled[id]
			if !ok {
				return signing.Key{}, signing.ErrUnknownKey
			}
			return k, nil
		}),
		ReplayStore: signing.NewMemoryReplayStore(10_000, 5*time.Minute, func() time.Time { return now.Add(-time.Minute) }),
		Now:         func() time.Time { return now },
		Logger:      slog.New(slog.DiscardHandler),
	})

	s, _ := signing.NewKeySigner("device-7", deviceKey) // or any crypto.Signer over the key
	s.Now = func() time.Time { return now }
	r, _ := http.NewRequest("POST", "https://api.example.com/v1/pay", strings.NewReader(`{"amount":100}`))
	_ = s.Sign(r)

	body, _ := io.ReadAll(r.Body)
	sr := httptest.NewRequest(r.Method, r.URL.String(), bytes.NewReader(body))
	sr.Header = r.Header.Clone()
	res, err := v.Verify(sr)
	fmt.Println(res.KeyID, res.Algorithm, err)
	// Output: device-7 ecdsa-p256-sha256 <nil>
}
