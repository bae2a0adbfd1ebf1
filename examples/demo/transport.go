package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apiguard/apiguard/servertls"
)

// pki is the demo's throwaway public-key infrastructure, made at start:
// a root CA, an intermediate CA and a leaf for the loopback address,
// written to a temporary directory that close removes. The apps pin the
// intermediate's key (current) and a spare key held offline (backup).
type pki struct {
	dir                       string
	certFile, keyFile, caFile string
	roots                     *x509.CertPool
	chain                     []*x509.Certificate // as served: leaf, intermediate
	pins                      servertls.PinSet
}

func newPKI(ip net.IP) (*pki, error) {
	now := time.Now()
	root, rootKey, err := newCert(nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "apiguard demo root CA (throwaway)"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
	})
	if err != nil {
		return nil, err
	}
	inter, interKey, err := newCert(root, rootKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "apiguard demo intermediate CA"}, IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
	})
	if err != nil {
		return nil, err
	}
	leaf, leafKey, err := newCert(inter, interKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "apiguard demo API"}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{ip},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour),
	})
	if err != nil {
		return nil, err
	}
	spare, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // the backup key, "offline"
	if err != nil {
		return nil, err
	}
	spareSPKI, err := x509.MarshalPKIXPublicKey(&spare.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spareSPKI)
	dir, err := os.MkdirTemp("", "apiguard-demo-pki-")
	if err != nil {
		return nil, err
	}
	p := &pki{
		dir: dir, certFile: filepath.Join(dir, "chain.pem"), keyFile: filepath.Join(dir, "key.pem"), caFile: filepath.Join(dir, "ca.pem"),
		roots: x509.NewCertPool(), chain: []*x509.Certificate{leaf, inter},
		pins: servertls.PinSet{Version: 1, Current: []string{servertls.SPKIPin(inter)}, Backup: []string{base64.StdEncoding.EncodeToString(sum[:])}},
	}
	p.roots.AddCert(root)
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		p.close()
		return nil, err
	}
	pemOf := func(typ string, der ...[]byte) []byte {
		var out []byte
		for _, d := range der {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
		}
		return out
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{p.certFile, pemOf("CERTIFICATE", leaf.Raw, inter.Raw)},
		{p.keyFile, pemOf("EC PRIVATE KEY", keyDER)},
		{p.caFile, pemOf("CERTIFICATE", root.Raw)},
	} {
		if err := os.WriteFile(f.name, f.data, 0o600); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func (p *pki) close() { _ = os.RemoveAll(p.dir) }

// newCert makes a P-256 key and a certificate for it from tmpl, signed by
// parent (self-signed when parent is nil).
func newCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, k
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, k, err
}

// pinLine says what servertls checked at start: the served chain
// against the pins the apps carry.
func (p *pki) pinLine() string {
	return fmt.Sprintf("pins checked at start: the served chain matches the %s pin %s (intermediate CA); backup pin %s (a spare key held offline)",
		p.pins.Match(p.chain), p.pins.Current[0], p.pins.Backup[0])
}

// transportAttacks are the rows of the transport: clients that the
// server must refuse before any HTTP is served, and plain HTTP on both
// ports. They run only over HTTPS (c.cleartext is set).
func (c *client) transportAttacks(ctx context.Context) []result {
	if c.cleartext == "" {
		return nil
	}
	host := strings.TrimPrefix(c.base, "https://")
	return []result{
		c.handshake(ctx, "old TLS client (TLS 1.0 and 1.1 only)", host, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}), // #nosec G402 -- the attack: an old client the server must refuse
		c.handshake(ctx, "TLS 1.2 client offering only CBC suites", host, &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}), // #nosec G402 -- the attack: CBC-only suites the server must refuse
		c.plainToTLS(ctx, host),
		c.do(ctx, "cleartext HTTP to the plain port", true, 403, call{method: "GET", path: "/v1/orders", base: c.cleartext}),
	}
}

// handshake dials the TLS port with a client limited by cfg: the server
// must refuse the handshake with an alert.
func (c *client) handshake(ctx context.Context, name, host string, cfg *tls.Config) result {
	res := result{name: name, attack: true, id: noID}
	cfg.RootCAs = c.roots
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err == nil {
		_ = conn.Close()
		res.err = fmt.Errorf("handshake succeeded with %s", tls.VersionName(conn.(*tls.Conn).ConnectionState().Version))
		return res
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		res.err = err
		return res
	}
	res.reason = "handshake refused: " + strings.TrimPrefix(op.Err.Error(), "tls: ")
	return res
}

// plainToTLS speaks plain HTTP to the TLS port: net/http answers 400
// before anything is served, and servertls counts reason not_tls.
func (c *client) plainToTLS(ctx context.Context, host string) result {
	res := result{name: "plain HTTP to the HTTPS port", attack: true, expect: http.StatusBadRequest, id: noID}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+host+"/v1/orders", nil)
	if err != nil {
		res.err = err
		return res
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		res.err = err
		return res
	}
	_ = resp.Body.Close()
	res.status = resp.StatusCode
	res.reason = "not TLS: nothing served"
	if resp.Header.Get("X-Request-ID") != "" {
		res.err = errors.New("the request reached the API")
	}
	return res
}

// noID stands in the correlation-ID column for a request refused before
// telemetry saw it.
const noID = "-"
