package androidkey

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
)

// FuzzKeyDescription feeds arbitrary bytes to the KeyDescription
// parser: it never panics, and every error is ErrKeyDescription.
func FuzzKeyDescription(f *testing.F) {
	for _, vec := range allVectors(f) {
		leaf, err := x509.ParseCertificate(vec.chain(f)[0])
		if err != nil {
			f.Fatal(err)
		}
		ext, _ := extension(leaf, oidKeyDescription)
		f.Add(ext)
	}
	kd, _ := attesttest.AndroidKeyDescription(goodKey("c-1"))
	f.Add(kd)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseKeyDescription(b)
		if err != nil && !errors.Is(err, ErrKeyDescription) {
			t.Fatalf("error outside the sentinel: %v", err)
		}
		if err == nil && k == nil {
			t.Fatal("nil key without an error")
		}
	})
}

// FuzzChain feeds arbitrary certificates, in place of each certificate
// of a real RKP chain, to Verify: it never panics, every error matches a
// sentinel, and a chain the link-by-link path check accepts, x509's own
// verification accepts too (every certificate of the vector is valid at
// its valid_at, so no expiry rule differs).
func FuzzChain(f *testing.F) {
	vec := loadVector(f, "google-caiman-sdk36-sb-ec-rkp")
	chain := vec.chain(f)
	for i := range chain {
		f.Add(uint8(i), chain[i])
	}
	f.Add(uint8(0), []byte{0x30, 0x03, 0x02, 0x01, 0x00})
	v := vectorVerifier(f, vec, nil)
	sentinels := []error{ErrMalformed, ErrChain, ErrKeyDescription, ErrRevoked, ErrChallenge, ErrReplay,
		ErrApplication, ErrSecurityLevel, ErrBootState, ErrVendor, ErrStore}
	f.Fuzz(func(t *testing.T, pos uint8, cert []byte) {
		give := append([][]byte{}, chain...)
		if int(pos) < len(give) {
			give[pos] = cert
		} else {
			give = append(give, cert)
		}
		if certs, _, err := v.verifyChain(give, vec.validAt(t)); err == nil {
			if xerr := x509Verify(certs, v.cfg.Roots, vec.validAt(t)); xerr != nil {
				t.Fatalf("accepted a chain x509 refuses: %v", xerr)
			}
		}
		_, err := v.verify(context.Background(), give, vec.challenge(t))
		if err == nil {
			return
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error outside the sentinels: %v", err)
	})
}

// x509Verify verifies certs (leaf first, a root copy last or not) with
// crypto/x509, all of it in the order given.
func x509Verify(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return err
	}
	for _, c := range chains {
		n := min(len(c), len(certs))
		if slices.EqualFunc(c[:n-1], certs[:n-1], (*x509.Certificate).Equal) {
			return nil
		}
	}
	return errors.New("x509 verifies it only in another order")
}
