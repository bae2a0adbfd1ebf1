package androidkey_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
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
