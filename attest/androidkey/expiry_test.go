package androidkey

import (
	"context"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

// TestVectorsFactoryChainsOutliveTheirCertificates: every real factory
// chain that must verify verifies today (2026-12-06: the Sony chain's
// batch and intermediate expired 2026-05-24, and each device sends the
// 2016 root certificate that expired then) and in 2030 (the Pixel 3
// intermediates expire in 2028, as does the StrongBox leaf), as Google's
// reference verifier accepts them. RKP chains, short-lived by design,
// are refused once their certificates expire, as the reference does.
func TestVectorsFactoryChainsOutliveTheirCertificates(t *testing.T) {
	for _, at := range []time.Time{testNow, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} {
		for _, vec := range allVectors(t) {
			if !mustVerify(vec) {
				continue
			}
			t.Run(at.Format("2006-01-02")+"/"+vec.Name, func(t *testing.T) {
				dev := vec.Expected.DeviceLocked != nil && !*vec.Expected.DeviceLocked
				v := vectorVerifier(t, vec, func(c *Config) {
					c.Now = func() time.Time { return at }
					c.InsecureAllowUnlockedBootloader, c.InsecureAllowUnverifiedBoot = dev, dev
				})
				if vec.Generation != "rsa-root-factory" {
					_, _, err := v.verifyChain(vec.chain(t), at)
					require.ErrorIs(t, err, ErrChain)
					require.ErrorContains(t, err, "expired")
					return
				}
				_, _, err := v.verifyChain(vec.chain(t), at)
				require.NoError(t, err)
				if len(vec.Expected.Digests) == 0 {
					return // an AndroidSystem key: see TestVectorsVerify
				}
				k, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
				require.NoError(t, err)
				checkExpected(t, vec, k)
				require.False(t, k.RemotelyProvisioned)
			})
		}
	}
}

// TestExpiredFactoryCertificates: in a factory chain (no RKP
// provisioning info, the top intermediate named by a serialNumber), an
// expired certificate above the leaf is accepted; every other check
// stays: revocation, a certificate not yet valid, expiry in an RKP
// chain or in a chain of another shape, signatures.
func TestExpiredFactoryCertificates(t *testing.T) {
	expired := func(t *testing.T) *attesttest.AndroidCA {
		ca, err := attesttest.NewAndroidCA(testNow.Add(-3*365*24*time.Hour), testNow.Add(-24*time.Hour))
		require.NoError(t, err)
		return ca
	}
	t.Run("expired_factory_batch_accepted", func(t *testing.T) {
		e := newTestEnv(t, nil)
		k := goodKey("c-1")
		k.BatchNotAfter = testNow.Add(-time.Hour)
		_, err := e.v.Verify(context.Background(), e.attest(t, k), []byte("c-1"))
		require.NoError(t, err)
	})
	t.Run("expired_factory_intermediate_and_root_accepted", func(t *testing.T) {
		ca := expired(t)
		chain, _, err := ca.Attest(goodKey("c-1"))
		require.NoError(t, err)
		v := newTestEnv(t, func(c *Config) { c.Roots = ca.Roots() }).v
		_, err = v.Verify(context.Background(), chain, []byte("c-1"))
		require.NoError(t, err)
	})
	t.Run("leaf_validity_not_checked", func(t *testing.T) {
		// The leaf is valid 1970 to 2048, as Keystore's default.
		late := time.Date(2049, 1, 1, 0, 0, 0, 0, time.UTC)
		ca, err := attesttest.NewAndroidCA(testNow, late.Add(time.Hour))
		require.NoError(t, err)
		chain, _, err := ca.Attest(goodKey("c-1"))
		require.NoError(t, err)
		v := newTestEnv(t, func(c *Config) { c.Roots, c.Now = ca.Roots(), func() time.Time { return late } }).v
		_, err = v.Verify(context.Background(), chain, []byte("c-1"))
		require.NoError(t, err)
	})
	t.Run("revoked_expired_factory_batch", func(t *testing.T) {
		ca := expired(t)
		var serials []string
		k := goodKey("c-1")
		k.Serials = &serials
		chain, _, err := ca.Attest(k)
		require.NoError(t, err)
		v := newTestEnv(t, func(c *Config) {
			c.Roots, c.StatusList = ca.Roots(), statusJSON(map[string]string{serials[1]: "REVOKED"})
		}).v
		_, err = v.Verify(context.Background(), chain, []byte("c-1"))
		require.ErrorIs(t, err, ErrRevoked)
	})
	t.Run("expired_factory_chain_forged_leaf_signature", func(t *testing.T) {
		ca := expired(t)
		chain, _, err := ca.Attest(goodKey("c-1"))
		require.NoError(t, err)
		chain[0] = append([]byte{}, chain[0]...)
		chain[0][len(chain[0])-2] ^= 0x55 // inside the signature
		v := newTestEnv(t, func(c *Config) { c.Roots = ca.Roots() }).v
		_, err = v.Verify(context.Background(), chain, []byte("c-1"))
		require.ErrorIs(t, err, ErrChain)
	})
	t.Run("expired_rkp_attestation_key", func(t *testing.T) {
		e := newTestEnv(t, nil)
		k := goodKey("c-1")
		k.RKP, k.BatchNotAfter = true, testNow.Add(-time.Hour)
		_, err := e.v.Verify(context.Background(), e.attest(t, k), []byte("c-1"))
		require.ErrorIs(t, err, ErrChain)
		require.ErrorContains(t, err, "expired")
	})
	t.Run("intermediate_not_yet_valid", func(t *testing.T) {
		ca, err := attesttest.NewAndroidCA(testNow.Add(time.Hour), testNow.Add(365*24*time.Hour))
		require.NoError(t, err)
		chain, _, err := ca.Attest(goodKey("c-1"))
		require.NoError(t, err)
		v := newTestEnv(t, func(c *Config) { c.Roots = ca.Roots() }).v
		_, err = v.Verify(context.Background(), chain, []byte("c-1"))
		require.ErrorIs(t, err, ErrChain)
		require.ErrorContains(t, err, "not valid before")
	})
	t.Run("expired_intermediate_not_a_factory_chain", func(t *testing.T) {
		// The AOSP software chain: its intermediate, named without a
		// serialNumber, expired 2026-01-08.
		vec := loadVector(t, "google-marlin-sdk29-tee-ec-none")
		chain := vec.chain(t)
		v := vectorVerifier(t, vec, func(c *Config) {
			c.Roots, c.InsecureAllowSoftwareKeys = poolOf(t, chain[len(chain)-1]), true
			c.Now = func() time.Time { return testNow }
		})
		_, err := v.Verify(context.Background(), chain, vec.challenge(t))
		require.ErrorIs(t, err, ErrChain)
		require.ErrorContains(t, err, "expired")
	})
}

// TestPathAgreesWithX509: where no certificate has expired and no batch
// certificate is a non-CA, a chain the link-by-link path check accepts
// (the real ones at their valid_at, minted ones) crypto/x509 accepts too.
func TestPathAgreesWithX509(t *testing.T) {
	for _, vec := range allVectors(t) {
		if vec.Name == "google-sony-xperia10-iii-sdk33-tee-ec" {
			continue // the non-CA batch certificate: x509 refuses it
		}
		v := vectorVerifier(t, vec, nil)
		certs, _, err := v.verifyChain(vec.chain(t), vec.validAt(t))
		if err != nil {
			require.ErrorIs(t, err, ErrChain, vec.Name)
			require.False(t, mustVerify(vec), vec.Name)
			continue
		}
		require.NoError(t, x509Verify(certs, v.cfg.Roots, vec.validAt(t)), vec.Name)
	}
	e := newTestEnv(t, nil)
	for _, rkp := range []bool{false, true} {
		k := goodKey("c-1")
		k.RKP = rkp
		chain, _, err := e.ca.Attest(k)
		require.NoError(t, err)
		certs, _, err := e.v.verifyChain(chain, testNow)
		require.NoError(t, err)
		require.NoError(t, x509Verify(certs, e.v.cfg.Roots, testNow))
	}
}
