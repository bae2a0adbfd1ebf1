package androidkey

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

const testPkg = "com.example.shop"

var (
	testDigest = sha256.Sum256([]byte("apiguard test signing certificate"))
	testNow    = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
)

// testEnv is a verifier trusting a test root, and that root.
type testEnv struct {
	ca *attesttest.AndroidCA
	v  *Verifier
}

func newTestEnv(t *testing.T, adjust func(*Config)) *testEnv {
	t.Helper()
	ca, err := attesttest.NewAndroidCA(testNow.Add(-24*time.Hour), testNow.Add(365*24*time.Hour))
	require.NoError(t, err)
	cfg := Config{
		Packages: []string{testPkg}, SignatureDigests: [][]byte{testDigest[:]},
		Roots: ca.Roots(), StatusList: emptyStatus,
		Now: func() time.Time { return testNow }, Logger: slog.New(slog.DiscardHandler),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return &testEnv{ca: ca, v: v}
}

// key returns an AndroidKey for the test app over challenge.
func goodKey(challenge string) attesttest.AndroidKey {
	return attesttest.AndroidKey{Challenge: []byte(challenge), Packages: []string{testPkg}, SignatureDigests: [][]byte{testDigest[:]}}
}

func (e *testEnv) attest(t *testing.T, k attesttest.AndroidKey) [][]byte {
	t.Helper()
	chain, _, err := e.ca.Attest(k)
	require.NoError(t, err)
	return chain
}

// TestMintedChainVerifies: the test root's chains verify under the
// default policy, factory and RKP shapes, with the signals of a current
// device (none).
func TestMintedChainVerifies(t *testing.T) {
	for _, rkp := range []bool{false, true} {
		t.Run(fmt.Sprint("rkp=", rkp), func(t *testing.T) {
			e := newTestEnv(t, nil)
			k := goodKey("c-1")
			k.RKP = rkp
			key, err := e.v.Verify(context.Background(), e.attest(t, k), []byte("c-1"))
			require.NoError(t, err)
			require.Equal(t, TrustedEnvironment, key.SecurityLevel)
			require.Equal(t, rkp, key.RemotelyProvisioned)
			require.Empty(t, key.Signals)
			require.NotNil(t, key.PublicKey)
		})
	}
}

// TestAttacksRefused: each attack is refused, for its own reason.
func TestAttacksRefused(t *testing.T) {
	tests := []struct {
		name    string
		give    func(k *attesttest.AndroidKey)
		adjust  func(*Config)
		give2   []byte // the challenge passed to Verify; default "c-1"
		wantErr error
	}{
		{name: "software_key_from_emulator", give: func(k *attesttest.AndroidKey) { k.Software = true }, wantErr: ErrSecurityLevel},
		{name: "hardware_attestation_of_a_software_keymint_key", give: func(k *attesttest.AndroidKey) { k.SoftwareKeyMint = true }, wantErr: ErrSecurityLevel},
		{name: "unlocked_bootloader", give: func(k *attesttest.AndroidKey) { k.Unlocked = true }, wantErr: ErrBootState},
		{name: "unverified_boot", give: func(k *attesttest.AndroidKey) { k.BootState = int(Unverified) }, wantErr: ErrBootState},
		{name: "self_signed_boot", give: func(k *attesttest.AndroidKey) { k.BootState = int(SelfSigned) }, wantErr: ErrBootState},
		{name: "failed_boot_even_when_loosened", give: func(k *attesttest.AndroidKey) { k.BootState = int(Failed) },
			adjust: func(c *Config) { c.InsecureAllowUnverifiedBoot, c.InsecureAllowUnlockedBootloader = true, true }, wantErr: ErrBootState},
		{name: "tee_key_when_strongbox_required", adjust: func(c *Config) { c.RequireStrongBox = true }, wantErr: ErrSecurityLevel},
		{name: "wrong_challenge", give2: []byte("c-2"), wantErr: ErrChallenge},
		{name: "empty_challenge", give2: []byte{}, wantErr: ErrChallenge},
		{name: "foreign_package", give: func(k *attesttest.AndroidKey) { k.Packages = []string{"com.evil.clone"} }, wantErr: ErrApplication},
		{name: "foreign_package_beside_ours", give: func(k *attesttest.AndroidKey) { k.Packages = []string{testPkg, "com.evil.clone"} }, wantErr: ErrApplication},
		{name: "foreign_signing_certificate", give: func(k *attesttest.AndroidKey) { k.SignatureDigests = [][]byte{make([]byte, 32)} }, wantErr: ErrApplication},
		{name: "no_signing_certificate", give: func(k *attesttest.AndroidKey) { k.SignatureDigests = [][]byte{} }, wantErr: ErrApplication},
		{name: "rkp_tee_certificate_claims_strongbox", give: func(k *attesttest.AndroidKey) { k.RKP, k.SecurityLevel, k.RKPOrganization = true, 2, "TEE" }, wantErr: ErrChain},
		{name: "non_ca_batch_in_rkp_chain", give: func(k *attesttest.AndroidKey) { k.RKP, k.NonCABatch = true, true }, wantErr: ErrChain},
		{name: "malformed_key_description", give: func(k *attesttest.AndroidKey) { k.KeyDescription = []byte{0x30, 0x03, 0x02, 0x01} }, wantErr: ErrKeyDescription},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, tt.adjust)
			k := goodKey("c-1")
			if tt.give != nil {
				tt.give(&k)
			}
			challenge := []byte("c-1")
			if tt.give2 != nil {
				challenge = tt.give2
			}
			_, err := e.v.Verify(context.Background(), e.attest(t, k), challenge)
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

// TestLoosenedPolicySignals: what an Insecure… field admits is marked
// as a signal on the Key.
func TestLoosenedPolicySignals(t *testing.T) {
	e := newTestEnv(t, func(c *Config) {
		c.InsecureAllowSoftwareKeys, c.InsecureAllowUnlockedBootloader, c.InsecureAllowUnverifiedBoot = true, true, true
	})
	k := goodKey("c-1")
	k.Unlocked, k.BootState, k.OSPatchLevel = true, int(Unverified), 202401
	key, err := e.v.Verify(context.Background(), e.attest(t, k), []byte("c-1"))
	require.NoError(t, err)
	require.Equal(t, []string{SignalBootloaderUnlocked, SignalBootUnverified, SignalOSOutdated}, key.Signals)

	k = goodKey("c-2")
	k.Software = true
	key, err = e.v.Verify(context.Background(), e.attest(t, k), []byte("c-2"))
	require.NoError(t, err)
	require.Equal(t, []string{SignalSoftwareKey, SignalOSOutdated}, key.Signals)
}

// TestReplayedChallenge: a challenge is single use, even with a fresh
// key; and a failed attestation does not use it up.
func TestReplayedChallenge(t *testing.T) {
	e := newTestEnv(t, nil)
	bad := goodKey("c-1")
	bad.Unlocked = true
	_, err := e.v.Verify(context.Background(), e.attest(t, bad), []byte("c-1"))
	require.ErrorIs(t, err, ErrBootState)
	chain := e.attest(t, goodKey("c-1"))
	_, err = e.v.Verify(context.Background(), chain, []byte("c-1"))
	require.NoError(t, err)
	_, err = e.v.Verify(context.Background(), chain, []byte("c-1"))
	require.ErrorIs(t, err, ErrReplay, "replayed_challenge: the same chain again")
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-1")), []byte("c-1"))
	require.ErrorIs(t, err, ErrReplay, "replayed_challenge: another key over a used challenge")
}

// TestChainAttacks: chains that are extended, reordered, truncated, too
// long or to a root that is not trusted are refused.
func TestChainAttacks(t *testing.T) {
	e := newTestEnv(t, nil)
	chain, key, err := e.ca.Attest(goodKey("c-1"))
	require.NoError(t, err)
	kd, err := attesttest.AndroidKeyDescription(goodKey("c-1"))
	require.NoError(t, err)
	extended, err := attesttest.AndroidExtend(chain, key, kd)
	require.NoError(t, err)
	other := newTestEnv(t, nil)
	tests := []struct {
		name    string
		give    [][]byte
		wantErr error
	}{
		{name: "chain_extended_past_attested_key", give: extended, wantErr: ErrChain},
		{name: "chain_to_unknown_root", give: other.attest(t, goodKey("c-1")), wantErr: ErrChain},
		{name: "chain_reordered", give: [][]byte{chain[0], chain[2], chain[1], chain[3]}, wantErr: ErrChain},
		{name: "intermediate_missing", give: [][]byte{chain[0], chain[2], chain[3]}, wantErr: ErrChain},
		{name: "leaf_only", give: chain[:1], wantErr: ErrMalformed},
		{name: "chain_too_long", give: append(append([][]byte{}, chain...), chain[1], chain[2], chain[3]), wantErr: ErrMalformed},
		{name: "certificate_too_large", give: [][]byte{chain[0], make([]byte, maxCertBytes+1)}, wantErr: ErrMalformed},
		{name: "garbage_certificate", give: [][]byte{chain[0], []byte("not DER")}, wantErr: ErrMalformed},
		{name: "leaf_without_key_description", give: chain[1:], wantErr: ErrKeyDescription},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.v.Verify(context.Background(), tt.give, []byte("c-1"))
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

// TestNonCABatch: the factory shape with a non-CA batch certificate is
// accepted (the Sony vector's shape), with every check kept: a leaf
// whose signature does not verify, or past its validity, is refused.
func TestNonCABatch(t *testing.T) {
	e := newTestEnv(t, nil)
	k := goodKey("c-1")
	k.NonCABatch = true
	chain := e.attest(t, k)
	_, err := e.v.Verify(context.Background(), chain, []byte("c-1"))
	require.NoError(t, err)

	t.Run("non_ca_batch_forged_leaf_signature", func(t *testing.T) {
		k := goodKey("c-2")
		k.NonCABatch = true
		chain := e.attest(t, k)
		leaf := append([]byte{}, chain[0]...)
		leaf[len(leaf)-2] ^= 0x55 // inside the signature
		_, err := e.v.Verify(context.Background(), append([][]byte{leaf}, chain[1:]...), []byte("c-2"))
		require.ErrorIs(t, err, ErrChain)
	})
	t.Run("non_ca_batch_expired_factory_certificates", func(t *testing.T) {
		// The Sony shape after its batch and intermediate certificates
		// expired: accepted, as Google's verifier does (see
		// TestExpiredFactoryCertificates).
		old, err := attesttest.NewAndroidCA(testNow.Add(-3*365*24*time.Hour), testNow.Add(-24*time.Hour))
		require.NoError(t, err)
		k := goodKey("c-3")
		k.NonCABatch = true
		chain, _, err := old.Attest(k)
		require.NoError(t, err)
		v := newTestEnv(t, func(c *Config) { c.Roots = old.Roots() }).v
		_, err = v.Verify(context.Background(), chain, []byte("c-3"))
		require.NoError(t, err)
	})
}

// TestVectorAttacks are attacks on the real chains.
func TestVectorAttacks(t *testing.T) {
	t.Run("unlocked_bootloader", func(t *testing.T) {
		vec := loadVector(t, "google-tegu-sdk37-tee-trusted-conf") // a development Pixel 9a under CA1
		v := vectorVerifier(t, vec, nil)
		_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
		require.ErrorIs(t, err, ErrBootState)
	})
	t.Run("software_key_from_emulator", func(t *testing.T) {
		vec := loadVector(t, "google-marlin-sdk29-tee-ec-none") // AOSP software root
		v := vectorVerifier(t, vec, nil)
		_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
		require.ErrorIs(t, err, ErrChain, "the software root is not Google's")
		// Even a deployment that trusts the software root refuses its keys.
		chain := vec.chain(t)
		v = vectorVerifier(t, vec, func(c *Config) { c.Roots = poolOf(t, chain[len(chain)-1]) })
		_, err = v.Verify(context.Background(), chain, vec.challenge(t))
		require.ErrorIs(t, err, ErrSecurityLevel)
	})
	for _, name := range []string{"aksample-ec-strongbox", "webauthn-fido-conformance-fake-0"} {
		t.Run("chain_to_unknown_root/"+name, func(t *testing.T) {
			vec := loadVector(t, name)
			v := vectorVerifier(t, vec, func(c *Config) {
				c.InsecureAllowSoftwareKeys, c.InsecureAllowUnlockedBootloader, c.InsecureAllowUnverifiedBoot = true, true, true
			})
			_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
			require.ErrorIs(t, err, ErrChain)
		})
	}
	t.Run("wrong_challenge", func(t *testing.T) {
		vec := loadVector(t, "google-caiman-sdk36-sb-ec-rkp")
		v := vectorVerifier(t, vec, nil)
		_, err := v.Verify(context.Background(), vec.chain(t), []byte("another challenge"))
		require.ErrorIs(t, err, ErrChallenge)
	})
	t.Run("replayed_challenge", func(t *testing.T) {
		vec := loadVector(t, "webauthn-pixel8a-2025-rkp")
		v := vectorVerifier(t, vec, nil)
		_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
		require.NoError(t, err)
		_, err = v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
		require.ErrorIs(t, err, ErrReplay)
	})
	t.Run("foreign_package", func(t *testing.T) {
		vec := loadVector(t, "google-sony-xperia10-iii-sdk33-tee-ec")
		v := vectorVerifier(t, vec, func(c *Config) { c.Packages = []string{testPkg} })
		_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
		require.ErrorIs(t, err, ErrApplication)
	})
	t.Run("expired_rkp_intermediate", func(t *testing.T) {
		vec := loadVector(t, "google-caiman-sdk36-sb-ec-rkp") // Droid CA3 lives ten weeks
		v := vectorVerifier(t, vec, nil)
		v.cfg.Now = func() time.Time { return vec.validAt(t).Add(90 * 24 * time.Hour) }
		_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
		require.ErrorIs(t, err, ErrChain)
	})
	t.Run("root_key_trusted_past_its_2016_certificate", func(t *testing.T) {
		// A factory chain under the 2022 certificate, sent with the 2016
		// one (expired 2026-05-24) as its root, after that date: trust
		// is the key, which the 2019/2021/2022 certificates carry.
		vec := loadVector(t, "google-tokay-sdk37-tee-mldsa-factory")
		chain := vec.chain(t)
		chain[len(chain)-1] = pemFile(t, "roots/google_hardware_attestation_root_rsa_2016.pem")
		v := vectorVerifier(t, vec, func(c *Config) { c.InsecureAllowUnlockedBootloader, c.InsecureAllowUnverifiedBoot = true, true })
		v.cfg.Now = func() time.Time { return time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC) }
		require.NoError(t, v.SetStatusList(emptyStatus)) // the one loaded at valid_at is stale by now
		k, err := v.Verify(context.Background(), chain, vec.challenge(t))
		require.NoError(t, err)
		require.Nil(t, k.PublicKey, "ML-DSA: unknown to Go")
		require.NotEmpty(t, k.PublicKeyDER)
	})
}

func pemFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	p, _ := pem.Decode(b)
	require.NotNil(t, p)
	return p.Bytes
}

func poolOf(t *testing.T, der []byte) *x509.CertPool {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}
