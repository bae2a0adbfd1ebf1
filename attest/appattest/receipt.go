package appattest

import (
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/smallstep/pkcs7"
)

// appleRootG3 is Apple Root CA - G3, the root of App Attest receipts'
// signers (SHA-256
// 63:34:3A:BF:B8:9A:6A:03:EB:B5:7E:9B:3F:5F:A7:BE:7C:4F:5C:75:6F:30:17:B3:A8:C4:88:C3:65:3E:91:79).
//
//go:embed apple_root_ca_g3.pem
var appleRootG3 []byte

func appleRootCAG3() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(appleRootG3)
	return p
}

// ErrReceipt: the receipt does not parse or its signature or chain does
// not verify.
var ErrReceipt = errors.New("attest: receipt not valid")

// Receipt is an App Attest receipt: what Apple's fraud-metric service
// knows about an attested key.
type Receipt struct {
	// Type is ATTEST (the receipt in the attestation) or RECEIPT (one
	// refreshed from Apple's server).
	Type        string
	AppID       string
	Environment string // "sandbox" or "production"
	// AttestedCertificate is the leaf certificate of the attestation.
	AttestedCertificate []byte
	ClientHash          []byte
	Token               []byte
	CreatedAt           time.Time
	NotBefore           time.Time
	ExpiresAt           time.Time
	// RiskMetric is Apple's approximate count of attested keys for this
	// device and app over the past 30 days (RECEIPT only; 0 when absent):
	// a high number suggests a farm.
	RiskMetric int
}

// ParseReceipt verifies a receipt (CMS SignedData, BER) against roots
// (nil: Apple Root CA - G3, embedded in this package) at time at, and returns its
// fields. Receipt signers are short-lived: verify a stored receipt at the
// time it was received.
func ParseReceipt(receipt []byte, roots *x509.CertPool, at time.Time) (*Receipt, error) {
	if len(receipt) == 0 || len(receipt) > 64<<10 {
		return nil, fmt.Errorf("%w: size", ErrReceipt)
	}
	if roots == nil {
		roots = appleRootCAG3()
	}
	p7, err := pkcs7.Parse(receipt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	if err := p7.VerifyWithChainAtTime(roots, at); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	var fields []struct {
		Type    int
		Version int
		Value   []byte
	}
	if rest, err := asn1.UnmarshalWithParams(p7.Content, &fields, "set"); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: payload", ErrReceipt)
	}
	r := &Receipt{}
	for _, f := range fields {
		v := string(f.Value)
		switch f.Type {
		case 2:
			r.AppID = v
		case 3:
			r.AttestedCertificate = f.Value
		case 4:
			r.ClientHash = f.Value
		case 5:
			r.Token = f.Value
		case 6:
			r.Type = v
		case 7:
			r.Environment = v
		case 12:
			r.CreatedAt, _ = time.Parse(time.RFC3339Nano, v)
		case 17:
			r.RiskMetric, _ = strconv.Atoi(v)
		case 19:
			r.NotBefore, _ = time.Parse(time.RFC3339Nano, v)
		case 21:
			r.ExpiresAt, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	if r.Type == "" || r.AppID == "" {
		return nil, fmt.Errorf("%w: required fields missing", ErrReceipt)
	}
	return r, nil
}
