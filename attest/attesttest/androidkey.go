package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"time"
)

// AndroidCA is a test root and factory intermediate standing in for
// Google's hardware attestation root, for Android Key Attestation chains.
// Nothing here uses or imitates Google's keys: verifiers must be
// configured with [AndroidCA.Roots] to accept what it makes.
type AndroidCA struct {
	root, inter         *x509.Certificate
	rootKey, interKey   *ecdsa.PrivateKey
	notBefore, notAfter time.Time
	serial              int64
}

// NewAndroidCA makes a root and an intermediate valid from notBefore to
// notAfter. The intermediate is named, as Google's factory intermediates
// are, by a serialNumber attribute, which marks a factory chain.
func NewAndroidCA(notBefore, notAfter time.Time) (*AndroidCA, error) {
	ca := &AndroidCA{notBefore: notBefore, notAfter: notAfter, serial: 0x1000}
	var err error
	if ca.rootKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	if ca.interKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	name := pkix.Name{CommonName: "apiguard Test Android Attestation Root"}
	if ca.root, err = ca.issue(nil, nil, name, &ca.rootKey.PublicKey, true, nil, time.Time{}); err != nil {
		return nil, err
	}
	ca.inter, err = ca.issue(ca.root, ca.rootKey, pkix.Name{CommonName: "apiguard Test Android Factory CA", SerialNumber: "a91e5ca1ab1ef00d"}, &ca.interKey.PublicKey, true, nil, time.Time{})
	return ca, err
}

// Roots returns a pool with the test root, for androidkey.Config.Roots.
func (ca *AndroidCA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// Root returns the test root certificate (DER).
func (ca *AndroidCA) Root() []byte { return ca.root.Raw }

// issue signs a certificate for pub by parent (self-signed when nil),
// valid until notAfter, or the CA's notAfter when zero.
func (ca *AndroidCA) issue(parent *x509.Certificate, key *ecdsa.PrivateKey, subject pkix.Name, pub any, isCA bool, exts []pkix.Extension, notAfter time.Time) (*x509.Certificate, error) {
	ca.serial++
	end := ca.notAfter
	if !notAfter.IsZero() {
		end = notAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: subject,
		NotBefore: ca.notBefore, NotAfter: end, BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: exts,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	if parent == nil {
		parent, key = tmpl, ca.rootKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// AndroidKey describes a key to attest. Zero fields take the values of a
// healthy, current device: TEE, locked, Verified boot, recent patches.
type AndroidKey struct {
	Challenge        []byte
	Packages         []string
	PackageVersion   int64
	SignatureDigests [][]byte
	// SecurityLevel is 0 (Software), 1 (TEE, the default when 0 and
	// Software is false) or 2 (StrongBox).
	SecurityLevel int
	Software      bool // attest in software (an emulator): level 0, no rootOfTrust
	// SoftwareKeyMint claims keyMintSecurityLevel Software beside a
	// hardware attestation level: a mix real KeyMint never produces.
	SoftwareKeyMint bool
	Unlocked        bool // deviceLocked false
	BootState       int  // 0 Verified, 1 SelfSigned, 2 Unverified, 3 Failed
	// AttestationVersion defaults to 300.
	AttestationVersion int
	// OSPatchLevel (YYYYMM) defaults to 202610.
	OSPatchLevel int
	// RKP makes a Remote Key Provisioning chain: leaf ← attestation key
	// (O=TEE or O=StrongBox, with the provisioning-info extension) ←
	// "Droid CA3" ← factory intermediate ← root. RKPOrganization
	// overrides the O= of the attestation key certificate.
	RKP             bool
	RKPOrganization string
	// NonCABatch makes the batch certificate, which signs the leaf, an
	// end entity (cA=FALSE, digitalSignature), as on some real devices.
	NonCABatch bool
	// BatchNotAfter, when set, ends the validity of the certificate that
	// signs the leaf (the batch or RKP attestation key certificate), as
	// in old factory chains. Default: the CA's notAfter.
	BatchNotAfter time.Time
	// KeyDescription replaces the leaf's KeyDescription extension value.
	KeyDescription []byte
	// Purposes are the key's purposes. Default: SIGN (2).
	Purposes []int
	// RSA attests an RSA-2048 key instead of EC P-256; Attest then
	// returns no private key.
	RSA bool
	// Imported marks the key as imported into Keystore (origin IMPORTED),
	// not generated in the device.
	Imported bool
	// Serials, when set, receive the serials (lower-case hex) of the
	// chain, leaf first, root last.
	Serials *[]string
}

var (
	oidAndroidKeyDescription = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 1, 17}
	oidAndroidProvisioning   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 1, 30}
)

// Attest makes an attested P-256 signing key and its chain (DER, leaf
// first, root last, as KeyStore returns it). With k.RSA the key is
// RSA-2048 and key is nil.
func (ca *AndroidCA) Attest(k AndroidKey) (chain [][]byte, key *ecdsa.PrivateKey, err error) {
	var leafPub any
	if k.RSA {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, err
		}
		leafPub = &rk.PublicKey
	} else {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, nil, err
		}
		leafPub = &key.PublicKey
	}
	kd := k.KeyDescription
	if kd == nil {
		if kd, err = AndroidKeyDescription(k); err != nil {
			return nil, nil, err
		}
	}
	batchKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	var certs []*x509.Certificate
	parent, parentKey := ca.inter, ca.interKey
	var batchExts []pkix.Extension
	batchName := pkix.Name{SerialNumber: "apiguard-test-batch"}
	if k.RKP {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		ca3, err := ca.issue(ca.inter, ca.interKey, pkix.Name{CommonName: "Droid CA3", Organization: []string{"apiguard test"}}, &caKey.PublicKey, true, nil, time.Time{})
		if err != nil {
			return nil, nil, err
		}
		certs = append(certs, ca3)
		parent, parentKey = ca3, caKey
		org := k.RKPOrganization
		if org == "" {
			org = map[bool]string{true: "StrongBox", false: "TEE"}[k.SecurityLevel == 2]
		}
		batchName = pkix.Name{CommonName: "apiguard-test-rkp-key", Organization: []string{org}}
		batchExts = []pkix.Extension{{Id: oidAndroidProvisioning, Value: []byte{0xa1, 0x01, 0x18, 0x20}}}
	}
	batch, err := ca.issue(parent, parentKey, batchName, &batchKey.PublicKey, !k.NonCABatch, batchExts, k.BatchNotAfter)
	if err != nil {
		return nil, nil, err
	}
	certs = append([]*x509.Certificate{batch}, certs...)
	ca.serial++
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Android Keystore Key"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Date(2048, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: oidAndroidKeyDescription, Value: kd}},
	}
	leafDER, err := createSignedBy(leafTmpl, batch, leafPub, batchKey)
	if err != nil {
		return nil, nil, err
	}
	chain = [][]byte{leafDER}
	for _, c := range certs {
		chain = append(chain, c.Raw)
	}
	chain = append(chain, ca.inter.Raw, ca.root.Raw)
	if k.Serials != nil {
		*k.Serials = nil
		for _, der := range chain {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, nil, err
			}
			*k.Serials = append(*k.Serials, c.SerialNumber.Text(16))
		}
	}
	return chain, key, nil
}

// createSignedBy signs tmpl by parent's key even when parent is not a CA
// (x509.CreateCertificate does not check), as a non-CA batch key does.
func createSignedBy(tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) ([]byte, error) {
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
}

// AndroidExtend signs a new leaf carrying kd with the attested key of
// chain (as an attacker holding a genuine attested key could), and
// returns the extended chain: the chain extension attack.
func AndroidExtend(chain [][]byte, key *ecdsa.PrivateKey, kd []byte) ([][]byte, error) {
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, err
	}
	fakeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Android Keystore Key"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Date(2048, 1, 1, 0, 0, 0, 0, time.UTC),
		ExtraExtensions: []pkix.Extension{{Id: oidAndroidKeyDescription, Value: kd}},
	}
	der, err := createSignedBy(tmpl, leaf, &fakeKey.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return append([][]byte{der}, chain...), nil
}

// AndroidKeyDescription encodes the KeyDescription extension value
// (1.3.6.1.4.1.11129.2.1.17) of k.
func AndroidKeyDescription(k AndroidKey) ([]byte, error) {
	level := k.SecurityLevel
	if level == 0 && !k.Software {
		level = 1
	}
	keyMintLevel := level
	if k.SoftwareKeyMint {
		keyMintLevel = 0
	}
	version := k.AttestationVersion
	if version == 0 {
		version = 300
	}
	patch := k.OSPatchLevel
	if patch == 0 {
		patch = 202610
	}
	digests := k.SignatureDigests
	if digests == nil {
		digests = [][]byte{}
	}
	type pkgInfo struct {
		Name    []byte
		Version int64
	}
	var pkgs []pkgInfo
	for _, p := range k.Packages {
		pkgs = append(pkgs, pkgInfo{Name: []byte(p), Version: k.PackageVersion})
	}
	appID, err := asn1.Marshal(struct {
		Packages []pkgInfo `asn1:"set"`
		Digests  [][]byte  `asn1:"set"`
	}{pkgs, digests})
	if err != nil {
		return nil, err
	}
	sw, err := authList(
		tagged{701, int64(1_790_000_000_000)},
		tagged{709, appID},
	)
	if err != nil {
		return nil, err
	}
	purposes := asn1Set{2}
	if k.Purposes != nil {
		purposes = asn1Set(k.Purposes)
	}
	origin := 0
	if k.Imported {
		origin = 2
	}
	hwTags := []tagged{{1, purposes}, {2, 3}, {3, 256}, {10, 1}}
	if k.RSA {
		hwTags = []tagged{{1, purposes}, {2, 1}, {3, 2048}, {200, 65537}}
	}
	hwTags = append(hwTags, tagged{503, asn1.RawValue{Tag: asn1.TagNull}}, tagged{702, origin})
	if !k.Software {
		hwTags = append(hwTags,
			tagged{704, struct {
				Key    []byte
				Locked bool
				State  asn1.Enumerated
				Hash   []byte
			}{make([]byte, 32), !k.Unlocked, asn1.Enumerated(k.BootState), make([]byte, 32)}},
			tagged{705, 160000}, tagged{706, patch}, tagged{718, patch*100 + 5}, tagged{719, patch*100 + 5})
	}
	hw, err := authList(hwTags...)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		AttestationVersion int
		AttestationLevel   asn1.Enumerated
		KeyMintVersion     int
		KeyMintLevel       asn1.Enumerated
		Challenge          []byte
		UniqueID           []byte
		Software, Hardware asn1.RawValue
	}{version, asn1.Enumerated(level), version, asn1.Enumerated(keyMintLevel), k.Challenge, []byte{}, sw, hw})
}

// tagged is one [tag] EXPLICIT value of an AuthorizationList.
type tagged struct {
	tag int
	v   any
}

// asn1Set is a SET OF INTEGER.
type asn1Set []int

func authList(tags ...tagged) (asn1.RawValue, error) {
	var body []byte
	for _, t := range tags {
		var inner []byte
		var err error
		if s, ok := t.v.(asn1Set); ok {
			inner, err = asn1.MarshalWithParams([]int(s), "set")
		} else {
			inner, err = asn1.Marshal(t.v)
		}
		if err != nil {
			return asn1.RawValue{}, err
		}
		el, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: t.tag, IsCompound: true, Bytes: inner})
		if err != nil {
			return asn1.RawValue{}, err
		}
		body = append(body, el...)
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body}, nil
}
