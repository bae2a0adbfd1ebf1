package servertls

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/apiguard/apiguard/internal/events"
)

// Profile names a Mozilla server-side TLS recommendation.
type Profile int

const (
	// Intermediate is Mozilla's "intermediate" profile: TLS 1.2 and 1.3,
	// ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only. It serves
	// every client released since about 2015.
	Intermediate Profile = iota
	// Modern is Mozilla's "modern" profile: TLS 1.3 only.
	Modern
)

// String returns "intermediate" or "modern".
func (p Profile) String() string {
	switch p {
	case Intermediate:
		return "intermediate"
	case Modern:
		return "modern"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// ProxyHeader names the one header a trusted proxy reports the client's
// scheme in.
type ProxyHeader int

const (
	// HeaderXForwardedProto reads X-Forwarded-Proto; its last value, the
	// one the nearest proxy wrote, is the scheme.
	HeaderXForwardedProto ProxyHeader = iota + 1
	// HeaderForwarded reads RFC 7239 Forwarded: the proto= of the element
	// whose for= is the first untrusted address from the right.
	HeaderForwarded
)

// HSTS configures the Strict-Transport-Security header (RFC 6797).
type HSTS struct {
	// MaxAge is how long browsers remember to use HTTPS only.
	// Default: 2 years (Mozilla's recommendation). Truncated to seconds;
	// New refuses less than one second (a bare 300 is 300ns).
	MaxAge time.Duration
	// IncludeSubDomains adds includeSubDomains. Default: false.
	IncludeSubDomains bool
	// Preload adds preload. New refuses it unless MaxAge is at least one
	// year and IncludeSubDomains is set, the hstspreload.org requirements.
	Preload bool
}

// Config configures a [Guard]. A zero field takes the default in its comment.
type Config struct {
	// Profile selects the protocol versions and cipher suites.
	// Default: Intermediate.
	Profile Profile

	// CertFile and KeyFile are PEM files: the chain (leaf first, then
	// intermediates) and the leaf's private key. They are checked again at
	// most once per ReloadInterval, on a handshake or a metrics
	// collection, and reloaded when their size, modification time or
	// content changed. Required, unless GetCertificate is set.
	CertFile, KeyFile string
	// GetCertificate hands out the application's certificates instead of
	// CertFile/KeyFile. An error or a nil certificate counts as the
	// handshake failure reason unknown_sni. Pins and expiry gauges are not
	// checked for its certificates; call [Guard.CheckChain] when you
	// rotate them. Default: nil.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ReloadInterval bounds how often the certificate files are checked.
	// Default: 1 minute.
	ReloadInterval time.Duration
	// RejectUnknownSNI refuses a handshake whose server name the leaf does
	// not cover (a client that sends no name is served). Default: false.
	RejectUnknownSNI bool
	// ClientAuth and ClientCAs ask for client certificates, as in
	// [crypto/tls.Config]; ClientCAs is required when ClientAuth verifies
	// them. Default: no client certificates.
	ClientAuth tls.ClientAuthType
	ClientCAs  *x509.CertPool
	// NextProtos are the ALPN protocols. Default: "h2", "http/1.1".
	NextProtos []string
	// TicketKeyPeriod is how often a new session ticket key is made; a
	// ticket is accepted for at most two periods. Default: 24 hours.
	TicketKeyPeriod time.Duration
	// HandshakeTimeout bounds a handshake accepted through
	// [Guard.Listener]. Default: 10 seconds.
	HandshakeTimeout time.Duration

	// Pins are the SPKI pins the shipped apps carry. Default: none, and
	// no pin check.
	Pins PinSet
	// ServeUnpinnedOnReload installs a reloaded chain that matches no pin.
	// Default: false, the old certificate stays in service until its
	// files are fixed or it expires, so pinned apps keep working.
	ServeUnpinnedOnReload bool
	// PinSigningKey signs the pin document of [Guard.PinHandler]: an
	// ed25519.PrivateKey (EdDSA) or a P-256 *ecdsa.PrivateKey (ES256).
	// Default: nil, and no pin document.
	PinSigningKey crypto.Signer
	// PinSigningKeyID is the document's "kid" header. Default: none.
	PinSigningKeyID string
	// PinDocumentTTL is the lifetime of a signed pin document.
	// Default: 7 days.
	PinDocumentTTL time.Duration

	// HSTS configures Strict-Transport-Security on HTTPS responses.
	HSTS HSTS
	// RedirectCleartext, when set, is the "https://host[:port]" a plain
	// GET or HEAD request is redirected to (308) with its path and query.
	// Other methods are still refused. Default: empty, refuse everything.
	RedirectCleartext string
	// TrustedProxies are the peers whose ProxyHeader is believed. Default:
	// none, and only the connection decides the scheme.
	TrustedProxies []netip.Prefix
	// ProxyHeader is the one header read from TrustedProxies. Only safe
	// with a header your proxies unconditionally overwrite or append to.
	// Required when TrustedProxies is set.
	ProxyHeader ProxyHeader
	// ErrorHandler writes a refused cleartext request. Default: 403 with
	// an application/problem+json body.
	ErrorHandler func(http.ResponseWriter, *http.Request, error)

	// MeterProvider creates the metrics. Default: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Logger receives the events. Default: slog.Default().
	Logger *slog.Logger
	// MaxHandshakeLogsPerSecond bounds tls_handshake_failed records; the
	// next record carries how many were suppressed. Metrics count all.
	// Default: 10.
	MaxHandshakeLogsPerSecond int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Rand is the source of session ticket keys. Default: crypto/rand.Reader.
	Rand io.Reader
}

// Errors returned by New, Reload, SetPins, CheckChain and Check.
var (
	// ErrCleartext reports a request that did not arrive over HTTPS.
	ErrCleartext = errors.New("servertls: cleartext request refused")
	// ErrPinMismatch reports a chain that matches none of the pins.
	ErrPinMismatch = errors.New("servertls: no certificate in the served chain matches a pin")
	// ErrCertificate reports certificate files that cannot be served.
	ErrCertificate = errors.New("servertls: unusable certificate")
)

// Guard holds a hardened server TLS configuration, its certificates, pins
// and handshake metrics. Guard is safe for concurrent use by multiple
// goroutines. The zero value is not usable; use New.
type Guard struct {
	cfg    Config
	base   *tls.Config
	logger *slog.Logger
	now    func() time.Time

	cert      atomic.Pointer[served] // nil with an application GetCertificate
	lastCheck atomic.Int64           // unix nanoseconds of the last file check
	reloadMu  sync.Mutex             // one reload at a time

	pinMu sync.Mutex
	pins  PinSet
	doc   signedDoc // requires pinMu held

	ticketMu   sync.Mutex
	ticketNext time.Time
	ticketKeys [][32]byte

	hsts     string
	proxies  []netip.Prefix
	metrics  *metrics
	logLimit logLimiter

	serverLogLimit logLimiter

	closeOnce sync.Once
}

// New validates cfg, loads the certificate files, checks them against the
// pins and returns a Guard. The error names the field to fix; it matches
// [ErrCertificate] or [ErrPinMismatch] when the files are the problem.
func New(cfg Config) (*Guard, error) {
	if cfg.Profile != Intermediate && cfg.Profile != Modern {
		return nil, fmt.Errorf("servertls: Config.Profile %d is unknown; use servertls.Intermediate or servertls.Modern", int(cfg.Profile))
	}
	files := cfg.CertFile != "" || cfg.KeyFile != ""
	switch {
	case files && cfg.GetCertificate != nil:
		return nil, errors.New("servertls: set Config.CertFile and Config.KeyFile, or Config.GetCertificate, not both")
	case !files && cfg.GetCertificate == nil:
		return nil, errors.New("servertls: Config.CertFile and Config.KeyFile (or Config.GetCertificate) are required")
	case files && (cfg.CertFile == "" || cfg.KeyFile == ""):
		return nil, errors.New("servertls: Config.CertFile and Config.KeyFile must be set together")
	}
	if cfg.ReloadInterval < 0 || cfg.TicketKeyPeriod < 0 || cfg.HandshakeTimeout < 0 || cfg.PinDocumentTTL < 0 || cfg.MaxHandshakeLogsPerSecond < 0 || cfg.HSTS.MaxAge < 0 {
		return nil, errors.New("servertls: Config durations and limits must not be negative")
	}
	if (cfg.ClientAuth == tls.VerifyClientCertIfGiven || cfg.ClientAuth == tls.RequireAndVerifyClientCert) && cfg.ClientCAs == nil {
		return nil, errors.New("servertls: Config.ClientCAs is required when Config.ClientAuth verifies client certificates; without it any publicly trusted certificate would pass")
	}
	setDefaults(&cfg)
	hsts, err := hstsValue(cfg.HSTS)
	if err != nil {
		return nil, err
	}
	if err := validateRedirect(cfg.RedirectCleartext); err != nil {
		return nil, err
	}
	proxies, err := validateProxies(cfg.TrustedProxies, cfg.ProxyHeader)
	if err != nil {
		return nil, err
	}
	if err := cfg.Pins.validate(); err != nil {
		return nil, err
	}
	if cfg.PinSigningKey != nil {
		if _, err := signingAlg(cfg.PinSigningKey); err != nil {
			return nil, err
		}
		if len(cfg.Pins.Current) == 0 {
			return nil, errors.New("servertls: Config.PinSigningKey is set but Config.Pins is empty: there is nothing to sign")
		}
	}
	g := &Guard{
		cfg:     cfg,
		logger:  cfg.Logger,
		now:     cfg.Now,
		pins:    clonePins(cfg.Pins),
		hsts:    hsts,
		proxies: proxies,
	}
	g.logLimit.max = cfg.MaxHandshakeLogsPerSecond
	g.serverLogLimit.max = cfg.MaxHandshakeLogsPerSecond
	if files {
		s, err := loadFiles(cfg.CertFile, cfg.KeyFile, cfg.Profile, cfg.Now())
		if err != nil {
			return nil, err
		}
		if m := g.pins.Match(s.chain); m == PinMatchNone {
			return nil, fmt.Errorf("%w: %s; ship a chain with a pinned key or update Config.Pins", ErrPinMismatch, cfg.CertFile)
		} else if m == PinMatchBackup {
			g.logBackupInUse(context.Background())
		}
		g.cert.Store(s)
		g.lastCheck.Store(cfg.Now().UnixNano())
	}
	g.base = g.newTLSConfig()
	if err := g.rotateTickets(cfg.Now()); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.MeterProvider, g)
	if err != nil {
		return nil, err
	}
	g.metrics = m
	events.WarnUnobserved(cfg.Logger, "servertls")
	return g, nil
}

func setDefaults(cfg *Config) {
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = time.Minute
	}
	if cfg.TicketKeyPeriod == 0 {
		cfg.TicketKeyPeriod = 24 * time.Hour
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.PinDocumentTTL == 0 {
		cfg.PinDocumentTTL = 7 * 24 * time.Hour
	}
	if cfg.MaxHandshakeLogsPerSecond == 0 {
		cfg.MaxHandshakeLogsPerSecond = 10
	}
	if cfg.HSTS.MaxAge == 0 {
		cfg.HSTS.MaxAge = 2 * 365 * 24 * time.Hour
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = otel.GetMeterProvider()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
}

// Suites of the intermediate profile in TLS 1.2: ECDHE (forward secrecy)
// with an AEAD, and nothing else. TLS 1.3 suites are all AEAD and are not
// configurable in crypto/tls.
var intermediateSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Groups of both profiles: the hybrid post-quantum X25519MLKEM768 first,
// then X25519 and P-256.
var groups = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}

func (g *Guard) newTLSConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         tls.VersionTLS13,
		CipherSuites:       intermediateSuites,
		CurvePreferences:   groups,
		NextProtos:         g.cfg.NextProtos,
		ClientAuth:         g.cfg.ClientAuth,
		ClientCAs:          g.cfg.ClientCAs,
		Time:               g.cfg.Now,
		GetCertificate:     g.getCertificate,
		GetConfigForClient: g.configForClient,
		// crypto/tls never renegotiates as a server; Renegotiation is a
		// client setting and stays at RenegotiateNever.
	}
	if g.cfg.Profile == Modern {
		c.MinVersion = tls.VersionTLS13
		c.CipherSuites = nil
	}
	return c
}

// TLSConfig returns the server configuration. Use it with [Guard.Listener]
// so that handshake failures are counted; http.Server.ServeTLS works too,
// without the failure counts. Do not modify the returned value: every
// handshake, through a clone too (ServeTLS makes one), runs with it, its
// profile and its current session ticket keys.
func (g *Guard) TLSConfig() *tls.Config { return g.base }

// configForClient runs first in every handshake: it rotates the session
// ticket keys when due and notes what the client offered, so that a
// failure can be classified from the ClientHello rather than from an
// error string. It returns g.base, so that a clone of it (which keeps the
// ticket keys of the moment it was made, or an edited profile) never
// decides a handshake.
func (g *Guard) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if err := g.rotateTickets(g.now()); err != nil {
		return nil, err
	}
	if wc, ok := hello.Conn.(*watchedConn); ok {
		wc.offered = maxVersion(hello.SupportedVersions)
		wc.predicted = g.predict(hello)
	}
	return g.base, nil
}

// rotateTickets installs a new session ticket key when the period is
// over, keeping the previous one so that recent tickets still resume.
func (g *Guard) rotateTickets(now time.Time) error {
	g.ticketMu.Lock()
	defer g.ticketMu.Unlock()
	if now.Before(g.ticketNext) {
		return nil
	}
	var k [32]byte
	if _, err := io.ReadFull(g.cfg.Rand, k[:]); err != nil {
		return fmt.Errorf("servertls: session ticket key from Config.Rand: %w", err)
	}
	keys := [][32]byte{k}
	if len(g.ticketKeys) > 0 && now.Sub(g.ticketNext) < g.cfg.TicketKeyPeriod {
		keys = append(keys, g.ticketKeys[0])
	}
	g.ticketKeys = keys
	g.ticketNext = now.Add(g.cfg.TicketKeyPeriod)
	g.base.SetSessionTicketKeys(keys)
	return nil
}

// Close unregisters the metric callbacks. It is idempotent and always
// returns nil. Guard starts no goroutine of its own besides the
// per-connection handshake watchers of [Guard.Listener].
func (g *Guard) Close() error {
	g.closeOnce.Do(func() {
		if g.metrics != nil && g.metrics.reg != nil {
			_ = g.metrics.reg.Unregister()
		}
	})
	return nil
}
