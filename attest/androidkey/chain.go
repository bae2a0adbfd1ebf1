package androidkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"embed"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"
)

// Chain size caps: a real chain is 3 to 5 certificates of under 2 KiB.
const (
	maxChain     = 6
	maxCertBytes = 16 << 10
)

// oidProvisioningInfo marks the attestation certificate of a Remote Key
// Provisioning chain.
var oidProvisioningInfo = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 1, 30}

//go:embed roots/*.pem
var rootFiles embed.FS

// GoogleRoots returns a new pool of Google's hardware attestation roots,
// the default Config.Roots: the RSA-4096 root key (subject
// SERIALNUMBER=f92009e853b6b045) in its four published certificates
// (2016, which expires 2026-05-24; 2019; 2021; 2022), so that a chain is
// trusted by the key whichever certificate the device embedded, and Key
// Attestation CA1 (ECDSA P-384), which signs RKP chains since February
// 2026. Add to it when Google publishes another root.
func GoogleRoots() *x509.CertPool {
	p := x509.NewCertPool()
	files, _ := rootFiles.ReadDir("roots")
	for _, f := range files {
		b, _ := rootFiles.ReadFile("roots/" + f.Name())
		p.AppendCertsFromPEM(b)
	}
	return p
}

// verifyChain parses chain and verifies it to the roots at now. It
// returns the certificates as given (the device's copy of the root
// included, if it sent one) and the trusted root the path ends in.
//
// The path is verified by x509 with every usual check (names,
// signatures, validity of every certificate including the leaf, CA and
// key-usage constraints, path length, critical extensions), and must be
// the given certificates in the given order. One departure, on evidence:
// factory-provisioned chains of some devices (a Sony Xperia 10 III in
// the vectors; Google's own verifier accepts it) carry a batch
// attestation certificate that is not marked as a CA (cA=FALSE,
// keyUsage digitalSignature) and yet signs the leaf. Such a chain is
// accepted only in the factory shape leaf ← batch ← intermediate ← root:
// the batch certificate verifies as an end entity under the intermediate
// and the root with every check above; it carries no KeyDescription; the
// leaf's issuer is its subject, its signature verifies with the batch key
// and the leaf is valid at now. A leaf used to sign another certificate
// (the chain extension attack) is refused: only the leaf may carry a
// KeyDescription, and no other non-CA may sign.
func (v *Verifier) verifyChain(chain [][]byte, now time.Time) (certs []*x509.Certificate, anchor *x509.Certificate, err error) {
	if len(chain) < 2 || len(chain) > maxChain {
		return nil, nil, fmt.Errorf("%w: %d certificates", ErrMalformed, len(chain))
	}
	certs = make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		if len(der) > maxCertBytes {
			return nil, nil, fmt.Errorf("%w: certificate %d of %d bytes", ErrMalformed, i, len(der))
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: certificate %d: %v", ErrMalformed, i, err)
		}
		_, hasKD := extension(c, oidKeyDescription)
		switch {
		case i == 0 && !hasKD:
			return nil, nil, fmt.Errorf("%w: the leaf has no KeyDescription", ErrKeyDescription)
		case i > 0 && hasKD:
			return nil, nil, fmt.Errorf("%w: certificate %d carries a KeyDescription (chain extended past the attested key)", ErrChain, i)
		case i > 0 && !issuerKey(c):
			// Signing keys are bounded before any signature is checked,
			// so that a crafted chain cannot buy costly verifications.
			return nil, nil, fmt.Errorf("%w: certificate %d key is not ECDSA P-256/P-384 or RSA 2048-4096", ErrChain, i)
		}
		certs[i] = c
	}
	path := certs
	if last := certs[len(certs)-1]; len(certs) > 2 && bytes.Equal(last.RawIssuer, last.RawSubject) {
		path = certs[:len(certs)-1] // the device's copy of the root: trust comes from Roots
	}
	anchor, err = v.verifyPath(path, now)
	if err == nil {
		return certs, anchor, nil
	}
	if a, ferr := v.verifyBatchPath(path, now); ferr == nil {
		return certs, a, nil
	}
	return nil, nil, fmt.Errorf("%w: %v", ErrChain, err)
}

// verifyPath verifies path[0] with path[1:] as intermediates and returns
// the root, requiring the path x509 built to be path itself.
func (v *Verifier) verifyPath(path []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range path[1:] {
		inter.AddCert(c)
	}
	// Leaves carry no extended key usage a verifier could require: trust
	// is the root, so any usage is accepted.
	chains, err := path[0].Verify(x509.VerifyOptions{
		Roots: v.cfg.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if len(c) == len(path)+1 && slices.EqualFunc(c[:len(path)], path, (*x509.Certificate).Equal) {
			return c[len(path)], nil
		}
	}
	return nil, fmt.Errorf("the chain verifies only in another order or without some certificates")
}

// verifyBatchPath is the factory-chain departure of verifyChain.
func (v *Verifier) verifyBatchPath(path []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	if len(path) != 3 {
		return nil, fmt.Errorf("not a factory chain")
	}
	leaf, batch := path[0], path[1]
	if batch.IsCA || batch.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("batch certificate shape")
	}
	if !bytes.Equal(leaf.RawIssuer, batch.RawSubject) || len(leaf.UnhandledCriticalExtensions) > 0 ||
		now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("leaf does not chain to the batch certificate")
	}
	if err := batch.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		return nil, err
	}
	return v.verifyPath(path[1:], now)
}

// issuerKey reports whether c's key is one a chain may sign with.
func issuerKey(c *x509.Certificate) bool {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256() || k.Curve == elliptic.P384()
	case *rsa.PublicKey:
		n := k.N.BitLen()
		return n >= 2048 && n <= 4096
	}
	return false
}

func extension(c *x509.Certificate, oid asn1.ObjectIdentifier) ([]byte, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Value, true
		}
	}
	return nil, false
}

// rkpLevel checks that the attestation certificate of an RKP chain
// (O=TEE or O=StrongBox) names the security level the KeyDescription
// claims, as Google's verifier does.
func rkpLevel(att *x509.Certificate, k *Key) error {
	if !k.RemotelyProvisioned || len(att.Subject.Organization) != 1 {
		return nil
	}
	want := map[string]SecurityLevel{"TEE": TrustedEnvironment, "StrongBox": StrongBox}
	if l, ok := want[att.Subject.Organization[0]]; ok && l != k.SecurityLevel {
		return fmt.Errorf("%w: attestation certificate of %s, KeyDescription claims %s", ErrChain, att.Subject.Organization[0], k.SecurityLevel)
	}
	return nil
}
