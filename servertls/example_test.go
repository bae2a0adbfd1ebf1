package servertls_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/apiguard/apiguard/servertls"
)

// certFiles writes a throwaway self-signed ECDSA P-256 certificate and
// returns its files and its SPKI pin.
func certFiles(dir string) (certFile, keyFile, pin string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api.example"},
		DNSNames: []string{"api.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	kb, _ := x509.MarshalECPrivateKey(k)
	certFile, keyFile = filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	leaf, _ := x509.ParseCertificate(der)
	return certFile, keyFile, servertls.SPKIPin(leaf)
}

const backupPin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" // a key kept offline

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ExampleNew() {
	dir, _ := os.MkdirTemp("", "servertls")
	defer os.RemoveAll(dir)
	certFile, keyFile, pin := certFiles(dir)
	g, err := servertls.New(servertls.Config{
		Profile:  servertls.Modern,
		CertFile: certFile, KeyFile: keyFile,
		Pins:   servertls.PinSet{Version: 1, Current: []string{pin}, Backup: []string{backupPin}},
		Logger: quiet(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	c := g.TLSConfig()
	fmt.Println(c.MinVersion == tls.VersionTLS13, c.CurvePreferences)
	// Serve it: srv.Serve(g.Listener(ln)), with srv.Handler = g.Handler(mux).
	// Output: true [X25519MLKEM768 X25519 P256]
}

// A chain that no pin of the shipped apps matches is refused at start.
func ExampleNew_pinMismatch() {
	dir, _ := os.MkdirTemp("", "servertls")
	defer os.RemoveAll(dir)
	certFile, keyFile, _ := certFiles(dir)
	_, err := servertls.New(servertls.Config{
		CertFile: certFile, KeyFile: keyFile,
		Pins: servertls.PinSet{Version: 1, Current: []string{"r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E="}, Backup: []string{backupPin}},
	})
	fmt.Println(errors.Is(err, servertls.ErrPinMismatch))
	// Output: true
}

// An attacker on the network path, or a client, forges X-Forwarded-Proto
// over plain HTTP: only the configured load balancers are believed.
func ExampleGuard_Handler() {
	dir, _ := os.MkdirTemp("", "servertls")
	defer os.RemoveAll(dir)
	certFile, keyFile, _ := certFiles(dir)
	g, _ := servertls.New(servertls.Config{
		CertFile: certFile, KeyFile: keyFile,
		HSTS:           servertls.HSTS{IncludeSubDomains: true},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		ProxyHeader:    servertls.HeaderXForwardedProto,
		Logger:         quiet(),
	})
	defer g.Close()
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "orders") }))

	forged := httptest.NewRequest(http.MethodPost, "http://api.example/orders", nil)
	forged.RemoteAddr = "203.0.113.7:51000"
	forged.Header.Set("X-Forwarded-Proto", "https")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, forged)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))

	viaLB := httptest.NewRequest(http.MethodPost, "http://api.example/orders", nil)
	viaLB.RemoteAddr = "10.1.2.3:40000"
	viaLB.Header.Set("X-Forwarded-Proto", "https")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, viaLB)
	fmt.Println(rec.Code, rec.Header().Get("Strict-Transport-Security"), rec.Body.String())
	// Output:
	// 403 application/problem+json
	// 200 max-age=63072000; includeSubDomains orders
}

// The apps fetch the pin set as a JWS signed with a key they ship, and
// verify it, no older than the set they hold, before they trust a new pin.
func ExampleGuard_PinHandler() {
	dir, _ := os.MkdirTemp("", "servertls")
	defer os.RemoveAll(dir)
	certFile, keyFile, pin := certFiles(dir)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	g, _ := servertls.New(servertls.Config{
		CertFile: certFile, KeyFile: keyFile,
		Pins:          servertls.PinSet{Version: 7, Current: []string{pin}, Backup: []string{backupPin}},
		PinSigningKey: priv,
		Now:           func() time.Time { return now },
		Logger:        quiet(),
	})
	defer g.Close()
	rec := httptest.NewRecorder()
	g.PinHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/apiguard-pins", nil))

	doc, err := servertls.VerifyPinDocument(rec.Body.Bytes(), pub, now, 7)
	fmt.Println(rec.Header().Get("Content-Type"), err, doc.Pins.Version, doc.Pins.Backup[0] == backupPin)
	tampered := append([]byte(nil), rec.Body.Bytes()...)
	tampered[len(tampered)/2] ^= 1
	_, err = servertls.VerifyPinDocument(tampered, pub, now, 7)
	fmt.Println(errors.Is(err, servertls.ErrPinDocument))
	// Output:
	// application/jose <nil> 7 true
	// true
}
