package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/apiguard/apiguard/internal/sfv"
)

// Signer signs requests under the default mobile profile: @method,
// @target-uri, content-digest when there is a body, and authorization
// when that header is present; created, keyid, nonce and alg. It signs
// with hmac-sha256 ([NewSigner]), or with a device key, ecdsa-p256-sha256
// or ed25519 ([NewKeySigner]); the zero Signer signs nothing. It is the
// client side, for Go clients and tests. A Signer is safe for concurrent
// use once its fields are set.
type Signer struct {
	keyID  string
	alg    string
	secret []byte        // hmac-sha256
	key    crypto.Signer // ecdsa-p256-sha256, ed25519

	// Label is the signature's label. Default: "sig1".
	Label string
	// Tag, when set, is the tag parameter.
	Tag string
	// Now is the clock of created. Default: time.Now.
	Now func() time.Time
	// Rand is the source of nonces. Default: crypto/rand.Reader.
	Rand io.Reader
}

// NewSigner returns a Signer for the device key keyID with its
// hmac-sha256 secret.
func NewSigner(keyID string, secret []byte) *Signer {
	return &Signer{keyID: keyID, alg: AlgHMACSHA256, secret: append([]byte(nil), secret...)}
}

// NewKeySigner returns a Signer for the device key keyID with its private
// key: an ECDSA P-256 key signs ecdsa-p256-sha256 (r || s, 64 bytes, RFC
// 9421 §3.3.4), an Ed25519 key ed25519 (§3.3.6). key is an
// *ecdsa.PrivateKey, an ed25519.PrivateKey, or any crypto.Signer over
// such a key (one kept in hardware, in a KMS); the algorithm follows from
// key.Public(). Any other key is an error.
func NewKeySigner(keyID string, key crypto.Signer) (*Signer, error) {
	if key == nil {
		return nil, errors.New("signing: NewKeySigner needs a key")
	}
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			return &Signer{keyID: keyID, alg: AlgECDSAP256SHA256, key: key}, nil
		}
	case ed25519.PublicKey:
		return &Signer{keyID: keyID, alg: AlgEd25519, key: key}, nil
	}
	return nil, fmt.Errorf("signing: NewKeySigner: a %T key signs neither %s nor %s", key.Public(), AlgECDSAP256SHA256, AlgEd25519)
}

// sign returns the signature of base with s's key.
func (s *Signer) sign(base []byte) ([]byte, error) {
	switch s.alg {
	case AlgHMACSHA256:
		m := hmac.New(sha256.New, s.secret)
		m.Write(base)
		return m.Sum(nil), nil
	case AlgEd25519:
		sig, err := s.key.Sign(rand.Reader, base, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("signing: sign: %w", err)
		}
		return sig, nil
	case AlgECDSAP256SHA256:
		h := sha256.Sum256(base)
		der, err := s.key.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("signing: sign: %w", err)
		}
		// crypto.Signer answers in ASN.1 DER; RFC 9421 wants r || s.
		var sig struct{ R, S *big.Int }
		if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
			sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
			return nil, errors.New("signing: sign: the key returned a malformed ECDSA signature")
		}
		out := make([]byte, 64)
		sig.R.FillBytes(out[:32])
		sig.S.FillBytes(out[32:])
		return out, nil
	}
	return nil, errors.New("signing: Signer not made by NewSigner or NewKeySigner")
}

// Sign adds Content-Digest (when r has a body), Signature-Input and
// Signature to r. r.URL must be absolute, as for an http.Client. The body
// is read and replaced by an identical one.
func (s *Signer) Sign(r *http.Request) error {
	if r.URL == nil || r.URL.Host == "" || r.URL.Scheme == "" {
		return errors.New("signing: Sign needs an absolute request URL")
	}
	components := []string{"@method", "@target-uri"}
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return fmt.Errorf("signing: read body: %w", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Digest", ContentDigest(body))
		components = append(components, "content-digest")
	}
	if r.Header.Get("Authorization") != "" {
		components = append(components, "authorization")
	}
	now, rnd := time.Now, io.Reader(rand.Reader)
	if s.Now != nil {
		now = s.Now
	}
	if s.Rand != nil {
		rnd = s.Rand
	}
	var n [16]byte
	if _, err := io.ReadFull(rnd, n[:]); err != nil {
		return fmt.Errorf("signing: nonce: %w", err)
	}
	items := make([]sfv.Item, len(components))
	for i, c := range components {
		items[i] = sfv.Item{Value: sfv.BareItem{Kind: sfv.String, Str: c}}
	}
	str := func(v string) sfv.BareItem { return sfv.BareItem{Kind: sfv.String, Str: v} }
	params := sfv.Params{
		{Key: "created", Value: sfv.BareItem{Kind: sfv.Integer, Int: now().Unix()}},
		{Key: "keyid", Value: str(s.keyID)},
		{Key: "nonce", Value: str(base64.RawURLEncoding.EncodeToString(n[:]))},
		{Key: "alg", Value: str(s.alg)},
	}
	if s.Tag != "" {
		params = append(params, sfv.Param{Key: "tag", Value: str(s.Tag)})
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	scheme := strings.ToLower(r.URL.Scheme)
	base, err := compileBase(nil, r, target{scheme: scheme, authority: normalizeAuthority(scheme, host)}, items, params, "")
	if err != nil {
		return err
	}
	signed, err := s.sign(base)
	if err != nil {
		return err
	}
	label := s.Label
	if label == "" {
		label = "sig1"
	}
	in, err := sfv.AppendDictionary(nil, sfv.Dictionary{Members: []sfv.DictMember{{Key: label, Member: sfv.Member{IsInnerList: true, Items: items, Params: params}}}})
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	sig, err := sfv.AppendDictionary(nil, sfv.Dictionary{Members: []sfv.DictMember{{Key: label, Member: sfv.Member{Item: sfv.Item{Value: sfv.BareItem{Kind: sfv.ByteSequence, Bytes: signed}}}}}})
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	inStr, sigStr := string(in), string(sig)
	r.Header.Set("Signature-Input", inStr)
	r.Header.Set("Signature", sigStr)
	return nil
}

// NewTransport returns an http.RoundTripper that signs every request with
// s before handing it to base (nil: http.DefaultTransport). The caller's
// request is not modified: a clone is signed.
func NewTransport(base http.RoundTripper, s *Signer) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, signer: s}
}

type transport struct {
	base   http.RoundTripper
	signer *Signer
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	r2 := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("signing: read body: %w", err)
		}
		r2.Body = io.NopCloser(bytes.NewReader(body))
	}
	if err := t.signer.Sign(r2); err != nil {
		return nil, err
	}
	return t.base.RoundTrip(r2)
}
