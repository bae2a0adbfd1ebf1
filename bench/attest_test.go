package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
)

// BenchmarkAppAttestAssertion verifies App Attest assertions (strict CBOR,
// key lookup, signature, rpIdHash, counter compare-and-swap) against the
// floor of one raw ECDSA P-256 verify of the same signature.
func BenchmarkAppAttestAssertion(b *testing.B) {
	now := time.Now()
	ca, err := attesttest.NewCA(now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	const appID = "ABCDE12345.com.example.shop"
	// enrol returns a verifier with a fresh store holding the device's key
	// at counter 0, so every run (and -count) starts from the same state.
	dev, _ := attesttest.NewDevice(appID)
	cdh := appattest.ClientDataHash([]byte("c"))
	obj, _ := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	enrol := func(b *testing.B) *appattest.Verifier {
		a, err := appattest.New(appattest.Config{AppIDs: []string{appID}, Roots: ca.Roots(),
			Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh); err != nil {
			b.Fatal(err)
		}
		return a
	}
	enrol(b)
	clientData := []byte(`POST
/v1/premium
0000000000000000000000000000000000000000000000000000000000000000
challenge`)
	// Pre-sign assertions with rising counters: each verifies once.
	const n = 20_000
	assertions := make([][]byte, n)
	for i := range assertions {
		assertions[i], _ = dev.AssertWithCounter(clientData, uint32(i+1))
	}
	b.Run("floor_ecdsa_VerifyASN1", func(b *testing.B) {
		digest := sha256.Sum256([]byte("a nonce to verify"))
		sig, _ := ecdsa.SignASN1(rand.Reader, dev.Key, digest[:])
		b.ReportAllocs()
		for b.Loop() {
			if !ecdsa.VerifyASN1(&dev.Key.PublicKey, digest[:], sig) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("apiguard_VerifyAssertion", func(b *testing.B) {
		ctx := context.Background()
		a := enrol(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == n {
				b.StopTimer()
				// Out of fresh counters: enrol the key again under a new store.
				a = enrol(b)
				i = 0
				b.StartTimer()
			}
			if _, err := a.VerifyAssertion(ctx, dev.KeyID, assertions[i], clientData); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
