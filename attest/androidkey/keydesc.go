package androidkey

import (
	"encoding/asn1"
	"fmt"
	"time"
)

// oidKeyDescription is the Android Key Attestation extension.
var oidKeyDescription = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 1, 17}

// Size caps of the KeyDescription: a real one is 1–3 KiB.
const (
	maxKeyDescription = 16 << 10 // bytes of the extension
	maxSetSize        = 32       // elements of a SET OF INTEGER (purposes, digests …)
	maxPackages       = 64       // package infos of attestationApplicationId
	maxDigests        = 32       // signing-certificate digests of attestationApplicationId
	maxTags           = 128      // entries of one AuthorizationList
	maxChallenge      = 128      // KeyMint refuses longer challenges
)

// SecurityLevel is where a key lives, or where the attestation was made.
type SecurityLevel int

// Security levels, as KeyMint numbers them.
const (
	Software           SecurityLevel = 0
	TrustedEnvironment SecurityLevel = 1 // the TEE
	StrongBox          SecurityLevel = 2 // a discrete secure element
)

// String returns the level's name in KeyMint's schema ("StrongBox").
func (s SecurityLevel) String() string {
	switch s {
	case Software:
		return "Software"
	case TrustedEnvironment:
		return "TrustedEnvironment"
	case StrongBox:
		return "StrongBox"
	}
	return fmt.Sprintf("SecurityLevel(%d)", int(s))
}

// BootState is the verified boot state of rootOfTrust.
type BootState int

// Verified boot states, as KeyMint numbers them.
const (
	Verified   BootState = 0 // locked, booted an image signed by the OEM key
	SelfSigned BootState = 1 // locked, booted an image signed by a user key
	Unverified BootState = 2 // unlocked: any image
	Failed     BootState = 3 // verification failed
)

// String returns the state's name in KeyMint's schema ("Verified").
func (b BootState) String() string {
	switch b {
	case Verified:
		return "Verified"
	case SelfSigned:
		return "SelfSigned"
	case Unverified:
		return "Unverified"
	case Failed:
		return "Failed"
	}
	return fmt.Sprintf("BootState(%d)", int(b))
}

// RootOfTrust is the device's boot state as the secure hardware saw it.
type RootOfTrust struct {
	// VerifiedBootKey is the digest of the key that verified the boot
	// image (all zeros on some unlocked devices).
	VerifiedBootKey []byte
	DeviceLocked    bool
	BootState       BootState
	// VerifiedBootHash is the digest of the verified boot data; nil
	// before attestation version 3.
	VerifiedBootHash []byte
}

// PackageInfo is a package of attestationApplicationId.
type PackageInfo struct {
	Name    string
	Version int64
}

// Authorizations is one AuthorizationList of the KeyDescription: what
// KeyMint enforces in secure hardware, or what Android enforces in
// software. An absent integer is 0 (Origin: -1), an absent list nil.
type Authorizations struct {
	// Tags are the tag numbers present, in order, known or not.
	Tags      []int
	Purposes  []int // 2 = SIGN, 3 = VERIFY, 0/1 = ENCRYPT/DECRYPT, …
	Algorithm int   // 1 = RSA, 3 = EC, 4 = ML-DSA (attestation 500), …
	KeySize   int
	Digests   []int
	// NoAuthRequired: the key is usable without user authentication.
	NoAuthRequired bool
	// UsageCountLimit caps the uses of the key (0: none).
	UsageCountLimit int64
	CreationTime    time.Time // zero when absent
	Origin          int       // 0 = generated in the secure hardware; -1 when absent
	RootOfTrust     *RootOfTrust
	OSVersion       int // 130000 = Android 13
	OSPatchLevel    int // YYYYMM
	// VendorPatchLevel and BootPatchLevel are YYYYMMDD (YYYYMM on some
	// older devices).
	VendorPatchLevel, BootPatchLevel int
	// Packages and SignatureDigests are attestationApplicationId (in the
	// software-enforced list, filled in by Android, not by KeyMint).
	Packages         []PackageInfo
	SignatureDigests [][]byte
	ModuleHash       []byte // attestation 400+
}

// keyDescription is the extension's outer SEQUENCE. encoding/asn1
// tolerates elements after the last field, as later versions may append.
type keyDescription struct {
	AttestationVersion       int
	AttestationSecurityLevel asn1.Enumerated
	KeyMintVersion           int
	KeyMintSecurityLevel     asn1.Enumerated
	Challenge                []byte
	UniqueID                 []byte
	SoftwareEnforced         asn1.RawValue
	HardwareEnforced         asn1.RawValue
}

type rootOfTrust struct {
	VerifiedBootKey   []byte
	DeviceLocked      bool
	VerifiedBootState asn1.Enumerated
	VerifiedBootHash  []byte `asn1:"optional"`
}

type appID struct {
	Packages []packageInfo `asn1:"set"`
	Digests  [][]byte      `asn1:"set"`
}

type packageInfo struct {
	Name    []byte
	Version int64
}

// parseKeyDescription parses the KeyDescription extension value into a
// Key (without its public key). Every error wraps ErrKeyDescription.
func parseKeyDescription(b []byte) (*Key, error) {
	bad := func(format string, a ...any) (*Key, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrKeyDescription}, a...)...)
	}
	if len(b) > maxKeyDescription {
		return bad("extension of %d bytes", len(b))
	}
	var kd keyDescription
	rest, err := asn1.Unmarshal(b, &kd)
	if err != nil {
		return bad("%v", err)
	}
	if len(rest) > 0 {
		return bad("trailing data")
	}
	if kd.AttestationVersion < 1 || kd.KeyMintVersion < 0 {
		return bad("attestation version %d", kd.AttestationVersion)
	}
	level := func(e asn1.Enumerated) (SecurityLevel, bool) {
		return SecurityLevel(e), e >= 0 && e <= 2
	}
	al, ok1 := level(kd.AttestationSecurityLevel)
	kl, ok2 := level(kd.KeyMintSecurityLevel)
	if !ok1 || !ok2 {
		return bad("security level %d/%d", kd.AttestationSecurityLevel, kd.KeyMintSecurityLevel)
	}
	if len(kd.Challenge) > maxChallenge {
		return bad("challenge of %d bytes", len(kd.Challenge))
	}
	sw, err := parseAuthorizations(kd.SoftwareEnforced)
	if err != nil {
		return bad("softwareEnforced: %v", err)
	}
	hw, err := parseAuthorizations(kd.HardwareEnforced)
	if err != nil {
		return bad("hardwareEnforced: %v", err)
	}
	k := &Key{
		AttestationVersion: kd.AttestationVersion, SecurityLevel: al,
		KeyMintVersion: kd.KeyMintVersion, KeyMintSecurityLevel: kl,
		Challenge: kd.Challenge, UniqueID: kd.UniqueID,
		Hardware: *hw, Software: *sw,
	}
	k.resolve()
	return k, nil
}

// parseAuthorizations parses an AuthorizationList: a SEQUENCE of
// [tag] EXPLICIT values. Tags are read one by one, so that an unknown tag
// anywhere is skipped without shifting the known ones; a repeated tag is
// refused (two rootOfTrust would be ambiguous).
func parseAuthorizations(raw asn1.RawValue) (*Authorizations, error) {
	if raw.Class != asn1.ClassUniversal || raw.Tag != asn1.TagSequence || !raw.IsCompound {
		return nil, fmt.Errorf("not a SEQUENCE")
	}
	a := &Authorizations{Origin: -1}
	seen := map[int]bool{}
	rest := raw.Bytes
	for len(rest) > 0 {
		var e asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &e); err != nil {
			return nil, err
		}
		if e.Class != asn1.ClassContextSpecific || !e.IsCompound {
			return nil, fmt.Errorf("element is not an explicit context tag")
		}
		if seen[e.Tag] {
			return nil, fmt.Errorf("tag %d repeated", e.Tag)
		}
		if len(seen) == maxTags {
			return nil, fmt.Errorf("more than %d tags", maxTags)
		}
		seen[e.Tag] = true
		a.Tags = append(a.Tags, e.Tag)
		if err := a.set(e.Tag, e.Bytes); err != nil {
			return nil, fmt.Errorf("tag %d: %w", e.Tag, err)
		}
	}
	return a, nil
}

// one unmarshals exactly one DER value of b into v.
func one(b []byte, v any, params string) error {
	rest, err := asn1.UnmarshalWithParams(b, v, params)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// intSet reads a SET OF INTEGER of at most maxSetSize elements.
func intSet(b []byte) ([]int, error) {
	var v []int
	if err := one(b, &v, "set"); err != nil {
		return nil, err
	}
	if len(v) > maxSetSize {
		return nil, fmt.Errorf("set of %d elements", len(v))
	}
	return v, nil
}

// set stores the value of one tag; unknown tags are ignored.
func (a *Authorizations) set(tag int, b []byte) error {
	var err error
	switch tag {
	case 1:
		a.Purposes, err = intSet(b)
	case 2:
		err = one(b, &a.Algorithm, "")
	case 3:
		err = one(b, &a.KeySize, "")
	case 5:
		a.Digests, err = intSet(b)
	case 405:
		err = one(b, &a.UsageCountLimit, "")
	case 503:
		var n asn1.RawValue
		if err = one(b, &n, ""); err == nil && (n.Class != asn1.ClassUniversal || n.Tag != asn1.TagNull || len(n.Bytes) > 0) {
			err = fmt.Errorf("not NULL")
		}
		a.NoAuthRequired = err == nil
	case 701:
		var ms int64
		if err = one(b, &ms, ""); err == nil {
			a.CreationTime = time.UnixMilli(ms).UTC()
		}
	case 702:
		err = one(b, &a.Origin, "")
	case 704:
		var r rootOfTrust
		if err = one(b, &r, ""); err == nil {
			if r.VerifiedBootState < 0 || r.VerifiedBootState > 3 {
				return fmt.Errorf("verified boot state %d", r.VerifiedBootState)
			}
			a.RootOfTrust = &RootOfTrust{VerifiedBootKey: r.VerifiedBootKey, DeviceLocked: r.DeviceLocked,
				BootState: BootState(r.VerifiedBootState), VerifiedBootHash: r.VerifiedBootHash}
		}
	case 705:
		err = one(b, &a.OSVersion, "")
	case 706:
		err = one(b, &a.OSPatchLevel, "")
	case 709:
		err = a.setAppID(b)
	case 718:
		err = one(b, &a.VendorPatchLevel, "")
	case 719:
		err = one(b, &a.BootPatchLevel, "")
	case 724:
		err = one(b, &a.ModuleHash, "")
	}
	return err
}

// setAppID reads attestationApplicationId: an OCTET STRING holding the
// DER of SEQUENCE { SET OF AttestationPackageInfo, SET OF OCTET STRING }.
func (a *Authorizations) setAppID(b []byte) error {
	var der []byte
	if err := one(b, &der, ""); err != nil {
		return err
	}
	var id appID
	if err := one(der, &id, ""); err != nil {
		return fmt.Errorf("attestationApplicationId: %w", err)
	}
	if len(id.Packages) > maxPackages || len(id.Digests) > maxDigests {
		return fmt.Errorf("attestationApplicationId of %d packages and %d digests", len(id.Packages), len(id.Digests))
	}
	a.Packages = make([]PackageInfo, len(id.Packages))
	for i, p := range id.Packages {
		a.Packages[i] = PackageInfo{Name: string(p.Name), Version: p.Version}
	}
	a.SignatureDigests = id.Digests
	return nil
}
