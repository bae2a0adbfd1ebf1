package signing

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/apiguard/apiguard/internal/sfv"
)

// Signer signs requests with hmac-sha256 under the default mobile profile:
// @method, @target-uri, content-digest when there is a body, and
// authorization when that header is present; created, keyid, nonce and
// alg. It is the client side, for Go clients and tests. A Signer is safe
// for concurrent use once its fields are set.
type Signer struct {
	keyID  string
	secret []byte

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
	return &Signer{keyID: keyID, secret: append([]byte(nil), secret...)}
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
		{Key: "alg", Value: str(AlgHMACSHA256)},
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
	m := hmac.New(sha256.New, s.secret)
	m.Write(base)
	label := s.Label
	if label == "" {
		label = "sig1"
	}
	in, err := sfv.AppendDictionary(nil, sfv.Dictionary{Members: []sfv.DictMember{{Key: label, Member: sfv.Member{IsInnerList: true, Items: items, Params: params}}}})
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	sig, err := sfv.AppendDictionary(nil, sfv.Dictionary{Members: []sfv.DictMember{{Key: label, Member: sfv.Member{Item: sfv.Item{Value: sfv.BareItem{Kind: sfv.ByteSequence, Bytes: m.Sum(nil)}}}}}})
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
