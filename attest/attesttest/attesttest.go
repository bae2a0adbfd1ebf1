// Package attesttest mints synthetic App Attest attestations and
// assertions, signed by a test root of its own, for tests and demos where
// no real device is at hand. Nothing here uses or imitates Apple's keys:
// verifiers must be configured with [CA.Roots] to accept what it makes.
package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/big"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// CA is a test certificate authority standing in for Apple's App
// Attestation root and intermediate.
type CA struct {
	root, inter         *x509.Certificate
	rootKey, interKey   *ecdsa.PrivateKey
	notBefore, notAfter time.Time
}

// NewCA makes a root and an intermediate valid from notBefore to notAfter.
func NewCA(notBefore, notAfter time.Time) (*CA, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "apiguard Test App Attestation Root CA"},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "apiguard Test App Attestation CA 1"},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, &interKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	inter, _ := x509.ParseCertificate(interDER)
	return &CA{root: root, inter: inter, rootKey: rootKey, interKey: interKey, notBefore: notBefore, notAfter: notAfter}, nil
}

// Roots returns a pool with the test root, for appattest.Config.Roots.
func (ca *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// Root returns the test root certificate (DER), for a PEM roots file.
func (ca *CA) Root() []byte { return ca.root.Raw }

// Device is an app instance with its App Attest key.
type Device struct {
	KeyID   string // standard base64, as DCAppAttestService returns it
	Key     *ecdsa.PrivateKey
	AppID   string
	counter uint32
}

// NewDevice makes an app instance with a new key for appID.
func NewDevice(appID string) (*Device, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	point, err := k.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(point)
	return &Device{KeyID: base64.StdEncoding.EncodeToString(sum[:]), Key: k, AppID: appID}, nil
}

// AttestOptions change what an attestation says, to mint invalid ones.
type AttestOptions struct {
	// Environment is "development" or "production". Default: production.
	Environment string
	// AppID overrides the device's App ID in rpIdHash.
	AppID string
	// Counter is the authenticator counter. Default: 0.
	Counter uint32
	// OSVersion goes in the leaf's 1.2.840.113635.100.8.7. Default: "18.1".
	OSVersion string
	// AppleEKU adds an Apple-specific extended key usage to the leaf, as
	// Apple's leaves issued since January 2026 carry.
	AppleEKU bool
	// TrailingExtensions appends CBOR after the credential data without
	// setting the extensions flag, as iOS and macOS 27 do.
	TrailingExtensions bool
	// LeafNotAfter overrides the leaf's expiry. Default: the CA's.
	LeafNotAfter time.Time
}

var (
	oidNonce     = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 8, 2}
	oidOSVersion = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 8, 7}
	oidAppleEKU  = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 4, 99, 1}
)

// Attest returns an attestation object for clientDataHash.
func (ca *CA) Attest(d *Device, clientDataHash []byte, opt AttestOptions) ([]byte, error) {
	env := opt.Environment
	if env == "" {
		env = "production"
	}
	var aaguid [16]byte
	switch env {
	case "development":
		copy(aaguid[:], "appattestdevelop")
	case "production":
		copy(aaguid[:], "appattest")
	default:
		return nil, fmt.Errorf("attesttest: unknown environment %q", env)
	}
	appID := d.AppID
	if opt.AppID != "" {
		appID = opt.AppID
	}
	point, err := d.Key.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	kid, _ := base64.StdEncoding.DecodeString(d.KeyID)
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: point[1:33], -3: point[33:]})
	if err != nil {
		return nil, err
	}
	rp := sha256.Sum256([]byte(appID))
	authData := append([]byte{}, rp[:]...)
	authData = append(authData, 0x40)
	authData = binary.BigEndian.AppendUint32(authData, opt.Counter)
	authData = append(authData, aaguid[:]...)
	authData = binary.BigEndian.AppendUint16(authData, uint16(len(kid)&0xffff)) // #nosec G115 -- 32 bytes
	authData = append(authData, kid...)
	authData = append(authData, cose...)
	if opt.TrailingExtensions {
		ext, _ := cbor.Marshal(map[string]any{"apple_bundle_version_01": "5.2", "apple_validation_category_01": 1})
		authData = append(authData, ext...)
	}
	h := sha256.New()
	h.Write(authData)
	h.Write(clientDataHash)
	nonceExt, err := asn1.Marshal(struct {
		Nonce []byte `asn1:"tag:1,explicit"`
	}{h.Sum(nil)})
	if err != nil {
		return nil, err
	}
	osv := opt.OSVersion
	if osv == "" {
		osv = "18.1"
	}
	osExt, err := asn1.Marshal(struct {
		Version []byte `asn1:"tag:1400,explicit"`
	}{[]byte(osv)})
	if err != nil {
		return nil, err
	}
	notAfter := ca.notAfter
	if !opt.LeafNotAfter.IsZero() {
		notAfter = opt.LeafNotAfter
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: d.KeyID},
		NotBefore: ca.notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: oidNonce, Value: nonceExt}, {Id: oidOSVersion, Value: osExt}},
	}
	if opt.AppleEKU {
		leafTmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{oidAppleEKU}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca.inter, &d.Key.PublicKey, ca.interKey)
	if err != nil {
		return nil, err
	}
	return cbor.Marshal(map[string]any{
		"fmt":      "apple-appattest",
		"attStmt":  map[string]any{"x5c": [][]byte{leafDER, ca.inter.Raw}, "receipt": []byte("test receipt")},
		"authData": authData,
	})
}

// Assert returns an assertion of clientData, with the device's next
// counter.
func (d *Device) Assert(clientData []byte) ([]byte, error) {
	d.counter++
	return d.AssertWithCounter(clientData, d.counter)
}

// AssertWithCounter returns an assertion with the given counter.
func (d *Device) AssertWithCounter(clientData []byte, counter uint32) ([]byte, error) {
	rp := sha256.Sum256([]byte(d.AppID))
	authData := append([]byte{}, rp[:]...)
	authData = append(authData, 0x40) // real devices set the flag without credential data
	authData = binary.BigEndian.AppendUint32(authData, counter)
	cdh := sha256.Sum256(clientData)
	h := sha256.New()
	h.Write(authData)
	h.Write(cdh[:])
	digest := sha256.Sum256(h.Sum(nil))
	sig, err := ecdsa.SignASN1(rand.Reader, d.Key, digest[:])
	if err != nil {
		return nil, err
	}
	return cbor.Marshal(map[string]any{"signature": sig, "authenticatorData": authData})
}
