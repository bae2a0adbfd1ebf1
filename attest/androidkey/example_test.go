package androidkey_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/apiguard/apiguard/attest/androidkey"
	"github.com/apiguard/apiguard/attest/attesttest"
)

var (
	now    = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	signer = sha256.Sum256([]byte("the app's signing certificate (DER)"))
)

// setup returns a verifier trusting a test root (no real device here),
// with an application-supplied, empty revocation list, and that root.
func setup() (*androidkey.Verifier, *attesttest.AndroidCA) {
	ca, _ := attesttest.NewAndroidCA(now.Add(-time.Hour), now.Add(24*time.Hour))
	ak, err := androidkey.New(androidkey.Config{
		Packages:         []string{"com.example.shop"},
		SignatureDigests: [][]byte{signer[:]},
		Roots:            ca.Roots(), // default: Google's roots
		StatusList:       []byte(`{"entries":{}}`),
		Now:              func() time.Time { return now },
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	return ak, ca
}

func ExampleVerifier_Verify() {
	ak, ca := setup()
	defer ak.Close()
	challenge := []byte("issued-by-the-server-1") // random, from the server, short-lived
	chain, _, _ := ca.Attest(attesttest.AndroidKey{Challenge: challenge,
		Packages: []string{"com.example.shop"}, SignatureDigests: [][]byte{signer[:]}})

	key, err := ak.Verify(context.Background(), chain, challenge)
	fmt.Println(key.SecurityLevel, key.RootOfTrust.BootState, key.OSPatchLevel, key.Signals, err)
	_, err = ak.Verify(context.Background(), chain, challenge) // replayed
	fmt.Println(err)
	// Output:
	// TrustedEnvironment Verified 202610 [] <nil>
	// attest: android key challenge used before
}

// An emulator's software key and a device with an unlocked bootloader
// are refused, each for its reason.
func ExampleVerifier_Verify_attacks() {
	ak, ca := setup()
	defer ak.Close()
	for _, k := range []attesttest.AndroidKey{
		{Challenge: []byte("c-1"), Software: true},
		{Challenge: []byte("c-2"), Unlocked: true, BootState: 2},
	} {
		k.Packages, k.SignatureDigests = []string{"com.example.shop"}, [][]byte{signer[:]}
		chain, _, _ := ca.Attest(k)
		_, err := ak.Verify(context.Background(), chain, k.Challenge)
		fmt.Println(errors.Is(err, androidkey.ErrSecurityLevel), errors.Is(err, androidkey.ErrBootState), err)
	}
	// Output:
	// true false attest: android key not in secure hardware: attestation security level Software
	// false true attest: android device boot state refused: verified boot Unverified
}

// An old patch level is not refused: it is a signal for the risk
// decision, which can step up instead of denying.
func ExampleKey_signals() {
	ak, ca := setup()
	defer ak.Close()
	chain, _, _ := ca.Attest(attesttest.AndroidKey{Challenge: []byte("c-3"), OSPatchLevel: 202312,
		Packages: []string{"com.example.shop"}, SignatureDigests: [][]byte{signer[:]}})
	key, err := ak.Verify(context.Background(), chain, []byte("c-3"))
	fmt.Println(key.Signals, err)
	// Output: [os_outdated] <nil>
}

// The revocation status list lists serials in lower-case hex; a revoked
// or suspended certificate anywhere in the chain refuses it.
func ExampleVerifier_SetStatusList() {
	ak, ca := setup()
	defer ak.Close()
	var serials []string
	chain, _, _ := ca.Attest(attesttest.AndroidKey{Challenge: []byte("c-4"), Serials: &serials,
		Packages: []string{"com.example.shop"}, SignatureDigests: [][]byte{signer[:]}})
	_ = ak.SetStatusList([]byte(`{"entries":{"` + serials[1] + `":{"status":"REVOKED","reason":"KEY_COMPROMISE"}}}`))
	_, err := ak.Verify(context.Background(), chain, []byte("c-4"))
	fmt.Println(errors.Is(err, androidkey.ErrRevoked))
	// Output: true
}

func ExampleGoogleRoots() {
	roots := androidkey.GoogleRoots() // the default Config.Roots
	// Add a root Google publishes later without waiting for a release:
	// roots.AppendCertsFromPEM(newRootPEM)
	fmt.Println(roots.Equal(androidkey.GoogleRoots()))
	// Output: true
}

// The enrolment endpoint turns an attested Keystore key into a device
// signing key. The application keeps the challenge it issued (here a
// fixed one; in a session, short-lived) and adapts its key store:
//
//	Enrol: func(ctx context.Context, id string, pub crypto.PublicKey, _ []string) error {
//		err := deviceKeys.Put(ctx, id, redisstore.AlgECDSAP256SHA256, pub)
//		if errors.Is(err, redisstore.ErrKeyExists) {
//			return fmt.Errorf("%w: %w", androidkey.ErrKeyTaken, err)
//		}
//		return err
//	}
//
// and signing.Config.Keys reads the same store back as a signing.Key
// with Algorithm signing.AlgECDSAP256SHA256.
func ExampleVerifier_EnrolHandler() {
	ak, ca := setup()
	defer ak.Close()
	challenge := []byte("issued-by-the-server-2")
	enrolled := map[string]crypto.PublicKey{}
	h, err := ak.EnrolHandler(androidkey.Enrolment{
		Challenge: func(*http.Request) ([]byte, error) { return challenge, nil },
		Enrol: func(_ context.Context, keyID string, pub crypto.PublicKey, _ []string) error {
			if _, ok := enrolled[keyID]; ok {
				return androidkey.ErrKeyTaken
			}
			enrolled[keyID] = pub
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	chain, _, _ := ca.Attest(attesttest.AndroidKey{Challenge: challenge,
		Packages: []string{"com.example.shop"}, SignatureDigests: [][]byte{signer[:]}})
	var certs []string
	for _, c := range chain {
		certs = append(certs, base64.StdEncoding.EncodeToString(c))
	}
	body, _ := json.Marshal(map[string]any{"key_id": "k-7f3a9c", "chain": certs})
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/device-keys/android", bytes.NewReader(body)))
		fmt.Print(w.Code, " ", w.Body.String())
	}
	_, ok := enrolled["k-7f3a9c"].(*ecdsa.PublicKey)
	fmt.Println(ok)
	// Output:
	// 201 {"algorithm":"ecdsa-p256-sha256","key_id":"k-7f3a9c"}
	// 401 {"detail":"The request's app attestation is missing or invalid; attest again.","status":401,"title":"Invalid app attestation","type":"urn:apiguard:problem:invalid-attestation"}
	// true
}
