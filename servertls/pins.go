package servertls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// PinSet is the set of public-key pins the shipped apps carry: RFC 7469
// pin-sha256 values, the base64 SHA-256 of a certificate's
// SubjectPublicKeyInfo (see [SPKIPin]).
type PinSet struct {
	// Version numbers this set in the signed document; raise it whenever
	// the set changes. Required (> 0) when Current is set.
	Version int64 `json:"version"`
	// Current pins a key of the chain served today (leaf or intermediate).
	Current []string `json:"current"`
	// Backup pins keys held offline for the next rotation. At least one
	// is required with Current, or the next rotation bricks the apps.
	Backup []string `json:"backup"`
}

// PinMatch is the result of checking a chain against a PinSet.
type PinMatch string

// The results of [PinSet.Match].
const (
	// PinMatchCurrent: a certificate of the chain has a current pin.
	PinMatchCurrent PinMatch = "current"
	// PinMatchBackup: only a backup pin matches; the apps still connect,
	// and a new set with a new backup should be published.
	PinMatchBackup PinMatch = "backup"
	// PinMatchNone: no pin matches; pinned apps refuse the chain.
	PinMatchNone PinMatch = "none"
)

// SPKIPin returns the pin-sha256 of c: base64 of SHA-256 over its
// SubjectPublicKeyInfo.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Match checks the certificates of chain (as served: leaf first) that
// clients can put on their path: the leaf, then each one that signed the
// one before it, up to the first that did not. A certificate left in the
// file but not issuing the leaf is never on an app's verified chain, so
// its pin does not count. An empty PinSet matches every chain as
// PinMatchCurrent.
func (p PinSet) Match(chain []*x509.Certificate) PinMatch {
	if len(p.Current) == 0 {
		return PinMatchCurrent
	}
	backup := false
	for i, c := range chain {
		if i > 0 && chain[i-1].CheckSignatureFrom(c) != nil {
			break
		}
		pin := SPKIPin(c)
		if slices.Contains(p.Current, pin) {
			return PinMatchCurrent
		}
		backup = backup || slices.Contains(p.Backup, pin)
	}
	if backup {
		return PinMatchBackup
	}
	return PinMatchNone
}

func (p PinSet) validate() error {
	if len(p.Current) == 0 {
		if len(p.Backup) > 0 {
			return errors.New("servertls: Config.Pins.Backup is set but Config.Pins.Current is empty")
		}
		return nil
	}
	if p.Version <= 0 {
		return errors.New("servertls: Config.Pins.Version must be positive; raise it whenever the set changes")
	}
	if len(p.Backup) == 0 {
		return errors.New("servertls: Config.Pins.Backup is empty: ship at least one backup pin (RFC 7469 §4.3), or the next key rotation bricks the apps")
	}
	for _, pin := range append(slices.Clone(p.Current), p.Backup...) {
		// Only the canonical encoding, the one SPKIPin returns: the decoder
		// skips newlines and ignores the last character's spare bits, so
		// another spelling of the current pin would pass as a backup.
		b, err := base64.StdEncoding.DecodeString(pin)
		if err != nil || len(b) != sha256.Size || base64.StdEncoding.EncodeToString(b) != pin {
			return fmt.Errorf("servertls: Config.Pins has %q, not a base64 SHA-256 (44 characters, spelled as servertls.SPKIPin returns it)", pin)
		}
	}
	for _, pin := range p.Backup {
		if slices.Contains(p.Current, pin) {
			return fmt.Errorf("servertls: Config.Pins has %q as both current and backup; a backup must be a different key", pin)
		}
	}
	return nil
}

func clonePins(p PinSet) PinSet {
	return PinSet{Version: p.Version, Current: slices.Clone(p.Current), Backup: slices.Clone(p.Backup)}
}

// SetPins replaces the pin set, for example after a rotation to a backup
// key: the served chain must match the new set, or SetPins returns
// [ErrPinMismatch] and keeps the old one. The version must grow. SetPins
// can be called concurrently with request handling and applies to
// future documents and reloads.
func (g *Guard) SetPins(p PinSet) error {
	if err := p.validate(); err != nil {
		return err
	}
	if len(p.Current) == 0 {
		return errors.New("servertls: SetPins needs a non-empty PinSet.Current")
	}
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if p.Version <= g.pins.Version {
		return fmt.Errorf("servertls: PinSet.Version %d must be above the current %d", p.Version, g.pins.Version)
	}
	if s := g.cert.Load(); s != nil && p.Match(s.chain) == PinMatchNone {
		return ErrPinMismatch
	}
	g.pins = clonePins(p)
	g.doc = signedDoc{}
	return nil
}

// PinDocument is the payload of the signed pin document: a JWT claims set
// with the pin set.
type PinDocument struct {
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	Pins     PinSet `json:"pins"`
}

// PinDocumentType is the "typ" header of the signed pin document.
const PinDocumentType = "apiguard-pins+jwt"

// ErrPinDocument reports a pin document that does not verify, has the
// wrong type, or is expired or not yet valid.
var ErrPinDocument = errors.New("servertls: invalid pin document")

type signedDoc struct {
	body    []byte
	expires time.Time
	renew   time.Time
}

func signingAlg(k any) (jwa.SignatureAlgorithm, error) {
	switch k := k.(type) {
	case ed25519.PrivateKey, ed25519.PublicKey:
		return jwa.EdDSA, nil
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return jwa.ES256, nil
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return jwa.ES256, nil
		}
	}
	return "", fmt.Errorf("servertls: pin signing key is %T; use an ed25519 key or an ECDSA P-256 key", k)
}

// PinDocument returns the current pin set signed as a compact JWS
// (RFC 7515) with PinSigningKey: header typ [PinDocumentType], alg EdDSA
// or ES256, kid PinSigningKeyID; payload a [PinDocument]. A document is
// signed at most once per half of PinDocumentTTL and on every SetPins.
func (g *Guard) PinDocument() ([]byte, error) {
	if g.cfg.PinSigningKey == nil {
		return nil, errors.New("servertls: Config.PinSigningKey is required for a pin document")
	}
	now := g.now()
	g.pinMu.Lock()
	defer g.pinMu.Unlock()
	if g.doc.body != nil && now.Before(g.doc.renew) {
		return g.doc.body, nil
	}
	payload, err := json.Marshal(PinDocument{IssuedAt: now.Unix(), Expiry: now.Add(g.cfg.PinDocumentTTL).Unix(), Pins: g.pins})
	if err != nil {
		return nil, err
	}
	alg, _ := signingAlg(g.cfg.PinSigningKey)
	h := jws.NewHeaders()
	if err := h.Set(jws.TypeKey, PinDocumentType); err != nil {
		return nil, err
	}
	if g.cfg.PinSigningKeyID != "" {
		if err := h.Set(jws.KeyIDKey, g.cfg.PinSigningKeyID); err != nil {
			return nil, err
		}
	}
	body, err := jws.Sign(payload, jws.WithKey(alg, g.cfg.PinSigningKey, jws.WithProtectedHeaders(h)))
	if err != nil {
		return nil, fmt.Errorf("servertls: sign pin document: %w", err)
	}
	g.doc = signedDoc{body: body, expires: now.Add(g.cfg.PinDocumentTTL), renew: now.Add(g.cfg.PinDocumentTTL / 2)}
	return body, nil
}

// PinHandler serves [Guard.PinDocument] to GET and HEAD as
// application/jose, cacheable for an hour. It panics if PinSigningKey is
// not set.
func (g *Guard) PinHandler() http.Handler {
	if g.cfg.PinSigningKey == nil {
		panic("servertls: PinHandler needs Config.PinSigningKey")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := g.PinDocument()
		if err != nil {
			g.logger.Error("servertls: pin document", "event", "pin_document_failed", "error", err.Error())
			http.Error(w, "pin document unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jose")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

// VerifyPinDocument verifies a signed pin document with the public key the
// app trusts (ed25519.PublicKey or P-256 *ecdsa.PublicKey; the algorithm
// follows from the key, never from the document) and checks its type,
// that now lies between iat (one minute of skew allowed) and exp, and
// that its pin set's version is at least minVersion: pass the highest
// version the app has accepted (its shipped set's at first), so that an
// older document, still unexpired and pinning a key since retired, cannot
// be replayed. It returns [ErrPinDocument], wrapped, when any check fails.
func VerifyPinDocument(doc []byte, key crypto.PublicKey, now time.Time, minVersion int64) (PinDocument, error) {
	alg, err := signingAlg(key)
	if err != nil {
		return PinDocument{}, err
	}
	payload, err := jws.Verify(doc, jws.WithKey(alg, key))
	if err != nil {
		return PinDocument{}, fmt.Errorf("%w: %w", ErrPinDocument, err)
	}
	msg, err := jws.Parse(doc)
	if err != nil || len(msg.Signatures()) != 1 || msg.Signatures()[0].ProtectedHeaders().Type() != PinDocumentType {
		return PinDocument{}, fmt.Errorf("%w: typ is not %s", ErrPinDocument, PinDocumentType)
	}
	var d PinDocument
	if err := json.Unmarshal(payload, &d); err != nil {
		return PinDocument{}, fmt.Errorf("%w: %w", ErrPinDocument, err)
	}
	if now.Add(time.Minute).Unix() < d.IssuedAt || now.Unix() >= d.Expiry {
		return PinDocument{}, fmt.Errorf("%w: valid from %d to %d", ErrPinDocument, d.IssuedAt, d.Expiry)
	}
	if err := d.Pins.validate(); err != nil || len(d.Pins.Current) == 0 {
		return PinDocument{}, fmt.Errorf("%w: bad pin set", ErrPinDocument)
	}
	if d.Pins.Version < minVersion {
		return PinDocument{}, fmt.Errorf("%w: version %d is older than %d, a rollback", ErrPinDocument, d.Pins.Version, minVersion)
	}
	return d, nil
}
