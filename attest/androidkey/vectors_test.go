package androidkey

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// vector is one chain of testdata/ (from ../shared/vectors/androidkey).
type vector struct {
	Name       string   `json:"name"`
	Source     string   `json:"source"`
	Generation string   `json:"generation"`
	Root       string   `json:"root"`
	ChainPEM   []string `json:"chain_pem"`
	Challenge  string   `json:"challenge_b64"`
	ValidAt    string   `json:"valid_at"`
	Trusted    bool     `json:"google_root_trusted"`
	Expected   struct {
		AttestationVersion int      `json:"attestation_version"`
		AttestationLevel   string   `json:"attestation_security_level"`
		KeyMintVersion     int      `json:"keymaster_version"`
		KeyMintLevel       string   `json:"keymaster_security_level"`
		Challenge          string   `json:"challenge_b64"`
		PackageNames       []string `json:"package_names"`
		PackageVersions    []int64  `json:"package_versions"`
		Digests            []string `json:"signature_digests_b64"`
		OSVersion          *int     `json:"os_version"`
		OSPatchLevel       *int     `json:"os_patch_level"`
		VendorPatchLevel   *int     `json:"vendor_patch_level"`
		BootPatchLevel     *int     `json:"boot_patch_level"`
		BootState          string   `json:"verified_boot_state"`
		DeviceLocked       *bool    `json:"device_locked"`
		BootKey            string   `json:"verified_boot_key_b64"`
		BootHash           *string  `json:"verified_boot_hash_b64"`
		CreationMs         int64    `json:"creation_date_time_ms"`
		Origin             int      `json:"origin"`
		Purposes           []int    `json:"purposes"`
		Algorithm          int      `json:"algorithm"`
		KeySize            *int     `json:"key_size"`
		ModuleHash         *string  `json:"module_hash_b64"`
		SoftwareTags       []int    `json:"software_enforced_tags"`
		HardwareTags       []int    `json:"hardware_enforced_tags"`
	} `json:"expected"`
}

func (vec *vector) chain(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range vec.ChainPEM {
		b, _ := pem.Decode([]byte(p))
		require.NotNil(t, b)
		out = append(out, b.Bytes)
	}
	return out
}

func (vec *vector) validAt(t testing.TB) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, vec.ValidAt)
	require.NoError(t, err)
	return at
}

func (vec *vector) challenge(t testing.TB) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(vec.Challenge)
	require.NoError(t, err)
	return b
}

func loadVector(t testing.TB, name string) *vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	var v vector
	require.NoError(t, json.Unmarshal(b, &v))
	require.NotEmpty(t, v.Source)
	return &v
}

func allVectors(t testing.TB) []*vector {
	t.Helper()
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	var out []*vector
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if strings.HasPrefix(name, "status-list") {
			continue
		}
		out = append(out, loadVector(t, name))
	}
	require.Len(t, out, 18)
	return out
}

func b64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

// emptyStatus is a status list with no entries.
var emptyStatus = []byte(`{"entries":{}}`)

// vectorVerifier is a verifier whose policy admits vec's app and whose
// clock is vec's valid_at, with an empty status list; loosen adjusts it.
func vectorVerifier(t testing.TB, vec *vector, loosen func(*Config)) *Verifier {
	t.Helper()
	at := vec.validAt(t)
	cfg := Config{
		Packages: vec.Expected.PackageNames, StatusList: emptyStatus,
		Now: func() time.Time { return at }, Logger: slog.New(slog.DiscardHandler),
	}
	for _, d := range vec.Expected.Digests {
		cfg.SignatureDigests = append(cfg.SignatureDigests, b64(t, d))
	}
	if len(cfg.SignatureDigests) == 0 {
		cfg.SignatureDigests = [][]byte{make([]byte, 32)}
	}
	if loosen != nil {
		loosen(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// mustVerify are the vectors that chain to a Google root; the rest chain
// to a pre-production, software or test root.
func mustVerify(vec *vector) bool { return vec.Trusted }

// TestVectorsChainAndKeyDescription: every chain that must verify
// verifies to the embedded Google roots at its valid_at (the Sony chain
// with its non-CA batch certificate included), and its KeyDescription
// equals expected field by field; the others are refused as untrusted.
func TestVectorsChainAndKeyDescription(t *testing.T) {
	for _, vec := range allVectors(t) {
		t.Run(vec.Name, func(t *testing.T) {
			v := vectorVerifier(t, vec, nil)
			certs, anchor, err := v.verifyChain(vec.chain(t), vec.validAt(t))
			if !mustVerify(vec) {
				require.ErrorIs(t, err, ErrChain, vec.Root)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, anchor)
			ext, ok := extension(certs[0], oidKeyDescription)
			require.True(t, ok)
			k, err := parseKeyDescription(ext)
			require.NoError(t, err)
			checkExpected(t, vec, k)
		})
	}
}

// TestVectorsKeyDescriptionEveryVersion parses the KeyDescription of
// every vector, trusted root or not: versions 2, 3, 300 and 500.
func TestVectorsKeyDescriptionEveryVersion(t *testing.T) {
	versions := map[int]bool{}
	for _, vec := range allVectors(t) {
		leaf, err := x509.ParseCertificate(vec.chain(t)[0])
		require.NoError(t, err, vec.Name)
		ext, ok := extension(leaf, oidKeyDescription)
		require.True(t, ok, vec.Name)
		k, err := parseKeyDescription(ext)
		require.NoError(t, err, vec.Name)
		checkExpected(t, vec, k)
		versions[k.AttestationVersion] = true
	}
	require.Equal(t, map[int]bool{2: true, 3: true, 300: true, 500: true}, versions)
}

func checkExpected(t *testing.T, vec *vector, k *Key) {
	t.Helper()
	e := vec.Expected
	require.Equal(t, e.AttestationVersion, k.AttestationVersion)
	require.Equal(t, e.AttestationLevel, k.SecurityLevel.String())
	require.Equal(t, e.KeyMintVersion, k.KeyMintVersion)
	require.Equal(t, e.KeyMintLevel, k.KeyMintSecurityLevel.String())
	require.Equal(t, b64(t, e.Challenge), k.Challenge)
	require.Equal(t, vec.challenge(t), k.Challenge)
	var names []string
	var versions []int64
	for _, p := range k.Packages {
		names, versions = append(names, p.Name), append(versions, p.Version)
	}
	require.Equal(t, e.PackageNames, names)
	require.Equal(t, e.PackageVersions, versions)
	require.Len(t, k.SignatureDigests, len(e.Digests))
	for i, d := range e.Digests {
		require.Equal(t, b64(t, d), k.SignatureDigests[i])
	}
	intOr0 := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	require.Equal(t, intOr0(e.OSVersion), k.OSVersion)
	require.Equal(t, intOr0(e.OSPatchLevel), k.OSPatchLevel)
	require.Equal(t, intOr0(e.VendorPatchLevel), k.VendorPatchLevel)
	require.Equal(t, intOr0(e.BootPatchLevel), k.BootPatchLevel)
	if e.DeviceLocked == nil {
		require.Nil(t, k.RootOfTrust)
	} else {
		require.NotNil(t, k.RootOfTrust)
		require.Equal(t, *e.DeviceLocked, k.RootOfTrust.DeviceLocked)
		require.Equal(t, e.BootState, k.RootOfTrust.BootState.String())
		require.Equal(t, b64(t, e.BootKey), k.RootOfTrust.VerifiedBootKey)
		if e.BootHash != nil {
			require.Equal(t, b64(t, *e.BootHash), k.RootOfTrust.VerifiedBootHash)
		}
	}
	require.Equal(t, time.UnixMilli(e.CreationMs).UTC(), k.CreationTime)
	require.Equal(t, e.Origin, k.Origin)
	require.Equal(t, e.Purposes, k.Purposes)
	require.Equal(t, e.Algorithm, k.Algorithm)
	require.Equal(t, intOr0(e.KeySize), k.KeySize)
	if e.ModuleHash != nil {
		require.Equal(t, b64(t, *e.ModuleHash), k.Software.ModuleHash)
	}
	require.Equal(t, e.SoftwareTags, k.Software.Tags)
	require.Equal(t, e.HardwareTags, k.Hardware.Tags)
}

// TestVectorsVerify runs the whole of Verify on each chain that must
// verify, with the policy its device meets: development devices
// (unlocked, Unverified boot) only under the Insecure… fields, and
// locked, Verified devices under the default policy.
func TestVectorsVerify(t *testing.T) {
	for _, vec := range allVectors(t) {
		if !mustVerify(vec) {
			continue
		}
		t.Run(vec.Name, func(t *testing.T) {
			dev := vec.Expected.DeviceLocked != nil && !*vec.Expected.DeviceLocked
			v := vectorVerifier(t, vec, func(c *Config) {
				c.InsecureAllowUnlockedBootloader, c.InsecureAllowUnverifiedBoot = dev, dev
			})
			k, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
			if len(vec.Expected.Digests) == 0 {
				// AndroidSystem keys (attestation IDs) name no signing
				// certificate: an allow-list cannot admit them.
				require.ErrorIs(t, err, ErrApplication)
				return
			}
			require.NoError(t, err)
			checkExpected(t, vec, k)
			require.Equal(t, vec.Generation != "rsa-root-factory", k.RemotelyProvisioned)
			if dev {
				require.Contains(t, k.Signals, SignalBootloaderUnlocked)
				require.Contains(t, k.Signals, SignalBootUnverified)
			} else {
				require.NotContains(t, k.Signals, SignalBootloaderUnlocked)
			}
			// Every chain's patch level is more than a year behind a clock
			// set in 2026-12 or is current at its own valid_at.
			require.NotNil(t, k.PublicKeyDER)
		})
	}
}
