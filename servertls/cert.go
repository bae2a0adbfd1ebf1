package servertls

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// maxChain bounds the certificates of one chain that get an expiry gauge.
const maxChain = 8

// served is one loaded certificate with what is needed to notice a change.
type served struct {
	cert            tls.Certificate
	chain           []*x509.Certificate // leaf first, as served
	certPEM, keyPEM []byte
	certStat        fileStamp
	keyStat         fileStamp
}

// fileStamp is what a check compares: the file's identity as well as its
// size and modification time, because a swap to another file (Kubernetes
// renaming its ..data link, a restored copy) can keep both, and file
// times are as coarse as the kernel's tick.
type fileStamp struct {
	size int64
	mod  time.Time
	fi   os.FileInfo
}

func stamp(name string) (fileStamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime(), fi: fi}, nil
}

func (a fileStamp) same(b fileStamp) bool {
	return a.size == b.size && a.mod.Equal(b.mod) && a.fi != nil && b.fi != nil && os.SameFile(a.fi, b.fi)
}

// loadFiles reads and checks a key pair: it must parse, the key must
// match, the leaf must be valid at now and its key strong enough.
func loadFiles(certFile, keyFile string, p Profile, now time.Time) (*served, error) {
	cs, err := stamp(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: Config.CertFile: %w", ErrCertificate, err)
	}
	ks, err := stamp(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: Config.KeyFile: %w", ErrCertificate, err)
	}
	certPEM, err := os.ReadFile(certFile) // #nosec G304 -- the operator's Config.CertFile, never request input
	if err != nil {
		return nil, fmt.Errorf("%w: Config.CertFile: %w", ErrCertificate, err)
	}
	keyPEM, err := os.ReadFile(keyFile) // #nosec G304 -- the operator's Config.KeyFile, never request input
	if err != nil {
		return nil, fmt.Errorf("%w: Config.KeyFile: %w", ErrCertificate, err)
	}
	s, err := parsePair(certPEM, keyPEM, p, now)
	if err != nil {
		return nil, err
	}
	s.certStat, s.keyStat = cs, ks
	return s, nil
}

func parsePair(certPEM, keyPEM []byte, p Profile, now time.Time) (*served, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %w; CertFile must hold the PEM chain, leaf first, and KeyFile its private key", ErrCertificate, err)
	}
	chain := make([]*x509.Certificate, 0, len(c.Certificate))
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
		}
		chain = append(chain, x)
	}
	leaf := chain[0]
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: the leaf is valid from %s to %s, not now; renew it", ErrCertificate,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := checkKey(leaf, p); err != nil {
		return nil, err
	}
	c.Leaf = leaf
	return &served{cert: c, chain: chain, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// checkKey applies Mozilla's certificate key recommendations: ECDSA P-256
// or P-384 (or Ed25519, which few clients take) for both profiles, RSA of
// at least 2048 bits for intermediate only.
func checkKey(leaf *x509.Certificate, p Profile) error {
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if n := k.Curve.Params().BitSize; n < 256 {
			return fmt.Errorf("%w: ECDSA key of %d bits; use P-256", ErrCertificate, n)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if p == Modern {
			return fmt.Errorf("%w: the modern profile wants an ECDSA P-256 key, not RSA", ErrCertificate)
		}
		if n := k.N.BitLen(); n < 2048 {
			return fmt.Errorf("%w: RSA key of %d bits; use ECDSA P-256 or RSA of at least 2048 bits", ErrCertificate, n)
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrCertificate, k)
	}
	return nil
}

func (g *Guard) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if g.cfg.GetCertificate != nil {
		c, err := g.cfg.GetCertificate(hello)
		if err == nil && c == nil {
			err = errUnknownSNI
		}
		if err != nil {
			markPredicted(hello, ReasonUnknownSNI)
			return nil, err
		}
		return c, nil
	}
	g.maybeReload(g.now())
	s := g.cert.Load()
	if g.cfg.RejectUnknownSNI && hello.ServerName != "" && s.chain[0].VerifyHostname(hello.ServerName) != nil {
		markPredicted(hello, ReasonUnknownSNI)
		return nil, errUnknownSNI
	}
	return &s.cert, nil
}

var errUnknownSNI = errors.New("servertls: no certificate for the requested server name")

func markPredicted(hello *tls.ClientHelloInfo, r Reason) {
	if wc, ok := hello.Conn.(*watchedConn); ok {
		wc.predicted = r
	}
}

// maybeReload checks the files if ReloadInterval has passed since the last
// check; only one caller does, the others serve the current certificate.
func (g *Guard) maybeReload(now time.Time) {
	if g.cert.Load() == nil {
		return
	}
	last := g.lastCheck.Load()
	if now.UnixNano()-last < int64(g.cfg.ReloadInterval) || !g.lastCheck.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	_ = g.reload(context.Background(), now, false)
}

// Reload checks the certificate files now, whatever ReloadInterval says,
// for example on SIGHUP. It returns nil when the files are unchanged or
// were installed, and otherwise the reason the old certificate stays in
// service ([ErrCertificate], [ErrPinMismatch]). With an application
// GetCertificate it does nothing. Reload can be called concurrently with
// request handling and applies to future handshakes.
func (g *Guard) Reload() error {
	if g.cert.Load() == nil {
		return nil
	}
	now := g.now()
	g.lastCheck.Store(now.UnixNano())
	return g.reload(context.Background(), now, true)
}

func (g *Guard) reload(ctx context.Context, now time.Time, force bool) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.cert.Load()
	cs, err1 := stamp(g.cfg.CertFile)
	ks, err2 := stamp(g.cfg.KeyFile)
	if err1 == nil && err2 == nil && !force && cs.same(old.certStat) && ks.same(old.keyStat) {
		return nil
	}
	s, err := loadFiles(g.cfg.CertFile, g.cfg.KeyFile, g.cfg.Profile, now)
	if err != nil {
		g.metrics.reloaded(ctx, "failed")
		g.logger.LogAttrs(ctx, slog.LevelWarn, "servertls: certificate reload failed; the old certificate stays in service",
			slog.String("event", "tls_certificate_reload_failed"), slog.String("reason", "unusable"),
			slog.String("error", err.Error()))
		return err
	}
	if bytes.Equal(s.certPEM, old.certPEM) && bytes.Equal(s.keyPEM, old.keyPEM) {
		// Touched, not changed: remember the new stamps only.
		cp := *old
		cp.certStat, cp.keyStat = s.certStat, s.keyStat
		g.cert.Store(&cp)
		return nil
	}
	g.pinMu.Lock()
	match := g.pins.Match(s.chain)
	g.pinMu.Unlock()
	if match == PinMatchNone {
		g.metrics.reloaded(ctx, "pin_mismatch")
		// An expired old leaf serves no one, pinned apps included.
		keep := !g.cfg.ServeUnpinnedOnReload && !now.After(old.chain[0].NotAfter)
		g.logger.LogAttrs(ctx, slog.LevelError, "servertls: reloaded chain matches no pin the apps carry",
			slog.String("event", "pin_mismatch"), slog.String("reason", "reload"),
			slog.Bool("old_certificate_kept", keep),
			slog.String("new_leaf_sha256", fingerprint(s.chain[0])),
			slog.String("new_spki_pin", SPKIPin(s.chain[0])))
		if keep {
			return fmt.Errorf("%w: %s", ErrPinMismatch, g.cfg.CertFile)
		}
	}
	g.cert.Store(s)
	g.metrics.reloaded(ctx, "changed")
	g.logger.LogAttrs(ctx, slog.LevelInfo, "servertls: certificate chain changed",
		slog.String("event", "tls_certificate_changed"),
		slog.String("old_leaf_sha256", fingerprint(old.chain[0])),
		slog.String("new_leaf_sha256", fingerprint(s.chain[0])),
		slog.Int("new_chain_length", len(s.chain)),
		slog.Time("new_leaf_not_after", s.chain[0].NotAfter))
	if match == PinMatchBackup {
		g.logBackupInUse(ctx)
	}
	return nil
}

func (g *Guard) logBackupInUse(ctx context.Context) {
	g.logger.LogAttrs(ctx, slog.LevelWarn, "servertls: the served chain matches only a backup pin; publish a new pin set with a new backup",
		slog.String("event", "pin_backup_in_use"))
}

// CheckChain checks a chain the application serves through its own
// GetCertificate against the pins, and returns [ErrPinMismatch] when no
// certificate of it is pinned. It logs nothing.
func (g *Guard) CheckChain(c *tls.Certificate) error {
	chain := make([]*x509.Certificate, 0, len(c.Certificate))
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrCertificate, err)
		}
		chain = append(chain, x)
	}
	if len(chain) == 0 {
		return fmt.Errorf("%w: empty chain", ErrCertificate)
	}
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if g.pins.Match(chain) == PinMatchNone {
		return ErrPinMismatch
	}
	return nil
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
