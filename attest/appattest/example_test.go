package appattest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// setup enrols one device of the app and returns the verifier and device.
func setup() (*appattest.Verifier, *attesttest.Device) {
	ca, _ := attesttest.NewCA(now.Add(-time.Hour), now.Add(24*time.Hour)) // a test root: no real device here
	a, err := appattest.New(appattest.Config{
		AppIDs: []string{"ABCDE12345.com.example.shop"},
		Roots:  ca.Roots(),
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	dev, _ := attesttest.NewDevice("ABCDE12345.com.example.shop")
	challenge, _, _ := a.IssueChallenge(context.Background(), "")
	cdh := appattest.ClientDataHash([]byte(challenge))
	obj, _ := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	if _, err := a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh); err != nil {
		panic(err)
	}
	return a, dev
}

func ExampleVerifier_VerifyAssertion() {
	a, dev := setup()
	clientData := []byte(`{"action":"redeem","challenge":"c-1"}`)
	assertion, _ := dev.Assert(clientData)

	as, err := a.VerifyAssertion(context.Background(), dev.KeyID, assertion, clientData)
	fmt.Println(as.Counter, err)
	_, err = a.VerifyAssertion(context.Background(), dev.KeyID, assertion, clientData) // replayed
	fmt.Println(err)
	// Output:
	// 1 <nil>
	// attest: counter not valid: 1 after 1
}

// The app signs ClientData of a transfer to alice; a proxy rewrites the
// query to pay mallory. The Handler refuses the rewritten request.
func ExampleVerifier_Handler() {
	a, dev := setup()
	transfer := a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		as, _ := appattest.AssertionFrom(r.Context())
		fmt.Fprintf(w, "sent by key #%d", as.Counter)
	}))
	send := func(query string) *httptest.ResponseRecorder {
		challenge, _, _ := a.IssueChallenge(context.Background(), dev.KeyID)
		assertion, _ := dev.Assert(appattest.ClientData("POST", "/v1/transfer", "to=alice&amount=10", []byte("{}"), challenge))
		r := httptest.NewRequest("POST", "/v1/transfer?"+query, strings.NewReader("{}"))
		r.Header.Set(appattest.HeaderKeyID, dev.KeyID)
		r.Header.Set(appattest.HeaderChallenge, challenge)
		r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(assertion))
		rec := httptest.NewRecorder()
		transfer.ServeHTTP(rec, r)
		return rec
	}
	rec := send("to=alice&amount=10")
	fmt.Println(rec.Code, rec.Body.String())
	rec = send("to=mallory&amount=1000") // rewritten in flight
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output:
	// 200 sent by key #1
	// 401 application/problem+json
}

func ExampleClientDataHash() {
	fmt.Printf("%x\n", appattest.ClientDataHash([]byte("wurzelpfropf")))
	// Output: 8be65cca515ad097c953967d18d635d86dd78a142ed3d077526bed11c6bec67b
}

// The app makes a P-256 key in the Secure Enclave, asks a challenge for
// its App Attest key, and asserts over EnrolClientData of the new key's
// SubjectPublicKeyInfo; the endpoint hands the key to the application's
// store (redisstore.DeviceKeyStore.Put, its ErrKeyExists mapped to
// appattest.ErrKeyTaken), which signing then reads as a signing.Key with
// Algorithm signing.AlgECDSAP256SHA256. A device key swapped in transit
// is refused.
func ExampleVerifier_EnrolHandler() {
	a, dev := setup()
	enrolled := map[string]crypto.PublicKey{}
	h, err := a.EnrolHandler(appattest.Enrolment{
		Enrol: func(_ context.Context, keyID string, pub crypto.PublicKey, _ []string) error {
			if _, ok := enrolled[keyID]; ok {
				return appattest.ErrKeyTaken
			}
			enrolled[keyID] = pub
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	enrol := func(signedKey, sentKey []byte) {
		challenge, _, _ := a.IssueChallenge(context.Background(), dev.KeyID)
		assertion, _ := dev.Assert(appattest.EnrolClientData(signedKey, challenge))
		body, _ := json.Marshal(map[string]string{
			"key_id": dev.KeyID, "device_key": base64.StdEncoding.EncodeToString(sentKey),
			"challenge": challenge, "assertion": base64.StdEncoding.EncodeToString(assertion),
		})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/device-keys/ios", bytes.NewReader(body)))
		fmt.Println(w.Code)
	}
	seKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // in the Secure Enclave on a device
	spki, _ := x509.MarshalPKIXPublicKey(&seKey.PublicKey)
	attackerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	attackerSPKI, _ := x509.MarshalPKIXPublicKey(&attackerKey.PublicKey)

	enrol(spki, attackerSPKI) // swapped after the assertion
	enrol(spki, spki)
	fmt.Println(enrolled[dev.KeyID].(*ecdsa.PublicKey).Equal(&seKey.PublicKey))
	// Output:
	// 401
	// 201
	// true
}
