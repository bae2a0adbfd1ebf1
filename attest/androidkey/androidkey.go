package androidkey

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/events"
)

// Errors. Every error of [Verifier.Verify] matches one of them with
// errors.Is; the text after the sentinel's says what was wrong.
var (
	// ErrMalformed: the chain is empty, too long, or a certificate too
	// large or not DER.
	ErrMalformed = errors.New("attest: android key chain malformed")
	// ErrChain: the chain does not verify to a trusted root at Now
	// (unknown root, bad signature, names that do not chain, a
	// certificate expired or not yet valid as [Verifier.Verify] says, a
	// certificate other than the leaf carrying a KeyDescription).
	ErrChain = errors.New("attest: android key chain not trusted")
	// ErrKeyDescription: the leaf lacks the KeyDescription extension, or
	// it is malformed or over a size cap.
	ErrKeyDescription = errors.New("attest: android key description malformed")
	// ErrRevoked: a certificate of the chain is on the revocation status
	// list (REVOKED or SUSPENDED).
	ErrRevoked = errors.New("attest: android key certificate revoked")
	// ErrChallenge: the attested challenge is not the one expected.
	ErrChallenge = errors.New("attest: android key challenge mismatch")
	// ErrReplay: the challenge was used before.
	ErrReplay = errors.New("attest: android key challenge used before")
	// ErrApplication: a package or signing-certificate digest of
	// attestationApplicationId is not allowed.
	ErrApplication = errors.New("attest: android key application not allowed")
	// ErrSecurityLevel: the attestation was not made in secure hardware
	// (or not in StrongBox when Config.RequireStrongBox).
	ErrSecurityLevel = errors.New("attest: android key not in secure hardware")
	// ErrBootState: the bootloader is unlocked or the boot not Verified.
	ErrBootState = errors.New("attest: android device boot state refused")
	// ErrVendor: the revocation status list is not loaded or too stale
	// (an [*UnavailableError]).
	ErrVendor = provider.ErrVendor
	// ErrStore: the Nonces store did not answer.
	ErrStore = provider.ErrStore
)

// UnavailableError reports that the revocation status list cannot be
// used now, and in RetryAfter how long until the next fetch. It wraps
// [ErrVendor].
type UnavailableError = provider.UnavailableError

// Signals a [Key] can carry: the risk it passed the policy with.
const (
	SignalOSOutdated          = "os_outdated"          // OS patch level older than Config.MaxPatchAge, or absent
	SignalSoftwareKey         = "software_key"         // Software security level (InsecureAllowSoftwareKeys)
	SignalBootloaderUnlocked  = "bootloader_unlocked"  // InsecureAllowUnlockedBootloader
	SignalBootUnverified      = "boot_unverified"      // SelfSigned or Unverified boot (InsecureAllowUnverifiedBoot)
	SignalRevocationUnchecked = "revocation_unchecked" // list unavailable (InsecureAcceptUncheckedRevocation)
)

// NonceStore records single-use challenges (the method set of
// auth.ReplayStore and redisstore.ReplayStore): Use reports whether id
// was fresh, and records it until exp.
type NonceStore interface {
	Use(ctx context.Context, id string, exp time.Time) (bool, error)
}

// Config configures a [Verifier]. A zero field takes the default in its
// comment; a negative duration is an error naming the field.
type Config struct {
	// Packages are the allowed package names. Every package of the
	// attestationApplicationId must be one. Required.
	Packages []string
	// SignatureDigests are the allowed SHA-256 digests of the app's
	// signing certificates, 32 bytes each. Every digest of the
	// attestationApplicationId must be one. Required.
	SignatureDigests [][]byte
	// Roots are the trusted roots. Default: Google's hardware attestation
	// roots, embedded: the RSA-4096 root key in its four published
	// certificates (2016, 2019, 2021, 2022) and Key Attestation CA1
	// (ECDSA P-384). Replace them here when Google publishes another.
	Roots *x509.CertPool
	// RequireStrongBox refuses keys outside StrongBox. Default: false
	// (TEE or StrongBox).
	RequireStrongBox bool
	// InsecureAllowSoftwareKeys accepts attestations made in software
	// (emulators, devices without a TEE): the key is not protected by
	// hardware. Signal software_key. Default: false.
	InsecureAllowSoftwareKeys bool
	// InsecureAllowUnlockedBootloader accepts devices whose bootloader is
	// unlocked: any OS may run. Signal bootloader_unlocked. Default: false.
	InsecureAllowUnlockedBootloader bool
	// InsecureAllowUnverifiedBoot accepts SelfSigned and Unverified boot
	// states (a custom or unsigned OS); Failed is always refused. Signal
	// boot_unverified. Default: false.
	InsecureAllowUnverifiedBoot bool
	// MaxPatchAge is the age past which the OS patch level is reported as
	// the signal os_outdated (never refused: the application steps up).
	// Default: 365 days.
	MaxPatchAge time.Duration
	// Nonces records used challenges. Default: in memory, 100000.
	Nonces NonceStore
	// Namespace names this verifier's challenges in a shared Nonces
	// store. Default: the Packages, sorted.
	Namespace string
	// ChallengeTTL is how long the application accepts a challenge it
	// issued, and so how long a used one is remembered: the application
	// must refuse older challenges itself. Default: 10 minutes.
	ChallengeTTL time.Duration
	// StoreTimeout bounds a call to Nonces. Default: 250ms.
	StoreTimeout time.Duration
	// StatusListURL is the revocation status list. Default:
	// https://android.googleapis.com/attestation/status, unless
	// StatusList is set (then nothing is fetched unless this is set too).
	StatusListURL string
	// StatusList is a status list the application supplies (the JSON
	// Google publishes), replaced later with [Verifier.SetStatusList].
	// Without StatusListURL it ages like a fetched list: past
	// StatusMaxStale without a SetStatusList, chains are refused (503)
	// and Ready fails, so a supplier that stopped is noticed.
	StatusList []byte
	// HTTPClient fetches the list. Default: http.DefaultClient.
	HTTPClient *http.Client
	// MinRefresh is the least time between fetches of the list; after
	// failures the spacing doubles up to 16 times it, ±20 % jitter. The
	// list is refetched after its Cache-Control max-age, clamped to
	// [MinRefresh, 24h] (1h without one). Default: 1 minute.
	MinRefresh time.Duration
	// MaxWait is the longest Verify waits on a fetch of the list.
	// Default: 500ms.
	MaxWait time.Duration
	// FetchTimeout bounds one fetch. Default: 10s.
	FetchTimeout time.Duration
	// StatusMaxStale is how long after its last load a list is used while
	// refreshes fail. Past it, or before a first load, chains are refused
	// with an [*UnavailableError] (fail closed) unless
	// InsecureAcceptUncheckedRevocation. Default: 24 hours.
	StatusMaxStale time.Duration
	// InsecureAcceptUncheckedRevocation accepts chains while no usable
	// list is loaded: a revoked batch key is then accepted. Signal
	// revocation_unchecked, event android_key_revocation_unchecked.
	// Default: false.
	InsecureAcceptUncheckedRevocation bool
	// Now is the clock, also for certificate validity ([Verifier.Verify]
	// says which). Default: time.Now.
	Now func() time.Time
	// Logger receives events (attestation_failed,
	// android_key_status_error, android_key_status_refresh).
	// Default: slog.Default().
	Logger *slog.Logger
}

// Key is an attested key that passed the policy. Values are those of the
// leaf's KeyDescription; the top-level ones come from the hardware-
// enforced list when it has them, else from the software-enforced one.
type Key struct {
	// PublicKey is the attested key (*ecdsa.PublicKey, *rsa.PublicKey),
	// nil for an algorithm Go does not know (ML-DSA).
	PublicKey crypto.PublicKey
	// PublicKeyDER is the leaf's SubjectPublicKeyInfo.
	PublicKeyDER []byte
	// RemotelyProvisioned: the chain is an RKP chain.
	RemotelyProvisioned bool

	AttestationVersion   int
	SecurityLevel        SecurityLevel // attestationSecurityLevel
	KeyMintVersion       int
	KeyMintSecurityLevel SecurityLevel
	Challenge            []byte
	UniqueID             []byte

	Packages         []PackageInfo // attestationApplicationId
	SignatureDigests [][]byte
	// RootOfTrust is the hardware-enforced one; nil when absent.
	RootOfTrust                                               *RootOfTrust
	OSVersion, OSPatchLevel, VendorPatchLevel, BootPatchLevel int
	Purposes                                                  []int
	Algorithm, KeySize                                        int
	CreationTime                                              time.Time
	Origin                                                    int // -1 when absent

	// Hardware and Software are the two authorization lists in full.
	Hardware, Software Authorizations
	// Signals are the risk signals (Signal…) to weigh: an old patch
	// level steps up instead of denying.
	Signals []string
}

// resolve fills the top-level fields from the two lists.
func (k *Key) resolve() {
	hw, sw := &k.Hardware, &k.Software
	pick := func(h, s int) int {
		if h != 0 {
			return h
		}
		return s
	}
	k.RootOfTrust = hw.RootOfTrust
	k.Packages, k.SignatureDigests = sw.Packages, sw.SignatureDigests
	if slices.Contains(hw.Tags, 709) {
		k.Packages, k.SignatureDigests = hw.Packages, hw.SignatureDigests
	}
	k.OSVersion = pick(hw.OSVersion, sw.OSVersion)
	k.OSPatchLevel = pick(hw.OSPatchLevel, sw.OSPatchLevel)
	k.VendorPatchLevel = pick(hw.VendorPatchLevel, sw.VendorPatchLevel)
	k.BootPatchLevel = pick(hw.BootPatchLevel, sw.BootPatchLevel)
	k.Algorithm = pick(hw.Algorithm, sw.Algorithm)
	k.KeySize = pick(hw.KeySize, sw.KeySize)
	k.Purposes = hw.Purposes
	if k.Purposes == nil {
		k.Purposes = sw.Purposes
	}
	k.CreationTime = hw.CreationTime
	if k.CreationTime.IsZero() {
		k.CreationTime = sw.CreationTime
	}
	k.Origin = hw.Origin
	if k.Origin < 0 {
		k.Origin = sw.Origin
	}
}

// Verifier verifies Android Key Attestation chains. It is safe for
// concurrent use by multiple goroutines. Create one with [New]; Close
// waits for a fetch of the status list under way.
type Verifier struct {
	cfg     Config
	pkgs    map[string]bool
	digests map[[32]byte]bool
	scope   string
	status  *provider.Fetcher[map[string]string] // the revocation status list
}

// New validates cfg, fills in its defaults and returns a verifier. The
// status list is fetched on first use, or by [Verifier.Ready].
func New(cfg Config) (*Verifier, error) {
	if len(cfg.Packages) == 0 || len(cfg.SignatureDigests) == 0 {
		return nil, errors.New("attest: androidkey.Config.Packages and SignatureDigests are required")
	}
	if err := provider.Negative(
		provider.Dur("androidkey.Config.MaxPatchAge", cfg.MaxPatchAge),
		provider.Dur("androidkey.Config.ChallengeTTL", cfg.ChallengeTTL),
		provider.Dur("androidkey.Config.StoreTimeout", cfg.StoreTimeout),
		provider.Dur("androidkey.Config.MinRefresh", cfg.MinRefresh),
		provider.Dur("androidkey.Config.MaxWait", cfg.MaxWait),
		provider.Dur("androidkey.Config.FetchTimeout", cfg.FetchTimeout),
		provider.Dur("androidkey.Config.StatusMaxStale", cfg.StatusMaxStale),
	); err != nil {
		return nil, err
	}
	v := &Verifier{pkgs: map[string]bool{}, digests: map[[32]byte]bool{}}
	for _, p := range cfg.Packages {
		if p == "" {
			return nil, errors.New("attest: androidkey.Config.Packages holds an empty name")
		}
		v.pkgs[p] = true
	}
	for _, d := range cfg.SignatureDigests {
		if len(d) != sha256.Size {
			return nil, errors.New("attest: androidkey.Config.SignatureDigests must be 32-byte SHA-256 digests")
		}
		v.digests[[32]byte(d)] = true
	}
	if cfg.Roots == nil {
		cfg.Roots = GoogleRoots()
	}
	if cfg.MaxPatchAge == 0 {
		cfg.MaxPatchAge = 365 * 24 * time.Hour
	}
	if cfg.ChallengeTTL == 0 {
		cfg.ChallengeTTL = 10 * time.Minute
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 250 * time.Millisecond
	}
	if cfg.StatusListURL == "" && cfg.StatusList == nil {
		cfg.StatusListURL = "https://android.googleapis.com/attestation/status"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = time.Minute
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	if cfg.StatusMaxStale == 0 {
		cfg.StatusMaxStale = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Nonces == nil {
		cfg.Nonces = newMemoryNonces(100_000, cfg.Now)
	}
	if cfg.Namespace == "" {
		ps := slices.Clone(cfg.Packages)
		slices.Sort(ps)
		cfg.Namespace = strings.Join(ps, "\x00")
	}
	v.cfg = cfg
	v.scope = provider.Scope("android-key-challenge", cfg.Namespace)
	v.status = newStatusLists(&v.cfg)
	if cfg.StatusList != nil {
		if err := v.setStatusList(cfg.StatusList); err != nil {
			v.status.Close()
			return nil, fmt.Errorf("attest: androidkey.Config.StatusList: %w", err)
		}
	}
	events.WarnUnobserved(cfg.Logger, "attest/androidkey")
	return v, nil
}

// Verify checks chain, the certificates (DER, leaf first, as KeyStore's
// getCertificateChain returns them, root included or not) of a key
// attested for challenge, the value the application issued for this
// attestation; the challenge is then used up. Errors match the package's
// sentinels.
//
// The chain must be the given certificates in the given order, each
// issued by the next (names chain, signatures verify, the issuer is a CA
// with keyCertSign, path lengths hold, no unknown critical extension),
// the last one by a certificate of Config.Roots, with a KeyDescription
// on the leaf only (a genuine attested key that signs another
// certificate is the chain extension attack). Validity follows Google's
// reference verifier (android/keyattestation,
// KeyAttestationCertPathValidator), on evidence:
//   - The leaf's validity is not checked: the device sets it (Keystore's
//     default is 1970 to 2048; some StrongBox leaves end with their batch
//     certificate, 2028 in the vectors) and the challenge, single use,
//     is what proves the attestation fresh.
//   - Every other certificate must be valid at Now, except that in a
//     factory chain (the certificate a root issued is named by a
//     serialNumber, and the chain has no RKP provisioning info) an
//     expired one is accepted: factory keys live in devices for years and
//     cannot be renewed (the Sony vector's expired 2026-05-24; the Pixel
//     3's expire in 2028), so a leaked or untrusted one is revoked in
//     the status list instead. A certificate not yet valid is always
//     refused; RKP certificates, renewed every few weeks, must be
//     current.
//   - The root's certificate must be valid at Now, or, when the
//     certificate under it is an expired factory one, at the instant it
//     expired (the reference checks none; Google's RSA root key is in
//     four certificates, so the 2016 one's expiry refuses nothing).
//
// One further departure, on evidence: some factory-provisioned devices
// (a Sony Xperia 10 III; the reference accepts it, as it checks no CA
// flag at all) have a batch certificate that is not a CA (cA=FALSE,
// digitalSignature) sign the leaf. That is accepted only in the factory
// shape leaf ← batch ← intermediate ← root; every other check stays. In
// an RKP chain, the attestation certificate's O=TEE or O=StrongBox must
// match the attested security level. Then no certificate of the chain
// (its root included) may be on the revocation status list, and the
// policy applies: challenge, packages and signing certificates, security
// level, bootloader and boot state.
func (v *Verifier) Verify(ctx context.Context, chain [][]byte, challenge []byte) (*Key, error) {
	k, err := v.verify(ctx, chain, challenge)
	if err != nil {
		v.fail(ctx, err)
		return nil, err
	}
	return k, nil
}

func (v *Verifier) verify(ctx context.Context, chain [][]byte, challenge []byte) (*Key, error) {
	now := v.cfg.Now()
	certs, anchor, err := v.verifyChain(chain, now)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	ext, _ := extension(leaf, oidKeyDescription)
	k, err := parseKeyDescription(ext)
	if err != nil {
		return nil, err
	}
	k.PublicKey, k.PublicKeyDER = leaf.PublicKey, leaf.RawSubjectPublicKeyInfo
	if _, ok := extension(certs[1], oidProvisioningInfo); ok {
		k.RemotelyProvisioned = true
	}
	if err := rkpLevel(certs[1], k); err != nil {
		return nil, err
	}
	if len(challenge) == 0 || subtle.ConstantTimeCompare(k.Challenge, challenge) != 1 {
		return nil, ErrChallenge
	}
	if err := v.policy(k, now); err != nil {
		return nil, err
	}
	if err := v.checkRevocation(ctx, append(certs, anchor), k); err != nil {
		return nil, err
	}
	if err := v.useChallenge(ctx, challenge, now); err != nil {
		return nil, err
	}
	return k, nil
}

// policy applies the package, signer, security level and boot checks,
// and notes the signals.
func (v *Verifier) policy(k *Key, now time.Time) error {
	if len(k.Packages) == 0 {
		return fmt.Errorf("%w: no package", ErrApplication)
	}
	for _, p := range k.Packages {
		if !v.pkgs[p.Name] {
			return fmt.Errorf("%w: package %q", ErrApplication, p.Name)
		}
	}
	if len(k.SignatureDigests) == 0 {
		return fmt.Errorf("%w: no signing certificate digest", ErrApplication)
	}
	for _, d := range k.SignatureDigests {
		if len(d) != sha256.Size || !v.digests[[32]byte(d)] {
			return fmt.Errorf("%w: signing certificate digest %s", ErrApplication, base64.StdEncoding.EncodeToString(d))
		}
	}
	// The key is only as safe as the weaker of where it was attested and
	// where KeyMint keeps it; real KeyMint never reports a mix.
	level := min(k.SecurityLevel, k.KeyMintSecurityLevel)
	levels := "attestation security level " + k.SecurityLevel.String()
	if k.KeyMintSecurityLevel != k.SecurityLevel {
		levels += ", KeyMint " + k.KeyMintSecurityLevel.String()
	}
	switch {
	case v.cfg.RequireStrongBox && level != StrongBox:
		return fmt.Errorf("%w: %s, StrongBox required", ErrSecurityLevel, levels)
	case level == Software && !v.cfg.InsecureAllowSoftwareKeys:
		return fmt.Errorf("%w: %s", ErrSecurityLevel, levels)
	case level == Software:
		k.Signals = append(k.Signals, SignalSoftwareKey)
	}
	rot := k.RootOfTrust
	switch {
	case rot == nil && k.SecurityLevel != Software:
		return fmt.Errorf("%w: no hardware-enforced rootOfTrust", ErrBootState)
	case rot == nil:
		// A software attestation has no boot state to check (allowed
		// only under InsecureAllowSoftwareKeys, signalled above).
	case rot.BootState == Failed:
		return fmt.Errorf("%w: verified boot %s", ErrBootState, rot.BootState)
	case rot.BootState != Verified && !v.cfg.InsecureAllowUnverifiedBoot:
		return fmt.Errorf("%w: verified boot %s", ErrBootState, rot.BootState)
	case !rot.DeviceLocked && !v.cfg.InsecureAllowUnlockedBootloader:
		return fmt.Errorf("%w: bootloader unlocked", ErrBootState)
	}
	if rot != nil && !rot.DeviceLocked {
		k.Signals = append(k.Signals, SignalBootloaderUnlocked)
	}
	if rot != nil && rot.BootState != Verified {
		k.Signals = append(k.Signals, SignalBootUnverified)
	}
	if patch, ok := patchDate(k.OSPatchLevel); !ok || now.Sub(patch) > v.cfg.MaxPatchAge {
		k.Signals = append(k.Signals, SignalOSOutdated)
	}
	return nil
}

// patchDate reads a YYYYMM or YYYYMMDD patch level as the first of its
// month.
func patchDate(level int) (time.Time, bool) {
	if level > 99999999 {
		return time.Time{}, false
	}
	if level > 999999 {
		level /= 100
	}
	y, m := level/100, level%100
	if y < 2000 || m < 1 || m > 12 {
		return time.Time{}, false
	}
	return time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC), true
}

// useChallenge records challenge as used until ChallengeTTL from now.
// The id is a digest under the namespace: the store never holds the
// challenge, and two apps on one store never share ids.
func (v *Verifier) useChallenge(ctx context.Context, challenge []byte, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.StoreTimeout)
	defer cancel()
	sum := sha256.Sum256(challenge)
	fresh, err := v.cfg.Nonces.Use(ctx, v.scope+base64.RawURLEncoding.EncodeToString(sum[:]), now.Add(v.cfg.ChallengeTTL))
	switch {
	case err != nil:
		return fmt.Errorf("%w: nonce store: %v", ErrStore, err)
	case !fresh:
		return ErrReplay
	}
	return nil
}

// Ready reports whether chains can be verified now: nil while a status
// list is usable (loaded, not older than StatusMaxStale), or always under
// InsecureAcceptUncheckedRevocation. Otherwise it starts a fetch when the
// spacing allows one, waits for the fetch under way until it ends or ctx
// does, and returns an [*UnavailableError] (matching [ErrVendor]) with the
// last fetch error. Then, when Config.Nonces has a Ready(ctx) error
// method (redisstore's), its answer, wrapped in [ErrStore]. It can be
// called concurrently with request handling.
func (v *Verifier) Ready(ctx context.Context) error {
	if _, err := v.statusList(ctx, 0); err != nil && !v.cfg.InsecureAcceptUncheckedRevocation {
		return err
	}
	return provider.StoreReady(ctx, "nonce store", v.cfg.Nonces)
}

// KeySetAge reports, for gauges, the status list's age since its last
// load (by Config.Now), whether one was ever loaded, and the error of the
// last fetch (nil when it succeeded). It can be called concurrently with
// request handling.
func (v *Verifier) KeySetAge() (age time.Duration, loaded bool, lastErr error) {
	return v.status.Age()
}

// SetStatusList replaces the revocation status list with one the
// application supplies (the JSON Google publishes); its age starts now.
// An invalid list is an error and the current one stays. It can be
// called concurrently with request handling.
func (v *Verifier) SetStatusList(list []byte) error {
	return v.setStatusList(list)
}

// Close stops fetching the status list and waits for a fetch under way.
// It is idempotent and returns nil.
func (v *Verifier) Close() error {
	v.status.Close()
	return nil
}

func (v *Verifier) fail(ctx context.Context, err error) {
	events.Log(ctx, v.cfg.Logger, slog.LevelWarn, "attest: android key attestation refused",
		slog.String("event", "attestation_failed"), slog.String("reason", reason(err)),
		slog.String("provider", "android_key"))
}

func reason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrMalformed, "malformed"}, {ErrChain, "chain"}, {ErrKeyDescription, "key_description"},
		{ErrRevoked, "revoked"}, {ErrChallenge, "challenge"}, {ErrReplay, "replay"},
		{ErrApplication, "application"}, {ErrSecurityLevel, "security_level"}, {ErrBootState, "boot_state"},
		{ErrVendor, "vendor"}, {ErrStore, "store"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "other"
}
