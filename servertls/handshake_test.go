package servertls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHandshakeRefusedAndCounted drives real Go TLS clients at a loopback
// server and checks that each refused one is counted once, with its reason
// and version, and logged as tls_handshake_failed.
func TestHandshakeRefusedAndCounted(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		client  func(e *env) *tls.Config
		reason  Reason
		version string
	}{
		{
			name: "old_client_tls10_tls11",
			client: func(e *env) *tls.Config {
				c := e.client()
				c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
				return c
			},
			reason: ReasonProtocolVersion, version: "1.1",
		},
		{
			name: "old_client_tls10_only",
			client: func(e *env) *tls.Config {
				c := e.client()
				c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
				return c
			},
			reason: ReasonProtocolVersion, version: "1.0",
		},
		{
			name: "cbc_suites_only_tls12",
			client: func(e *env) *tls.Config {
				c := e.client()
				c.MaxVersion = tls.VersionTLS12
				c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
				return c
			},
			reason: ReasonNoSharedCipher, version: "1.2",
		},
		{
			name: "no_shared_group_p384_only",
			client: func(e *env) *tls.Config {
				c := e.client()
				c.CurvePreferences = []tls.CurveID{tls.CurveP384}
				return c
			},
			reason: ReasonNoSharedCipher, version: "1.3",
		},
		{
			name: "tls12_client_against_modern",
			edit: func(c *Config) { c.Profile = Modern },
			client: func(e *env) *tls.Config {
				c := e.client()
				c.MaxVersion = tls.VersionTLS12
				return c
			},
			reason: ReasonProtocolVersion, version: "1.2",
		},
		{
			name: "client_distrusts_chain",
			client: func(e *env) *tls.Config {
				c := e.client()
				c.RootCAs = newPKI(t).pool // another CA: as if an intermediate or pin were wrong
				return c
			},
			reason: ReasonCertificateRejected, version: "1.3",
		},
		{
			name: "unknown_sni",
			edit: func(c *Config) { c.RejectUnknownSNI = true },
			client: func(e *env) *tls.Config {
				c := e.client()
				c.ServerName = "other.example"
				return c
			},
			reason: ReasonUnknownSNI, version: "1.3",
		},
		{
			name: "client_certificate_missing",
			edit: func(c *Config) { c.ClientAuth = tls.RequireAndVerifyClientCert; c.ClientCAs = newPKI(t).pool },
			client: func(e *env) *tls.Config {
				return e.client()
			},
			reason: ReasonClientCertificate, version: "1.3",
		},
		{
			name: "client_certificate_untrusted",
			edit: func(c *Config) { c.ClientAuth = tls.RequireAndVerifyClientCert; c.ClientCAs = newPKI(t).pool },
			client: func(e *env) *tls.Config {
				c := e.client()
				c.Certificates = []tls.Certificate{e.pki.clientCert(t)}
				return c
			},
			reason: ReasonClientCertificate, version: "1.3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.edit)
			addr := e.serve(t)
			conn, err := tls.Dial("tcp", addr, tt.client(e))
			if err == nil {
				// TLS 1.3 clients finish before the server judges their
				// certificate; the refusal arrives on the first read.
				_, err = conn.Read(make([]byte, 1))
				_ = conn.Close()
			}
			require.Error(t, err)
			r := e.logs.next(t, "tls_handshake_failed")
			require.Equal(t, string(tt.reason), attr(r, "reason"))
			require.Equal(t, tt.version, attr(r, "tls_version"))
			require.Equal(t, map[string]int64{"reason=" + string(tt.reason) + ",tls.protocol.version=" + tt.version: 1},
				counts(t, e.reader, MetricHandshakeFailures))
		})
	}
}

func TestHandshakeNotTLSOrAborted(t *testing.T) {
	tests := []struct {
		name   string
		send   string
		reason Reason
	}{
		{name: "plain_http_to_tls_port", send: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", reason: ReasonNotTLS},
		{name: "connect_and_close", send: "", reason: ReasonClientAborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			addr := e.serve(t)
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			if tt.send != "" {
				_, err = io.WriteString(c, tt.send)
				require.NoError(t, err)
				_, _ = io.ReadAll(c)
			}
			require.NoError(t, c.Close())
			r := e.logs.next(t, "tls_handshake_failed")
			require.Equal(t, string(tt.reason), attr(r, "reason"))
			require.Equal(t, map[string]int64{"reason=" + string(tt.reason) + ",tls.protocol.version=unknown": 1},
				counts(t, e.reader, MetricHandshakeFailures))
		})
	}
}

func TestModernClientsSucceed(t *testing.T) {
	for _, p := range []Profile{Intermediate, Modern} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			if p == Modern && v == tls.VersionTLS12 {
				continue
			}
			t.Run(p.String()+"_"+versionName(v), func(t *testing.T) {
				e := newEnv(t, func(c *Config) { c.Profile = p })
				addr := e.serve(t)
				c := e.client()
				c.MaxVersion = v
				resp, body := get(t, addr, c)
				require.Equal(t, "reached", body)
				require.Equal(t, v, resp.TLS.Version)
				require.Equal(t, 2, resp.ProtoMajor, "HTTP/2 through Listener and Serve")
				require.Equal(t, "max-age=63072000", resp.Header.Get("Strict-Transport-Security"))
				require.Empty(t, counts(t, e.reader, MetricHandshakeFailures))
			})
		}
	}
}

func TestPostQuantumGroupNegotiated(t *testing.T) {
	e := newEnv(t, nil)
	addr := e.serve(t)
	c := e.client()
	c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768}
	conn, err := tls.Dial("tcp", addr, c)
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, tls.X25519MLKEM768, conn.ConnectionState().CurveID)
}

func TestHandshakeLogFloodRateLimited(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxHandshakeLogsPerSecond = 10 })
	for range 25 {
		e.g.handshakeFailed(ReasonProtocolVersion, tls.VersionTLS10, errors.New("tls: client offered only unsupported versions"))
	}
	require.Len(t, e.logs.events(), 10)
	e.clock.Add(time.Second)
	e.g.handshakeFailed(ReasonProtocolVersion, tls.VersionTLS10, errors.New("x"))
	all := e.logs.events()
	require.Len(t, all, 11)
	e.logs.mu.Lock()
	last := e.logs.all[10]
	e.logs.mu.Unlock()
	require.Equal(t, "15", attr(last, "suppressed"))
	require.Equal(t, map[string]int64{"reason=protocol_version,tls.protocol.version=1.0": 26}, counts(t, e.reader, MetricHandshakeFailures))
}

func TestHandshakeLabelsBounded(t *testing.T) {
	// A scanner offering every version number cannot mint new labels.
	seen := map[string]bool{}
	for v := range 1 << 16 {
		seen[versionName(uint16(v))] = true
	}
	require.Len(t, seen, 6)
	require.Equal(t, uint16(tls.VersionTLS12), maxVersion([]uint16{0x0a0a, tls.VersionTLS12, 0xfafa}), "GREASE ignored")
}

func TestSessionTicketKeysRotate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TicketKeyPeriod = time.Hour })
	addr := e.serve(t)
	c := e.client()
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	resp, _ := get(t, addr, c)
	require.False(t, resp.TLS.DidResume)
	resp, _ = get(t, addr, c)
	require.True(t, resp.TLS.DidResume, "ticket of the current key resumes")
	e.clock.Add(90 * time.Minute)
	resp, _ = get(t, addr, c)
	require.True(t, resp.TLS.DidResume, "ticket of the previous key still resumes")
	e.clock.Add(3 * time.Hour)
	resp, _ = get(t, addr, c)
	require.False(t, resp.TLS.DidResume, "ticket older than two periods does not resume")
}

func TestClassifyErrors(t *testing.T) {
	// The strings are crypto/tls's; if Go rewords one, this test says so.
	tests := []struct {
		name string
		err  error
		want Reason
	}{
		{name: "record_header", err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, want: ReasonNotTLS},
		{name: "client_cert_verification", err: &tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, want: ReasonClientCertificate},
		{name: "remote_unknown_ca", err: &net.OpError{Op: "remote error", Err: tls.AlertError(48)}, want: ReasonCertificateRejected},
		{name: "remote_bad_certificate", err: &net.OpError{Op: "remote error", Err: tls.AlertError(42)}, want: ReasonCertificateRejected},
		{name: "remote_user_canceled", err: &net.OpError{Op: "remote error", Err: tls.AlertError(90)}, want: ReasonClientAborted},
		{name: "remote_decode_error", err: &net.OpError{Op: "remote error", Err: tls.AlertError(50)}, want: ReasonOther},
		{name: "eof", err: io.EOF, want: ReasonClientAborted},
		{name: "handshake_timeout", err: context.DeadlineExceeded, want: ReasonClientAborted},
		{name: "old_versions", err: errors.New("tls: client offered only unsupported versions: [302 301]"), want: ReasonProtocolVersion},
		{name: "no_suite", err: errors.New("tls: no cipher suite supported by both client and server; client offered: [c009]"), want: ReasonNoSharedCipher},
		{name: "no_cert", err: errors.New("tls: client didn't provide a certificate"), want: ReasonClientCertificate},
		{name: "unknown", err: errors.New("tls: something new"), want: ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, classify(tt.err, ""))
		})
	}
	require.Equal(t, ReasonUnknownSNI, classify(io.EOF, ReasonUnknownSNI), "what the ClientHello showed wins")
}

func TestErrorLogDropsHandshakeLinesAndBoundsOthers(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxHandshakeLogsPerSecond = 3 })
	l := e.g.ErrorLog()
	for range 100 {
		l.Printf("http: TLS handshake error from 192.0.2.1:1234: EOF")
	}
	require.Empty(t, e.logs.events())
	for range 10 {
		l.Printf("http2: server: error reading preface from client 192.0.2.1:1234: bogus greeting")
	}
	require.Equal(t, []string{"http_server_error", "http_server_error", "http_server_error"}, e.logs.events())
}

func TestClientCertificateAccepted(t *testing.T) {
	e := newEnvWith(t, func(en *env, c *Config) {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, en.pki.pool
	})
	addr := e.serve(t)
	c := e.client()
	c.Certificates = []tls.Certificate{e.pki.clientCert(t)}
	_, body := get(t, addr, c)
	require.Equal(t, "reached", body)
	require.Empty(t, counts(t, e.reader, MetricHandshakeFailures))
}
