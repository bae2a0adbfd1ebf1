package servertls

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRedirectOpaqueTargetToAttackerHost: "GET http:@evil.example/x" is a
// valid request target for net/http (an opaque URL); pasting its
// RequestURI after RedirectCleartext made the configured host a userinfo
// and sent the client to evil.example.
func TestRedirectOpaqueTargetToAttackerHost(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RedirectCleartext = "https://api.example" })
	srv := httptest.NewServer(e.g.Handler(http.NotFoundHandler()))
	defer srv.Close()
	for _, target := range []string{"http:@evil.example/x", "http:.evil.example/x?q=1", "https:@evil.example"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_ = resp.Body.Close()
		_ = conn.Close()
		require.Equal(t, http.StatusPermanentRedirect, resp.StatusCode, target)
		loc, err := resp.Location()
		require.NoError(t, err)
		require.Equal(t, "api.example", loc.Host, "target %q redirected to %s", target, loc)
		require.Nil(t, loc.User, target)
	}
}

// TestForwardedUnterminatedQuoteSwallowsProxyElement: the client opens a
// quoted string it never closes; a trusted proxy that appends its element
// to the same line ("client value, for=...;proto=http") has its comma and
// semicolons swallowed, so the client's own proto=https was believed.
func TestForwardedUnterminatedQuoteSwallowsProxyElement(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustedProxies, c.ProxyHeader = trustedLB, HeaderForwarded })
	for _, forged := range []string{`proto=https;for="x`, `proto=https;for="x\`, `for=198.51.100.7;proto="https`} {
		r := httptest.NewRequest(http.MethodGet, "http://api.example/", nil)
		r.RemoteAddr = "10.0.0.7:5000"
		r.Header.Set("Forwarded", forged+", for=198.51.100.7;proto=http")
		require.ErrorIs(t, e.g.Check(r), ErrCleartext, forged)
	}
}

// TestTicketKeysFrozenInServeTLSClone: http.Server.ServeTLS (and
// ListenAndServeTLS, grpc's credentials) clone TLSConfig; the clone kept
// the ticket keys of the moment it was made, so a ticket stayed valid for
// the life of the process and the rotation (forward secrecy of resumed
// sessions) never happened.
func TestTicketKeysFrozenInServeTLSClone(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TicketKeyPeriod = time.Hour })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{TLSConfig: e.g.TLSConfig(), ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "reached") })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ServeTLS(ln, "", "") }()
	defer func() { _ = srv.Close(); <-done }()

	c := e.client()
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	addr := ln.Addr().String()
	resp, _ := get(t, addr, c)
	require.False(t, resp.TLS.DidResume)
	resp, _ = get(t, addr, c)
	require.True(t, resp.TLS.DidResume, "ticket of the current key resumes")
	e.clock.Add(5 * time.Hour)
	resp, _ = get(t, addr, c)
	require.False(t, resp.TLS.DidResume, "ticket older than two periods must not resume through ServeTLS either")
}

// TestClonedConfigWeakenedServesProfile: a clone whose versions and suites
// were loosened (the "just for this old client" edit) still negotiates
// only the profile.
func TestClonedConfigWeakenedServesProfile(t *testing.T) {
	e := newEnv(t, nil)
	weak := e.g.TLSConfig().Clone()
	weak.MinVersion = tls.VersionTLS10
	weak.CipherSuites = append(weak.CipherSuites, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tln := tls.NewListener(ln, weak)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := tln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			_ = conn.Close()
		}
	}()
	defer func() { _ = ln.Close(); <-done }()
	c := e.client()
	c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	conn, err := tls.Dial("tcp", ln.Addr().String(), c)
	if err == nil {
		_ = conn.Close()
	}
	require.Error(t, err, "TLS 1.0 with a CBC suite must not be negotiated")
}

// TestPinOnUnrelatedServedCertificateRefused: the chain file still holds
// the old, pinned intermediate after the leaf moved to another CA. Clients
// build their path leaf -> issuer and never see that certificate, so the
// apps refuse the chain; the start check must not count it.
func TestPinOnUnrelatedServedCertificateRefused(t *testing.T) {
	pinned, other := newPKI(t), newPKI(t)
	chain, key := other.leaf(t, newKey(t), "localhost")
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pinned.inter.Raw})...)
	cf, kf := writePair(t, t.TempDir(), chain, key)
	_, err := New(Config{CertFile: cf, KeyFile: kf, Logger: newQuiet(),
		Pins: PinSet{Version: 1, Current: []string{SPKIPin(pinned.inter)}, Backup: []string{pinOf(t, newKey(t))}}})
	require.ErrorIs(t, err, ErrPinMismatch)
}

// TestBackupPinSameKeyOtherEncodingRefused: a backup that decodes to the
// current pin's bytes (non-canonical last character, or a trailing newline
// the decoder skips) is no backup at all; the next rotation bricks the apps.
func TestBackupPinSameKeyOtherEncodingRefused(t *testing.T) {
	e := newEnv(t, nil)
	cur := SPKIPin(e.pki.inter)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	last := strings.IndexByte(alphabet, cur[42])
	nonCanonical := cur[:42] + string(alphabet[last|1]) + "="
	b1, err := base64.StdEncoding.DecodeString(cur)
	require.NoError(t, err)
	b2, err := base64.StdEncoding.DecodeString(nonCanonical)
	require.NoError(t, err)
	require.Equal(t, b1, b2, "same key")
	for _, backup := range []string{nonCanonical, cur + "\n", cur[:22] + "\r\n" + cur[22:]} {
		_, err := New(Config{CertFile: e.certFile, KeyFile: e.keyFile, Logger: newQuiet(),
			Pins: PinSet{Version: 1, Current: []string{cur}, Backup: []string{backup}}})
		require.Error(t, err, "backup %q", backup)
	}
}

// TestPinDocumentRollbackReplayed: after a rotation away from a
// compromised key, an attacker replays the older, still unexpired document
// that pins it; the app must be able to refuse it.
func TestPinDocumentRollbackReplayed(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	e := newPinnedEnv(t, func(c *Config) { c.PinSigningKey = priv })
	old := fetchDoc(t, e.g)
	require.NoError(t, e.g.SetPins(PinSet{Version: 2, Current: []string{SPKIPin(e.pki.inter)}, Backup: []string{pinOf(t, newKey(t))}}))
	d, err := VerifyPinDocument(fetchDoc(t, e.g), pub, e.clock.Now(), 2)
	require.NoError(t, err)
	require.Equal(t, int64(2), d.Pins.Version)
	_, err = VerifyPinDocument(old, pub, e.clock.Now(), d.Pins.Version)
	require.ErrorIs(t, err, ErrPinDocument, "version 1 replayed to an app holding version 2")
}

// TestExpiredOldCertificateKeptForUnpinnedReload: Config says the old
// certificate stays in service "until it expires"; it was kept forever,
// an expired chain served to everyone while a valid one sat on disk.
func TestExpiredOldCertificateKeptForUnpinnedReload(t *testing.T) {
	e := newPinnedEnv(t, nil)
	other := newPKI(t)
	k := newKey(t)
	chain, key := longLeaf(t, other, k)
	e.replace(t, chain, key)
	require.ErrorIs(t, e.g.Reload(), ErrPinMismatch, "old still valid: kept")
	e.clock.Add(91 * 24 * time.Hour) // the old leaf was issued for 90 days
	require.NoError(t, e.g.Reload())
	require.Equal(t, pinOf(t, k), e.servedPin(t))
}

// TestHSTSSubSecondMaxAgeRefused: MaxAge: 300 is 300ns in Go, truncated to
// "max-age=0", which tells browsers to forget HSTS (RFC 6797 §6.1.1).
func TestHSTSSubSecondMaxAgeRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, err := New(Config{CertFile: e.certFile, KeyFile: e.keyFile, Logger: newQuiet(), HSTS: HSTS{MaxAge: 300}})
	require.ErrorContains(t, err, "HSTS.MaxAge")
}

func newQuiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// longLeaf issues a leaf for localhost valid for 400 days from p's
// intermediate, and returns the PEM chain and key.
func longLeaf(t *testing.T, p *testPKI, k *ecdsa.PrivateKey) (chainPEM, keyPEM []byte) {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(400 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, &k.PublicKey, p.interKey)
	require.NoError(t, err)
	chainPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.inter.Raw})...)
	kb, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	return chainPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestSilentClientClosedAfterHandshakeTimeout: a client that connects and
// sends nothing is cut off after HandshakeTimeout even when http.Server has
// no timeout of its own, the failure is counted, and Serve keeps accepting.
func TestSilentClientClosedAfterHandshakeTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: e.g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "reached") }))} //nolint:gosec // no timeouts on purpose
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(e.g.Listener(ln)) }()
	defer func() { _ = srv.Close(); <-done }()

	const n = 8
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i], err = net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer conns[i].Close()
	}
	for _, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF, "closed by the server, not by our own deadline")
	}
	for range n {
		e.logs.next(t, "tls_handshake_failed")
	}
	require.Equal(t, map[string]int64{"reason=client_aborted,tls.protocol.version=unknown": n}, counts(t, e.reader, MetricHandshakeFailures))
	_, body := get(t, ln.Addr().String(), e.client())
	require.Equal(t, "reached", body)
}

// TestKubernetesDataSymlinkSwap: a Secret volume replaces both files at
// once by renaming the ..data symlink to a new timestamped directory; the
// reload follows the links and serves the new pair, even when the new
// files have the old ones' sizes and modification times.
func TestKubernetesDataSymlinkSwap(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	write := func(name string, chain, key []byte) {
		d := filepath.Join(dir, name)
		require.NoError(t, os.Mkdir(d, 0o700))
		writePair(t, d, chain, key)
		for _, f := range []string{"chain.pem", "key.pem"} {
			require.NoError(t, os.Chtimes(filepath.Join(d, f), time.Unix(1e9, 0), time.Unix(1e9, 0)))
		}
		require.NoError(t, os.Symlink(name, filepath.Join(dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	chain, key := e.pki.leaf(t, e.key, "localhost")
	write("..2026_12_06_a", chain, key)
	cf, kf := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.Symlink("..data/chain.pem", cf))
	require.NoError(t, os.Symlink("..data/key.pem", kf))
	g, err := New(Config{CertFile: cf, KeyFile: kf, Logger: newQuiet(), Now: e.clock.Now})
	require.NoError(t, err)
	defer g.Close()

	// The new pair has the old sizes and times (write sets one time), as a
	// copy made with cp -p, tar or rsync -a can, or two writes in one tick.
	var k2 *ecdsa.PrivateKey
	for size := len(chain); ; {
		k2 = newKey(t)
		if chain, key = e.pki.leaf(t, k2, "localhost"); len(chain) == size {
			break
		}
	}
	write("..2026_12_06_b", chain, key)
	e.clock.Add(2 * time.Minute)
	c, err := g.getCertificate(&tls.ClientHelloInfo{})
	require.NoError(t, err)
	require.Equal(t, pinOf(t, k2), SPKIPin(c.Leaf))
}
