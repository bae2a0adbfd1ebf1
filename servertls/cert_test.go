package servertls

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewRejectsDangerousConfig(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	chain, key := p.leaf(t, newKey(t), "localhost")
	cf, kf := writePair(t, dir, chain, key)
	_, otherKey := p.leaf(t, newKey(t), "localhost")
	mismatchKey := filepath.Join(dir, "other.pem")
	require.NoError(t, os.WriteFile(mismatchKey, otherKey, 0o600))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	weakCert, weakKey := selfSigned(t, rsaKey)
	wcf, wkf := writePair(t, t.TempDir(), weakCert, weakKey)
	goodPin := SPKIPin(p.inter)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no_certificate", cfg: Config{}, want: "Config.CertFile and Config.KeyFile (or Config.GetCertificate) are required"},
		{name: "cert_without_key", cfg: Config{CertFile: cf}, want: "must be set together"},
		{name: "files_and_callback", cfg: Config{CertFile: cf, KeyFile: kf, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }}, want: "not both"},
		{name: "unknown_profile", cfg: Config{Profile: 7, CertFile: cf, KeyFile: kf}, want: "Config.Profile 7 is unknown"},
		{name: "key_of_another_certificate", cfg: Config{CertFile: cf, KeyFile: mismatchKey}, want: "private key does not match public key"},
		{name: "missing_file", cfg: Config{CertFile: cf + ".gone", KeyFile: kf}, want: "Config.CertFile"},
		{name: "rsa_1024", cfg: Config{CertFile: wcf, KeyFile: wkf}, want: "RSA key of 1024 bits"},
		{name: "hsts_preload_short_max_age", cfg: Config{CertFile: cf, KeyFile: kf, HSTS: HSTS{MaxAge: 30 * 24 * time.Hour, IncludeSubDomains: true, Preload: true}}, want: "Preload needs MaxAge of at least one year"},
		{name: "hsts_preload_without_subdomains", cfg: Config{CertFile: cf, KeyFile: kf, HSTS: HSTS{Preload: true}}, want: "IncludeSubDomains"},
		{name: "redirect_to_http", cfg: Config{CertFile: cf, KeyFile: kf, RedirectCleartext: "http://api.example"}, want: "must be https://host"},
		{name: "proxies_without_header", cfg: Config{CertFile: cf, KeyFile: kf, TrustedProxies: trustedLB}, want: "Config.ProxyHeader is required"},
		{name: "header_without_proxies", cfg: Config{CertFile: cf, KeyFile: kf, ProxyHeader: HeaderForwarded}, want: "Config.TrustedProxies is empty"},
		{name: "pins_without_backup", cfg: Config{CertFile: cf, KeyFile: kf, Pins: PinSet{Version: 1, Current: []string{goodPin}}}, want: "Backup is empty"},
		{name: "pin_not_base64_sha256", cfg: Config{CertFile: cf, KeyFile: kf, Pins: PinSet{Version: 1, Current: []string{"abc"}, Backup: []string{goodPin}}}, want: "not a base64 SHA-256"},
		{name: "pins_without_version", cfg: Config{CertFile: cf, KeyFile: kf, Pins: PinSet{Current: []string{goodPin}, Backup: []string{pinOf(t, newKey(t))}}}, want: "Version must be positive"},
		{name: "signing_key_without_pins", cfg: Config{CertFile: cf, KeyFile: kf, PinSigningKey: newKey(t)}, want: "nothing to sign"},
		{name: "client_certs_verified_against_system_roots", cfg: Config{CertFile: cf, KeyFile: kf, ClientAuth: tls.RequireAndVerifyClientCert}, want: "Config.ClientCAs is required"},
		{name: "signing_key_rsa", cfg: Config{CertFile: cf, KeyFile: kf, PinSigningKey: rsaKey}, want: "use an ed25519 key or an ECDSA P-256 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestModernProfileRefusesRSA(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	c, key := selfSigned(t, k)
	cf, kf := writePair(t, t.TempDir(), c, key)
	_, err = New(Config{Profile: Modern, CertFile: cf, KeyFile: kf})
	require.ErrorIs(t, err, ErrCertificate)
	g, err := New(Config{Profile: Intermediate, CertFile: cf, KeyFile: kf})
	require.NoError(t, err)
	require.NoError(t, g.Close())
}

func selfSigned(t *testing.T, k *rsa.PrivateKey) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "rsa"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func TestProfiles(t *testing.T) {
	e := newEnv(t, nil)
	c := e.g.TLSConfig()
	require.Equal(t, uint16(tls.VersionTLS12), c.MinVersion)
	require.Equal(t, []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}, c.CurvePreferences)
	for _, s := range c.CipherSuites {
		name := tls.CipherSuiteName(s)
		require.Regexp(t, `^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$`, name)
	}
	m := newEnv(t, func(c *Config) { c.Profile = Modern })
	require.Equal(t, uint16(tls.VersionTLS13), m.g.TLSConfig().MinVersion)
}

// served returns the leaf the Guard hands out now.
func (e *env) servedPin(t *testing.T) string {
	t.Helper()
	c, err := e.g.getCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	require.NoError(t, err)
	return SPKIPin(c.Leaf)
}

// replace writes a new leaf with key k into the env's files.
func (e *env) replace(t *testing.T, chain, key []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(e.certFile, chain, 0o600))
	require.NoError(t, os.WriteFile(e.keyFile, key, 0o600))
	// Make the change visible to the mtime/size check even on coarse clocks.
	later := time.Now().Add(time.Duration(len(e.logs.events())+1) * time.Second)
	require.NoError(t, os.Chtimes(e.certFile, later, later))
}

func TestReloadOnChangeWithinInterval(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReloadInterval = time.Minute })
	old := e.servedPin(t)
	k2 := newKey(t)
	chain, key := e.pki.leaf(t, k2, "localhost-2")
	e.replace(t, chain, key)

	e.clock.Add(30 * time.Second)
	require.Equal(t, old, e.servedPin(t), "files are not checked before ReloadInterval")
	e.clock.Add(31 * time.Second)
	require.Equal(t, pinOf(t, k2), e.servedPin(t), "changed files are served after ReloadInterval, without restart")
	r := e.logs.next(t, "tls_certificate_changed")
	require.NotEqual(t, attr(r, "old_leaf_sha256"), attr(r, "new_leaf_sha256"))
	require.Equal(t, map[string]int64{"result=changed": 1}, counts(t, e.reader, MetricCertificateReloads))
}

func TestReloadBadFileKeepsOldCertificate(t *testing.T) {
	tests := []struct {
		name  string
		write func(e *env)
	}{
		{name: "garbage_certificate", write: func(e *env) {
			_, key := e.pki.leaf(t, e.key, "x")
			e.replace(t, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), key)
		}},
		{name: "half_written_rotation_key_of_old_cert", write: func(e *env) {
			chain, _ := e.pki.leaf(t, newKey(t), "new")
			_, oldKey := e.pki.leaf(t, e.key, "x")
			e.replace(t, chain, oldKey)
		}},
		{name: "empty_files", write: func(e *env) { e.replace(t, nil, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			old := e.servedPin(t)
			tt.write(e)
			require.ErrorIs(t, e.g.Reload(), ErrCertificate)
			require.Equal(t, old, e.servedPin(t))
			r := e.logs.next(t, "tls_certificate_reload_failed")
			require.Equal(t, "WARN", r.Level.String())
			require.Equal(t, map[string]int64{"result=failed": 1}, counts(t, e.reader, MetricCertificateReloads))
		})
	}
}

func TestReloadUnchangedFilesIsQuiet(t *testing.T) {
	e := newEnv(t, nil)
	e.clock.Add(2 * time.Minute)
	_ = e.servedPin(t)
	require.Empty(t, e.logs.events())
	require.Empty(t, counts(t, e.reader, MetricCertificateReloads))
}

func TestExpiryGauges(t *testing.T) {
	e := newEnv(t, nil)
	got := gauges(t, e.reader, MetricCertificateExpiry)
	require.Len(t, got, 2)
	leaf := got["tls.certificate.role=leaf,tls.certificate.subject=localhost"]
	require.InDelta(t, 90, leaf, 0.1)
	require.InDelta(t, 5*365, got["tls.certificate.role=intermediate,tls.certificate.subject=apiguard test intermediate"], 1)
	e.clock.Add(30 * 24 * time.Hour)
	got = gauges(t, e.reader, MetricCertificateExpiry)
	require.InDelta(t, 60, got["tls.certificate.role=leaf,tls.certificate.subject=localhost"], 0.1)
}

// A Guard whose logger counts no security events says so at New, naming the
// fix, so that tls_handshake_failed and pin_mismatch never vanish from the
// metrics unnoticed.
func TestNewWarnsWhenEventsUncounted(t *testing.T) {
	e := newEnv(t, nil)
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	require.True(t, e.logs.warned)
}
