package appattest

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
)

var appAttestSentinels = []error{ErrMalformed, ErrFormat, ErrCertificate, ErrNonce, ErrKeyID, ErrAppID,
	ErrEnvironment, ErrCounter, ErrSignature, ErrUnknownKey, ErrKeyExists, ErrStore}

func oneOf(err error, errs []error) bool {
	for _, e := range errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzAttestation feeds arbitrary attestation objects (seeded with real
// and synthetic ones): every refusal is a sentinel, nothing panics.
func FuzzAttestation(f *testing.F) {
	v := loadFuzzVector(f)
	f.Add(v.att, v.cdh)
	f.Add([]byte{0xa0}, []byte{})
	f.Add([]byte{0xa3, 0x63, 'f', 'm', 't'}, []byte("x"))
	a, err := New(Config{AppIDs: []string{v.appID}, Environments: []Environment{Development, Production},
		Now: func() time.Time { return v.at }, Keys: newMemoryKeyStore(10), Logger: nopLogger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, obj, cdh []byte) {
		_, err := a.verifyAttestation(v.keyID, obj, cdh)
		if err != nil && !oneOf(err, appAttestSentinels) {
			t.Fatalf("error outside the sentinels: %v", err)
		}
	})
}

// FuzzAssertion feeds arbitrary assertions and client data for an
// enrolled key: nothing but the device's own signature passes.
func FuzzAssertion(f *testing.F) {
	ca, err := attesttest.NewCA(synthNow.Add(-time.Hour), synthNow.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	dev, _ := attesttest.NewDevice(testAppID)
	a, err := New(Config{AppIDs: []string{testAppID}, Roots: ca.Roots(), Now: func() time.Time { return synthNow }, Logger: nopLogger()})
	if err != nil {
		f.Fatal(err)
	}
	cdh := ClientDataHash([]byte("c"))
	obj, _ := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	if _, err := a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh); err != nil {
		f.Fatal(err)
	}
	seed, _ := dev.AssertWithCounter([]byte("data"), 1_000_000)
	f.Add(seed, []byte("other data"))
	f.Add([]byte{0xa2}, []byte{})
	f.Fuzz(func(t *testing.T, assertion, clientData []byte) {
		_, err := a.VerifyAssertion(context.Background(), dev.KeyID, assertion, clientData)
		if err == nil {
			t.Fatalf("a forged assertion passed")
		}
		if !oneOf(err, appAttestSentinels) {
			t.Fatalf("error outside the sentinels: %v", err)
		}
	})
}

type fuzzVector struct {
	att, cdh []byte
	keyID    string
	appID    string
	at       time.Time
}

func loadFuzzVector(f *testing.F) fuzzVector {
	vs := loadVectorsF(f)
	v := vs[0]
	att, _ := base64.StdEncoding.DecodeString(v.Attestation)
	cdh, _ := base64.StdEncoding.DecodeString(v.ClientDataHash)
	at, _ := time.Parse(time.RFC3339, v.VerifyAt)
	return fuzzVector{att: att, cdh: cdh, keyID: v.KeyID, appID: v.AppID, at: at}
}
