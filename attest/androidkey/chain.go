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
	if anchor, err = v.verifyPath(path, now); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrChain, err)
	}
	return certs, anchor, nil
}

// verifyPath verifies path, leaf first up to the certificate a root
// issued, link by link as Google's reference verifier does, and returns
// the root of Config.Roots that issued its top certificate. The rules,
// and the evidence for each departure from x509's, are in [Verifier.Verify].
func (v *Verifier) verifyPath(path []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	top := path[len(path)-1]
	_, rkp := extension(path[1], oidProvisioningInfo)
	factory := !rkp && top.Subject.SerialNumber != ""
	for i, c := range path {
		if len(c.UnhandledCriticalExtensions) > 0 {
			return nil, fmt.Errorf("certificate %d has an unhandled critical extension", i)
		}
		if i == 0 {
			continue // the leaf's validity is set on the device: not checked
		}
		switch {
		case now.Before(c.NotBefore):
			return nil, fmt.Errorf("certificate %d not valid before %s", i, c.NotBefore.Format(time.RFC3339))
		case now.After(c.NotAfter) && !factory:
			return nil, fmt.Errorf("certificate %d expired %s", i, c.NotAfter.Format(time.RFC3339))
		}
		child := path[i-1]
		if !bytes.Equal(child.RawIssuer, c.RawSubject) {
			return nil, fmt.Errorf("certificate %d is not the issuer of certificate %d", i, i-1)
		}
		if err := checkIssued(child, c, factory && i == 1 && len(path) == 3); err != nil {
			return nil, fmt.Errorf("certificate %d signed by certificate %d: %v", i-1, i, err)
		}
		if c.BasicConstraintsValid && (c.MaxPathLen > 0 || c.MaxPathLenZero) && i-1 > c.MaxPathLen {
			return nil, fmt.Errorf("certificate %d allows %d intermediates below it", i, c.MaxPathLen)
		}
	}
	// The root's certificate is checked at now, or at the instant an
	// expired factory certificate under it was last valid.
	at := now
	if now.After(top.NotAfter) {
		at = top.NotAfter
	}
	chains, err := top.Verify(x509.VerifyOptions{
		Roots: v.cfg.Roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		root := c[len(c)-1]
		if len(c) == 2 && !(root.BasicConstraintsValid && (root.MaxPathLen > 0 || root.MaxPathLenZero) && len(path)-1 > root.MaxPathLen) {
			return root, nil
		}
	}
	return nil, fmt.Errorf("no root issued the top certificate within its path length")
}

// checkIssued checks that parent signed child as a CA (cA=TRUE,
// keyCertSign), or, when batch, as the non-CA factory batch certificate
// (cA=FALSE, digitalSignature) of [Verifier.Verify].
func checkIssued(child, parent *x509.Certificate, batch bool) error {
	if !batch || parent.IsCA || parent.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return child.CheckSignatureFrom(parent)
	}
	switch child.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1:
		return x509.InsecureAlgorithmError(child.SignatureAlgorithm)
	}
	return parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature)
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
