package auth

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/apiguard/apiguard/internal/replay"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// DPoP rejections (RFC 9449).
var (
	// ErrDPoPRequired: a bearer token was sent where DPoP is required.
	ErrDPoPRequired = errors.New("auth: DPoP-bound token required")
	// ErrDPoPProof: the DPoP proof is missing, repeated or fails a check
	// of RFC 9449 §4.3. 401 invalid_dpop_proof.
	ErrDPoPProof = errors.New("auth: invalid DPoP proof")
	// ErrDPoPBinding: the token's cnf.jkt does not match the proof key, or
	// a bound token came without its proof (a stolen token used without
	// its key), or an unbound token came with the DPoP scheme.
	ErrDPoPBinding = errors.New("auth: token not bound to the proof key")
	// ErrDPoPReplay: the proof's jti was used before.
	ErrDPoPReplay = errors.New("auth: DPoP proof replayed")
	// ErrDPoPNonce: the proof lacks a valid server nonce; the answer
	// carries a fresh DPoP-Nonce (use_dpop_nonce).
	ErrDPoPNonce = errors.New("auth: DPoP nonce required")
)

// ReplayStore records single-use identifiers. Implementations must be
// safe for concurrent use; redisstore provides one for several instances.
type ReplayStore interface {
	// Use records id as used until exp. It returns true when id was not
	// recorded before (and is now), false when it was, or when the store
	// cannot prove it was not. An error means the store could not answer;
	// the request is then rejected (fail closed).
	Use(ctx context.Context, id string, exp time.Time) (bool, error)
}

// MemoryReplayStore is the bounded in-memory [ReplayStore]. When it is
// full it evicts entries and, so that eviction opens no replay hole,
// refuses every identifier that expires no later than an unexpired entry
// it evicted (fail closed).
//
// The Verifier records each DPoP proof's jti under its proof key (the
// thumbprint jkt), so that no token holder's proofs cost another's: when
// the store is full, the key holding the most jti values, if more than
// its share (size/64, at least 64), gives up its oldest; an evicted jti
// raises a floor for its own key only (its proofs with an iat at or
// before the evicted one's are refused); and at most size/16 keys keep a
// floor, the lowest folded into one floor for all past that. So one
// holder flooding proofs, however far ahead it dates them, never makes
// another holder's proofs fail. Identifiers given to Use directly have no
// key: their evictions raise the floor for all.
//
// Its memory ends with the process: a proof used just before a restart
// could be used again after it, within its window (Config.DPoPProofWindow
// plus ClockSkew). Refusing every proof from before a restart would refuse
// honest clients whose clocks run a little behind for that long after each
// deploy, so the store does not; services for which that window matters
// use a shared store (redisstore), which survives restarts. It is safe for
// concurrent use by multiple goroutines.
type MemoryReplayStore struct {
	c *replay.Cache
}

// NewMemoryReplayStore returns a store of at most size entries (Default
// when size <= 0: 100000) on the clock now (nil: time.Now).
func NewMemoryReplayStore(size int, now func() time.Time) *MemoryReplayStore {
	if size <= 0 {
		size = 100_000
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayStore{c: replay.New(size, now(), now)}
}

// Use implements [ReplayStore].
func (s *MemoryReplayStore) Use(_ context.Context, id string, exp time.Time) (bool, error) {
	return s.c.Use(id, exp) == replay.Fresh, nil
}

// useScoped is Use of id recorded under scope (see the type's doc).
func (s *MemoryReplayStore) useScoped(scope, id string, exp time.Time) bool {
	return s.c.UseScoped(scope, id, exp) == replay.Fresh
}

// useJTI records a proof's jti, of the proof key whose thumbprint is jkt,
// as used until exp: scoped by jkt in the in-memory store (see
// [MemoryReplayStore]); in any other store as one id that binds jti to
// the key, hashed to bound its size and keep the raw jti out of the
// store's keys.
func (d *dpopChecker) useJTI(ctx context.Context, jkt, jti string, exp time.Time) (bool, error) {
	if m, ok := d.store.(*MemoryReplayStore); ok {
		return m.useScoped(jkt, jti, exp), nil
	}
	id := sha256.Sum256([]byte(jkt + "\x00" + jti))
	return d.store.Use(ctx, "dpop:"+hex.EncodeToString(id[:]), exp)
}

// Len returns the number of identifiers held.
func (s *MemoryReplayStore) Len() int { return s.c.Len() }

type dpopChecker struct {
	cfg       *Config
	base      string // normalised DPoPURL, without a trailing slash
	algsParam string
	store     ReplayStore
	nonces    *nonceSource // nil: no server nonces
}

func newDPoPChecker(cfg *Config) (*dpopChecker, error) {
	u, err := normalizeURL(cfg.DPoPURL)
	if err != nil {
		return nil, fmt.Errorf("auth: Config.DPoPURL: %w", err)
	}
	u = strings.TrimSuffix(u, "/")
	algs := make([]string, len(cfg.DPoPAlgorithms))
	for i, a := range cfg.DPoPAlgorithms {
		algs[i] = a.String()
	}
	d := &dpopChecker{cfg: cfg, base: u, algsParam: strings.Join(algs, " "), store: cfg.ReplayStore}
	if d.store == nil {
		d.store = NewMemoryReplayStore(cfg.ReplayCacheSize, cfg.Now)
	}
	if cfg.DPoPNonceKey != nil {
		d.nonces = &nonceSource{key: slices.Clone(cfg.DPoPNonceKey), lifetime: cfg.DPoPNonceLifetime}
	}
	return d, nil
}

// checkBinding applies the DPoP rules to a verified token.
func (v *Verifier) checkBinding(r *http.Request, scheme, token string, c *Claims) error {
	bound := c.KeyThumbprint != ""
	switch {
	case scheme == "Bearer" && bound:
		return ErrDPoPBinding // a DPoP-bound token used as a bearer token
	case scheme == "Bearer":
		if v.cfg.DPoP == DPoPRequired {
			return ErrDPoPRequired
		}
		return nil
	case !bound:
		return ErrDPoPBinding // the DPoP scheme with an unbound token
	}
	return v.dpop.verifyProof(r, token, c.KeyThumbprint)
}

// proofClaims are the claims of a DPoP proof.
type proofClaims struct {
	Jti   string      `json:"jti"`
	Htm   string      `json:"htm"`
	Htu   string      `json:"htu"`
	Iat   numericDate `json:"iat"`
	Ath   string      `json:"ath"`
	Nonce string      `json:"nonce"`
}

// maxProofSize caps a DPoP header.
const maxProofSize = 4 << 10

// maxProofRSABits caps the RSA key of a proof: the key is the client's,
// and its signature is checked before anything binds it to a token, so
// its size must not let a client buy expensive verifications.
const maxProofRSABits = 4096

// verifyProof checks the request's DPoP proof per RFC 9449 §4.3, and that
// the RFC 7638 thumbprint of its key is jkt (the token's cnf.jkt). The jti
// is recorded only after every other check passed, so a failed proof does
// not burn it.
func (d *dpopChecker) verifyProof(r *http.Request, token, jkt string) (err error) {
	defer func() { // a panic in the JOSE library on a crafted jwk is a refusal
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: malformed", ErrDPoPProof)
		}
	}()
	vals := r.Header.Values("DPoP")
	if len(vals) != 1 {
		return fmt.Errorf("%w: %d DPoP headers", ErrDPoPProof, len(vals))
	}
	jws, err := parseCompact(vals[0], maxProofSize)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDPoPProof, err)
	}
	if !strings.EqualFold(jws.header.Typ, "dpop+jwt") {
		return fmt.Errorf("%w: typ", ErrDPoPProof)
	}
	alg := jwa.SignatureAlgorithm(jws.header.Alg)
	if !slices.Contains(d.cfg.DPoPAlgorithms, alg) {
		return fmt.Errorf("%w: alg", ErrDPoPProof)
	}
	if len(jws.header.JWK) == 0 {
		return fmt.Errorf("%w: no jwk", ErrDPoPProof)
	}
	key, err := jwk.ParseKey(jws.header.JWK)
	if err != nil {
		return fmt.Errorf("%w: jwk: %v", ErrDPoPProof, err)
	}
	if isPrivate(key) {
		return fmt.Errorf("%w: jwk holds private key material", ErrDPoPProof)
	}
	vk, err := toVerifyKey(key, []jwa.SignatureAlgorithm{alg})
	if err != nil {
		return fmt.Errorf("%w: jwk: %v", ErrDPoPProof, err)
	}
	if k, ok := vk.pub.(*rsa.PublicKey); ok && k.N.BitLen() > maxProofRSABits {
		return fmt.Errorf("%w: RSA key of %d bits", ErrDPoPProof, k.N.BitLen())
	}
	if err := verifySignature(alg, vk.pub, jws.input, jws.sig); err != nil {
		return fmt.Errorf("%w: signature", ErrDPoPProof)
	}
	var pc proofClaims
	if len(jws.payload) == 0 || jws.payload[0] != '{' || json.Unmarshal(jws.payload, &pc) != nil {
		return fmt.Errorf("%w: claims", ErrDPoPProof)
	}
	if pc.Jti == "" || len(pc.Jti) > 256 || pc.Htm == "" || pc.Htu == "" || !pc.Iat.set {
		return fmt.Errorf("%w: missing claim", ErrDPoPProof)
	}
	if pc.Htm != r.Method {
		return fmt.Errorf("%w: htm", ErrDPoPProof)
	}
	if !d.htuMatches(pc.Htu, r) {
		return fmt.Errorf("%w: htu", ErrDPoPProof)
	}
	now := d.cfg.Now()
	window := d.cfg.DPoPProofWindow + d.cfg.ClockSkew
	if pc.Iat.t.Before(now.Add(-window)) {
		return fmt.Errorf("%w: iat older than the window", ErrDPoPProof)
	}
	if pc.Iat.t.After(now.Add(d.cfg.DPoPFutureSkew)) {
		return fmt.Errorf("%w: iat further in the future than DPoPFutureSkew", ErrDPoPProof)
	}
	ath := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare([]byte(pc.Ath), []byte(base64.RawURLEncoding.EncodeToString(ath[:]))) != 1 {
		return fmt.Errorf("%w: ath", ErrDPoPProof)
	}
	if d.nonces != nil && !d.nonces.valid(pc.Nonce, now, d.cfg.ClockSkew) {
		return ErrDPoPNonce
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("%w: thumbprint: %v", ErrDPoPProof, err)
	}
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(tp)), []byte(jkt)) != 1 {
		return ErrDPoPBinding
	}
	// Single use, per proof key.
	fresh, err := d.useJTI(r.Context(), jkt, pc.Jti, pc.Iat.t.Add(window))
	if err != nil {
		return &UnavailableError{RetryAfter: time.Second, Err: fmt.Errorf("replay store: %w", err)}
	}
	if !fresh {
		return ErrDPoPReplay
	}
	return nil
}

func isPrivate(k jwk.Key) bool {
	switch k.(type) {
	case jwk.RSAPrivateKey, jwk.ECDSAPrivateKey, jwk.OKPPrivateKey, jwk.SymmetricKey:
		return true
	}
	return false
}

// htuMatches compares the proof's htu with the configured base URL joined
// with the request path, ignoring query and fragment, after syntax-based
// normalisation (RFC 3986 §6.2.2, as RFC 9449 §4.3 asks): case of scheme
// and host, default port, percent-encoding, dot segments.
//
// The request path itself must already be in normal form as far as dot
// segments go ("/a/../b", "/a/%2E%2E/b", "/./b" are refused): whether
// such a path reaches the handler of "/b" or of "/a/..." depends on the
// router and the proxies in front (net/http's ServeMux cleans it, chi and
// most proxies do not), and a proof must bind to the resource actually
// served, not to what the path would resolve to. Honest clients resolve
// dot segments before sending (RFC 3986 §5.2), so they never send any.
// The htu, which names the resource the client meant, is normalised.
func (d *dpopChecker) htuMatches(htu string, r *http.Request) bool {
	got, err := normalizeURL(htu)
	if err != nil {
		return false
	}
	p := normalizePercent(r.URL.EscapedPath())
	if p == "" {
		p = "/"
	}
	if clean, err := removeDotSegments(p); err != nil || clean != p {
		return false
	}
	want, err := normalizeURL(d.base + p)
	return err == nil && got == want
}

// normalizeURL parses an absolute http(s) URL and returns it normalised
// (lower-case scheme and host, no default port, percent-encodings
// upper-cased and unreserved ones decoded, dot segments removed, "/" for
// an empty path) without query and fragment.
func normalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "https" && scheme != "http") || u.Host == "" || u.User != nil {
		return "", errors.New("not an absolute http(s) URL")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if host == "" {
		return "", errors.New("not an absolute http(s) URL")
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	p, err := removeDotSegments(normalizePercent(u.EscapedPath()))
	if err != nil {
		return "", err
	}
	if p == "" {
		p = "/"
	}
	return scheme + "://" + host + p, nil
}

// removeDotSegments is RFC 3986 §5.2.4 on an escaped absolute path, by
// net/url: resolving an absolute URL against nothing removes its dot
// segments and keeps its escaping. Percent-encoded dots ("%2E") must be
// decoded first ([normalizePercent]) to count as dot segments.
func removeDotSegments(p string) (string, error) {
	if !strings.Contains(p, ".") {
		return p, nil
	}
	u := &url.URL{Scheme: "https", Host: "x", RawPath: p}
	var err error
	if u.Path, err = url.PathUnescape(p); err != nil {
		return "", err
	}
	return new(url.URL).ResolveReference(u).EscapedPath(), nil
}

// normalizePercent upper-cases percent-encodings and decodes those of
// unreserved characters (RFC 3986 §6.2.2.1 and §6.2.2.2). net/url has no
// such function: its PathUnescape decodes reserved characters too ("%2F"
// into "/"), which would change the path's segments.
func normalizePercent(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			c := unhex(p[i+1])<<4 | unhex(p[i+2])
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
				b.WriteByte(c)
			} else {
				b.WriteString(strings.ToUpper(p[i : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// nonceSource issues and checks stateless DPoP nonces: the issue time and
// an HMAC-SHA256 over it, so that any instance with the key accepts them.
type nonceSource struct {
	key      []byte
	lifetime time.Duration
}

func (n *nonceSource) mac(ts []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("apiguard-dpop-nonce\x00"))
	m.Write(ts)
	return m.Sum(nil)[:16]
}

func (n *nonceSource) issue(now time.Time) string {
	var buf [8 + 16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(max(now.Unix(), 0))) // #nosec G115 -- clamped at 0
	copy(buf[8:], n.mac(buf[:8]))
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

// age returns how old a valid nonce is, and false for an invalid one.
func (n *nonceSource) age(nonce string, now time.Time, skew time.Duration) (time.Duration, bool) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 24 || !hmac.Equal(b[8:], n.mac(b[:8])) {
		return 0, false
	}
	secs := binary.BigEndian.Uint64(b[:8])
	if secs > math.MaxInt64 {
		return 0, false
	}
	ts := time.Unix(int64(secs), 0) // #nosec G115 -- checked above
	age := now.Sub(ts)
	if age > n.lifetime || age < -skew {
		return 0, false
	}
	return age, true
}

func (n *nonceSource) valid(nonce string, now time.Time, skew time.Duration) bool {
	_, ok := n.age(nonce, now, skew)
	return ok
}

// refreshNonce gives an accepted DPoP request a fresh nonce when the one
// it used is past half its lifetime (RFC 9449 §8.2).
func (d *dpopChecker) refreshNonce(w http.ResponseWriter, r *http.Request) {
	if d.nonces == nil || r.Header.Get("DPoP") == "" {
		return
	}
	now := d.cfg.Now()
	jws, err := parseCompact(r.Header.Get("DPoP"), maxProofSize)
	if err != nil {
		return
	}
	var pc proofClaims
	if json.Unmarshal(jws.payload, &pc) != nil {
		return
	}
	if age, ok := d.nonces.age(pc.Nonce, now, d.cfg.ClockSkew); !ok || age > d.nonces.lifetime/2 {
		w.Header().Set("DPoP-Nonce", d.nonces.issue(now))
	}
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a JWK,
// base64url-encoded: the value of cnf.jkt for a key.
func Thumbprint(key jwk.Key) (string, error) {
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("auth: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// AccessTokenHash returns the ath value of a DPoP proof for token:
// base64url(SHA-256(token)).
func AccessTokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
