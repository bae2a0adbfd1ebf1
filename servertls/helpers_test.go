package servertls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/clientip"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// testPKI is a throwaway root and intermediate CA.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	pool              *x509.CertPool
	rootPEM           []byte
}

// nextSerial returns a random 128-bit serial number, as CAs issue them.
func nextSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newKey(t), interKey: newKey(t)}
	now := time.Now()
	rootT := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "apiguard test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, rootT, rootT, &p.rootKey.PublicKey, p.rootKey)
	require.NoError(t, err)
	p.root, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	interT := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "apiguard test intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err = x509.CreateCertificate(rand.Reader, interT, p.root, &p.interKey.PublicKey, p.rootKey)
	require.NoError(t, err)
	p.inter, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.root)
	p.rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.root.Raw})
	return p
}

// leaf issues a 90-day leaf for localhost and 127.0.0.1 with key k and
// returns the PEM chain (leaf, intermediate) and the PEM key.
func (p *testPKI) leaf(t *testing.T, k *ecdsa.PrivateKey, cn string) (chainPEM, keyPEM []byte) {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Scanners ask for a revocation source; nothing is fetched.
		OCSPServer: []string{"http://127.0.0.1:1/ocsp"}, CRLDistributionPoints: []string{"http://127.0.0.1:1/crl"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, &k.PublicKey, p.interKey)
	require.NoError(t, err)
	chainPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.inter.Raw})...)
	kb, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	return chainPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// clientCert issues a client certificate from the intermediate.
func (p *testPKI) clientCert(t *testing.T) tls.Certificate {
	t.Helper()
	k := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "device"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, &k.PublicKey, p.interKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der, p.inter.Raw}, PrivateKey: k}
}

func writePair(t *testing.T, dir string, chainPEM, keyPEM []byte) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, chainPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	return certFile, keyFile
}

func pinOf(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)
	return SPKIPin(&x509.Certificate{RawSubjectPublicKeyInfo: der})
}

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// records is a slog handler that keeps records and signals each one. It
// sets aside New's warning that it counts no security events (warned), so
// that the tests see the package's own records only.
type records struct {
	mu     sync.Mutex
	all    []slog.Record
	each   chan slog.Record
	warned bool
}

func newRecords() *records { return &records{each: make(chan slog.Record, 1024)} }

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	if attr(r, "package") == "servertls" && strings.Contains(r.Message, "does not count security events") {
		h.warned = true
		h.mu.Unlock()
		return nil
	}
	h.all = append(h.all, r.Clone())
	h.mu.Unlock()
	h.each <- r.Clone()
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

// events returns the event attribute of each record so far.
func (h *records) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.all {
		out = append(out, attr(r, "event"))
	}
	return out
}

// next waits for the next record with the given event.
func (h *records) next(t *testing.T, event string) slog.Record {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case r := <-h.each:
			if attr(r, "event") == event {
				return r
			}
		case <-timeout.C:
			t.Fatalf("no %s record within 10s", event)
		}
	}
}

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// counts collects a counter's points as "attr=value,..." -> count.
func counts(t *testing.T, reader *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			require.True(t, ok)
			for _, dp := range sum.DataPoints {
				key := ""
				for _, kv := range dp.Attributes.ToSlice() {
					if key != "" {
						key += ","
					}
					key += string(kv.Key) + "=" + kv.Value.String()
				}
				out[key] += dp.Value
			}
		}
	}
	return out
}

// gauges collects a float gauge's points keyed by their attributes.
func gauges(t *testing.T, reader *sdkmetric.ManualReader, name string) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			g, ok := m.Data.(metricdata.Gauge[float64])
			require.True(t, ok)
			for _, dp := range g.DataPoints {
				key := ""
				for _, kv := range dp.Attributes.ToSlice() {
					if key != "" {
						key += ","
					}
					key += string(kv.Key) + "=" + kv.Value.String()
				}
				out[key] = dp.Value
			}
		}
	}
	return out
}

// env is one Guard with its files, clock, logs and metrics.
type env struct {
	pki      *testPKI
	key      *ecdsa.PrivateKey
	dir      string
	certFile string
	keyFile  string
	clock    *clock
	logs     *records
	reader   *sdkmetric.ManualReader
	g        *Guard
}

// newEnv makes a PKI, a leaf, and a Guard on them; edit adjusts the Config.
func newEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	return newEnvWith(t, func(_ *env, c *Config) {
		if edit != nil {
			edit(c)
		}
	})
}

// newPinnedEnv is newEnv with Pins (version 1) on the env's intermediate.
func newPinnedEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	return newEnvWith(t, func(e *env, c *Config) {
		c.Pins = PinSet{Version: 1, Current: []string{SPKIPin(e.pki.inter)}, Backup: []string{pinOf(t, newKey(t))}}
		if edit != nil {
			edit(c)
		}
	})
}

func newEnvWith(t *testing.T, edit func(*env, *Config)) *env {
	t.Helper()
	e := &env{pki: newPKI(t), key: newKey(t), dir: t.TempDir(), clock: newClock(), logs: newRecords(), reader: sdkmetric.NewManualReader()}
	chain, key := e.pki.leaf(t, e.key, "localhost")
	e.certFile, e.keyFile = writePair(t, e.dir, chain, key)
	cfg := Config{
		CertFile: e.certFile, KeyFile: e.keyFile,
		Logger:                    slog.New(e.logs),
		MeterProvider:             sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader)),
		Now:                       e.clock.Now,
		MaxHandshakeLogsPerSecond: 1000,
	}
	edit(e, &cfg)
	g, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	e.g = g
	return e
}

// serve starts an HTTPS server on loopback through g.Listener and returns
// its address.
func (e *env) serve(t *testing.T) string {
	t.Helper()
	return e.serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "reached")
	}))
}

// serveWith is serve with the application handler h behind Guard.Handler.
func (e *env) serveWith(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler:           e.g.Handler(h),
		ErrorLog:          e.g.ErrorLog(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(e.g.Listener(ln))
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// client returns a TLS client config trusting the test root, for tweaks.
func (e *env) client() *tls.Config {
	return &tls.Config{RootCAs: e.pki.pool, ServerName: "localhost"}
}

// get makes one HTTPS request with cfg and returns the response body.
func get(t *testing.T, addr string, cfg *tls.Config) (*http.Response, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, DisableKeepAlives: true}}
	resp, err := c.Get("https://" + addr + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func netipPeer(remote string) (netip.Addr, error) { return clientip.PeerAddr(remote) }
