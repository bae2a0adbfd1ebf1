package servertls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Reason is the bounded cause of a failed handshake, the "reason" of the
// tls_handshake_failed event and of the failure counter.
type Reason string

// The reasons a handshake fails.
const (
	// ReasonProtocolVersion: the client offered only versions the profile refuses.
	ReasonProtocolVersion Reason = "protocol_version"
	// ReasonNoSharedCipher: no cipher suite or key-exchange group in common.
	ReasonNoSharedCipher Reason = "no_shared_cipher"
	// ReasonUnknownSNI: no certificate for the requested server name.
	ReasonUnknownSNI Reason = "unknown_sni"
	// ReasonClientCertificate: the client certificate was missing or refused.
	ReasonClientCertificate Reason = "client_certificate"
	// ReasonCertificateRejected: the client refused the server's chain with
	// a certificate alert (unknown CA, bad or expired certificate): an
	// intermediate missing, a pin failing, a clock far off.
	ReasonCertificateRejected Reason = "certificate_rejected"
	// ReasonNotTLS: the client spoke something else, usually plain HTTP.
	ReasonNotTLS Reason = "not_tls"
	// ReasonClientAborted: the client closed, reset or stalled the
	// connection before the handshake completed.
	ReasonClientAborted Reason = "client_aborted"
	// ReasonOther: anything else.
	ReasonOther Reason = "other"
)

// Metric names.
const (
	// MetricHandshakeFailures counts failed handshakes by reason and
	// tls.protocol.version.
	MetricHandshakeFailures = "apiguard.tls.handshake.failures"
	// MetricCertificateExpiry is the days until each served certificate
	// expires, by tls.certificate.role (leaf, intermediate) and
	// tls.certificate.subject.
	MetricCertificateExpiry = "apiguard.tls.certificate.expiry"
	// MetricCertificateReloads counts certificate file changes by result
	// (changed, failed, pin_mismatch).
	MetricCertificateReloads = "apiguard.tls.certificate.reloads"
)

const scope = "github.com/apiguard/apiguard/servertls"

type metrics struct {
	failures metric.Int64Counter
	reloads  metric.Int64Counter
	reg      metric.Registration
}

func newMetrics(mp metric.MeterProvider, g *Guard) (*metrics, error) {
	meter := mp.Meter(scope)
	m := &metrics{}
	var err error
	if m.failures, err = meter.Int64Counter(MetricHandshakeFailures, metric.WithUnit("{handshake}"),
		metric.WithDescription("Failed TLS handshakes.")); err != nil {
		return nil, fmt.Errorf("servertls: create %s: %w", MetricHandshakeFailures, err)
	}
	if m.reloads, err = meter.Int64Counter(MetricCertificateReloads, metric.WithUnit("{reload}"),
		metric.WithDescription("Changes of the certificate files.")); err != nil {
		return nil, fmt.Errorf("servertls: create %s: %w", MetricCertificateReloads, err)
	}
	if g.cert.Load() == nil {
		return m, nil
	}
	expiry, err := meter.Float64ObservableGauge(MetricCertificateExpiry, metric.WithUnit("d"),
		metric.WithDescription("Days until the served certificate expires."))
	if err != nil {
		return nil, fmt.Errorf("servertls: create %s: %w", MetricCertificateExpiry, err)
	}
	m.reg, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		now := g.now()
		g.maybeReload(now)
		for i, c := range g.cert.Load().chain {
			if i == maxChain {
				break
			}
			role := "intermediate"
			if i == 0 {
				role = "leaf"
			}
			o.ObserveFloat64(expiry, c.NotAfter.Sub(now).Hours()/24, metric.WithAttributes(
				attribute.String("tls.certificate.role", role),
				attribute.String("tls.certificate.subject", c.Subject.CommonName)))
		}
		return nil
	}, expiry)
	if err != nil {
		return nil, fmt.Errorf("servertls: register %s: %w", MetricCertificateExpiry, err)
	}
	return m, nil
}

func (m *metrics) reloaded(ctx context.Context, result string) {
	m.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// Listener returns a listener that accepts TLS connections with
// [Guard.TLSConfig] from inner, handshakes each within HandshakeTimeout,
// and counts and logs the handshakes that fail. Serve it with
// http.Server.Serve (not ServeTLS): the connections are already TLS.
func (g *Guard) Listener(inner net.Listener) net.Listener {
	return &listener{Listener: inner, g: g}
}

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wc := &watchedConn{Conn: c}
	tc := tls.Server(wc, l.g.base)
	go l.g.watch(tc, wc)
	return tc, nil
}

// watchedConn carries what the ClientHello said to the goroutine that
// classifies a failure. Its fields are written during the handshake and
// read after it, ordered by the tls.Conn's handshake lock.
type watchedConn struct {
	net.Conn
	offered   uint16
	predicted Reason
}

// watch runs the handshake. The server's own call to Handshake then
// returns the result recorded here, so each connection is handshaken once.
func (g *Guard) watch(tc *tls.Conn, wc *watchedConn) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.HandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if err == nil {
		return
	}
	version := tc.ConnectionState().Version
	if version == 0 {
		version = wc.offered
	}
	g.handshakeFailed(classify(err, wc.predicted), version, err)
}

func (g *Guard) handshakeFailed(r Reason, version uint16, err error) {
	v := versionName(version)
	g.metrics.failures.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("reason", string(r)), attribute.String("tls.protocol.version", v)))
	ok, suppressed := g.logLimit.allow(g.now())
	if !ok {
		return
	}
	level := slog.LevelInfo
	if r == ReasonCertificateRejected || r == ReasonUnknownSNI {
		level = slog.LevelWarn
	}
	g.logger.LogAttrs(context.Background(), level, "servertls: TLS handshake failed",
		slog.String("event", "tls_handshake_failed"), slog.String("reason", string(r)),
		slog.String("tls_version", v), slog.Int("suppressed", suppressed),
		slog.String("error", truncate(err.Error(), 200)))
}

// classify turns a handshake error into a Reason. What the ClientHello
// showed (predicted) wins; then typed errors and alerts; error strings of
// crypto/tls are the last resort, each covered by a test.
func classify(err error, predicted Reason) Reason {
	if predicted != "" {
		return predicted
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return ReasonNotTLS
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return ReasonClientCertificate
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		switch alertCode(op.Err) {
		case 0, 90: // close_notify, user_canceled
			return ReasonClientAborted
		case 42, 43, 44, 45, 46, 48: // bad, unsupported, revoked, expired, unknown certificate; unknown CA
			return ReasonCertificateRejected
		}
		return ReasonOther
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.EPIPE) {
		return ReasonClientAborted
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "older than TLS 1.3"):
		return ReasonProtocolVersion
	case strings.Contains(msg, "no cipher suite supported"), strings.Contains(msg, "no ECDHE curve"):
		return ReasonNoSharedCipher
	case strings.Contains(msg, "client didn't provide a certificate"), strings.Contains(msg, "client certificate"):
		return ReasonClientCertificate
	}
	return ReasonOther
}

// alertCode recovers the alert number of a remote alert by its text,
// which crypto/tls renders the same way for its exported AlertError.
func alertCode(e error) int {
	msg := e.Error()
	for code := range 256 {
		if tls.AlertError(code).Error() == msg {
			return code
		}
	}
	return -1
}

// predict names the failure the ClientHello makes certain, before
// crypto/tls reports it: a version, suite or group the profile lacks.
func (g *Guard) predict(hello *tls.ClientHelloInfo) Reason {
	if maxVersion(hello.SupportedVersions) < g.base.MinVersion {
		return ReasonProtocolVersion
	}
	if !slices.ContainsFunc(hello.SupportedCurves, func(c tls.CurveID) bool { return slices.Contains(groups, c) }) {
		return ReasonNoSharedCipher
	}
	if !slices.Contains(hello.SupportedVersions, tls.VersionTLS13) &&
		!slices.ContainsFunc(hello.CipherSuites, func(s uint16) bool { return slices.Contains(intermediateSuites, s) }) {
		return ReasonNoSharedCipher
	}
	return ""
}

func maxVersion(vs []uint16) uint16 {
	var m uint16
	for _, v := range vs {
		if v > m && v <= tls.VersionTLS13 { // GREASE values are above
			m = v
		}
	}
	return m
}

// versionName maps a version to a bounded label.
func versionName(v uint16) string {
	switch v {
	case 0x0300: // SSL 3.0
		return "ssl3"
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return "unknown"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// logLimiter lets max records through per second of the clock and counts
// the rest, so a scanner cannot flood the log.
type logLimiter struct {
	mu         sync.Mutex
	max        int
	window     time.Time // start of the current second
	n          int       // requires mu held
	suppressed int       // requires mu held
}

// allow reports whether a record may be written at now and, if so, how
// many were suppressed since the last one written.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Truncate(time.Second); !sec.Equal(l.window) {
		l.window, l.n = sec, 0
	}
	if l.n >= l.max {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

// ErrorLog returns a logger for http.Server.ErrorLog. It drops net/http's
// "TLS handshake error" lines, which [Guard.Listener] already counts and
// logs, and passes the others to Logger as event=http_server_error at Warn
// level, under the same per-second bound, so that a scanner cannot flood
// the log through net/http either.
func (g *Guard) ErrorLog() *log.Logger {
	return log.New(errorLogWriter{g}, "", 0)
}

type errorLogWriter struct{ g *Guard }

func (w errorLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if strings.HasPrefix(line, "http: TLS handshake error") {
		return len(p), nil
	}
	ok, suppressed := w.g.serverLogLimit.allow(w.g.now())
	if ok {
		w.g.logger.LogAttrs(context.Background(), slog.LevelWarn, "servertls: http server error",
			slog.String("event", "http_server_error"), slog.Int("suppressed", suppressed),
			slog.String("error", truncate(line, 200)))
	}
	return len(p), nil
}
