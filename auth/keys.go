package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
const minRSABits = 2048

// maxRSABits is the largest RSA modulus accepted: the cost of a
// verification grows with the square of the modulus, and no issuer needs
// more.
const maxRSABits = 8192

// verifyKey is one public key usable for token signatures.
type verifyKey struct {
	kid  string
	algs []jwa.SignatureAlgorithm // the algorithms this key may verify
	pub  crypto.PublicKey
}

// keySet is an immutable, indexed set of verification keys.
type keySet struct {
	byKid   map[string][]*verifyKey
	all     []*verifyKey
	fetched time.Time // when the keys were obtained
	digest  string    // identifies the content, to detect rotation
}

// lookup returns the key for kid and alg. A token without kid matches only
// when exactly one key fits alg.
func (s *keySet) lookup(kid string, alg jwa.SignatureAlgorithm) *verifyKey {
	if s == nil {
		return nil
	}
	if kid != "" {
		for _, k := range s.byKid[kid] {
			if slices.Contains(k.algs, alg) {
				return k
			}
		}
		return nil
	}
	var found *verifyKey
	for _, k := range s.all {
		if slices.Contains(k.algs, alg) {
			if found != nil {
				return nil
			}
			found = k
		}
	}
	return found
}

// algsForKey returns the allowed algorithms that fit the key's type and
// size, restricted to the key's own alg when it declares one.
func algsForKey(pub crypto.PublicKey, declared string, allowed []jwa.SignatureAlgorithm) ([]jwa.SignatureAlgorithm, error) {
	var fit []jwa.SignatureAlgorithm
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too small", k.N.BitLen())
		}
		if k.N.BitLen() > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too large", k.N.BitLen())
		}
		fit = []jwa.SignatureAlgorithm{jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			fit = []jwa.SignatureAlgorithm{jwa.ES256}
		case elliptic.P384():
			fit = []jwa.SignatureAlgorithm{jwa.ES384}
		case elliptic.P521():
			fit = []jwa.SignatureAlgorithm{jwa.ES512}
		}
	case ed25519.PublicKey:
		fit = []jwa.SignatureAlgorithm{jwa.EdDSA}
	default:
		return nil, fmt.Errorf("key type %T cannot verify signatures", pub)
	}
	var out []jwa.SignatureAlgorithm
	for _, a := range fit {
		if slices.Contains(allowed, a) && (declared == "" || declared == a.String()) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("key fits none of the allowed algorithms")
	}
	return out, nil
}

// toVerifyKey checks one JWK and turns it into a verifyKey.
func toVerifyKey(k jwk.Key, allowed []jwa.SignatureAlgorithm) (*verifyKey, error) {
	if u := k.KeyUsage(); u != "" && u != "sig" {
		return nil, fmt.Errorf("use %q is not sig", u)
	}
	if ops := k.KeyOps(); len(ops) > 0 && !slices.Contains(ops, jwk.KeyOpVerify) {
		return nil, errors.New("key_ops lacks verify")
	}
	if k.KeyType() == jwa.OctetSeq {
		return nil, errors.New("symmetric keys never verify access tokens")
	}
	pk, err := jwk.PublicKeyOf(k)
	if err != nil {
		return nil, err
	}
	var raw any
	if err := pk.Raw(&raw); err != nil {
		return nil, err
	}
	var pub crypto.PublicKey
	switch r := raw.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		pub = r
	case rsa.PublicKey:
		pub = &r
	case ecdsa.PublicKey:
		pub = &r
	default:
		return nil, fmt.Errorf("unsupported key type %T", raw)
	}
	declared := ""
	if a := k.Algorithm(); a != nil {
		declared = a.String()
	}
	algs, err := algsForKey(pub, declared, allowed)
	if err != nil {
		return nil, err
	}
	return &verifyKey{kid: k.KeyID(), algs: algs, pub: pub}, nil
}

// buildKeySet indexes keys, skipping (and reporting) the unusable ones.
func buildKeySet(keys []jwk.Key, allowed []jwa.SignatureAlgorithm, fetched time.Time, skip func(kid string, err error)) *keySet {
	s := &keySet{byKid: map[string][]*verifyKey{}, fetched: fetched}
	var digest []string
	for _, k := range keys {
		vk, err := toVerifyKey(k, allowed)
		if err != nil {
			skip(k.KeyID(), err)
			continue
		}
		s.all = append(s.all, vk)
		s.byKid[vk.kid] = append(s.byKid[vk.kid], vk)
		tp, _ := k.Thumbprint(crypto.SHA256)
		digest = append(digest, vk.kid+":"+string(tp))
	}
	slices.Sort(digest)
	s.digest = strings.Join(digest, ",")
	return s
}

// parseJWKS parses a JWKS document key by key, so that one malformed key
// is skipped rather than fatal to the set.
func parseJWKS(body []byte, skip func(kid string, err error)) ([]jwk.Key, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New("decode jwks: no keys member")
	}
	keys := make([]jwk.Key, 0, len(doc.Keys))
	for _, raw := range doc.Keys {
		k, err := jwk.ParseKey(raw)
		if err != nil {
			skip("", err)
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func setKeys(s jwk.Set) []jwk.Key {
	keys := make([]jwk.Key, 0, s.Len())
	for i := range s.Len() {
		if k, ok := s.Key(i); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// issuerKeys is the key source of one issuer: static or remote.
type issuerKeys struct {
	issuer *Issuer
	v      *Verifier
	cur    atomic.Pointer[keySet]

	// remote only
	mu          sync.Mutex
	inflight    chan struct{} // closed when the running fetch ends
	lastAttempt time.Time     // of any fetch, by the injected clock
	lastErr     error
	nextRefresh time.Duration // from the last response's Cache-Control
	refreshNow  chan struct{} // wakes the background loop
}

// keysFor returns the key to verify a token with, fetching the JWKS
// when it has never been fetched or does not know kid (rate-limited).
func (ik *issuerKeys) keysFor(ctx context.Context, kid string, alg jwa.SignatureAlgorithm) (*verifyKey, error) {
	now := ik.v.now()
	set := ik.cur.Load()
	if ik.issuer.JWKSURL == "" {
		if k := set.lookup(kid, alg); k != nil {
			return k, nil
		}
		return nil, ErrUnknownKey
	}
	if set == nil {
		// Never fetched: wait for the first fetch (shared by all waiters).
		if err := ik.refresh(ctx); err != nil || ik.cur.Load() == nil {
			return nil, ik.unavailable(err)
		}
		set = ik.cur.Load()
	}
	if now.Sub(set.fetched) > ik.v.cfg.MaxKeyStaleness {
		ik.wake()
		return nil, ik.unavailable(nil)
	}
	if k := set.lookup(kid, alg); k != nil {
		return k, nil
	}
	// Unknown kid: perhaps the issuer rotated. One refresh per
	// MinKeyRefresh, deduplicated; bogus kids remembered until the set
	// changes, so a flood of random kids costs no fetches and no waits.
	if ik.v.isBogusKid(ik, kid, set) {
		return nil, ErrUnknownKey
	}
	ik.mu.Lock()
	allowed := ik.inflight != nil || now.Sub(ik.lastAttempt) >= ik.v.cfg.MinKeyRefresh
	ik.mu.Unlock()
	if allowed {
		_ = ik.refresh(ctx)
		if set2 := ik.cur.Load(); set2 != set {
			set = set2
			if k := set.lookup(kid, alg); k != nil {
				return k, nil
			}
		}
		ik.v.rememberBogusKid(ik, kid, set)
	}
	return nil, ErrUnknownKey
}

func (ik *issuerKeys) unavailable(err error) error {
	ik.mu.Lock()
	defer ik.mu.Unlock()
	if err == nil {
		err = ik.lastErr
	}
	retry := ik.v.cfg.MinKeyRefresh - ik.v.now().Sub(ik.lastAttempt)
	if retry < time.Second {
		retry = time.Second
	}
	return &UnavailableError{RetryAfter: retry, Err: err}
}

// refresh fetches the JWKS once, sharing a fetch already under way, and
// waits for its result, bounded by ctx.
func (ik *issuerKeys) refresh(ctx context.Context) error {
	ik.mu.Lock()
	ch := ik.inflight
	if ch == nil {
		ch = make(chan struct{})
		ik.inflight = ch
		ik.lastAttempt = ik.v.now()
		ik.v.wg.Add(1)
		go ik.fetch(ch)
	}
	ik.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	ik.mu.Lock()
	defer ik.mu.Unlock()
	return ik.lastErr
}

// fetch runs one JWKS fetch under the verifier's lifetime context, not a
// request's: a client that hangs up does not cancel it for the others.
func (ik *issuerKeys) fetch(done chan struct{}) {
	defer ik.v.wg.Done()
	set, maxAge, err := ik.download()
	ik.mu.Lock()
	ik.lastErr = err
	if err == nil {
		ik.nextRefresh = maxAge
	}
	ik.inflight = nil
	ik.mu.Unlock()
	log := ik.v.cfg.Logger
	if err != nil {
		log.LogAttrs(ik.v.ctx, slog.LevelWarn, "auth: jwks fetch failed",
			slog.String("event", "jwks_error"), slog.String("reason", "fetch"),
			slog.String("issuer", ik.issuer.Issuer), slog.String("error", err.Error()))
	} else {
		old := ik.cur.Swap(set)
		if old == nil || old.digest != set.digest {
			ik.v.keysRotated()
			log.LogAttrs(ik.v.ctx, slog.LevelInfo, "auth: jwks loaded",
				slog.String("event", "jwks_refresh"), slog.String("reason", "changed"),
				slog.String("issuer", ik.issuer.Issuer), slog.Int("keys", len(set.all)))
		}
	}
	close(done)
}

func (ik *issuerKeys) download() (*keySet, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ik.v.ctx, ik.v.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ik.issuer.JWKSURL, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := ik.v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, 0, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, ik.v.cfg.MaxJWKSSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: %w", err)
	}
	if int64(len(body)) > ik.v.cfg.MaxJWKSSize {
		return nil, 0, fmt.Errorf("fetch jwks: body over %d bytes", ik.v.cfg.MaxJWKSSize)
	}
	skip := ik.skipLogger()
	keys, err := parseJWKS(body, skip)
	if err != nil {
		return nil, 0, err
	}
	set := buildKeySet(keys, ik.issuer.Algorithms, ik.v.now(), skip)
	if len(set.all) == 0 {
		return nil, 0, errors.New("fetch jwks: no usable key")
	}
	return set, ik.maxAge(resp.Header.Get("Cache-Control")), nil
}

// maxAge reads max-age from Cache-Control, clamped to
// [MinKeyRefresh, MaxKeyRefresh]; without one, MaxKeyRefresh.
func (ik *issuerKeys) maxAge(cc string) time.Duration {
	d := ik.v.cfg.MaxKeyRefresh
	for _, dir := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
		if strings.EqualFold(name, "max-age") {
			if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 && n < 1<<31 {
				d = time.Duration(n) * time.Second
			}
		}
	}
	return min(max(d, ik.v.cfg.MinKeyRefresh), ik.v.cfg.MaxKeyRefresh)
}

func (ik *issuerKeys) skipLogger() func(string, error) {
	return func(kid string, err error) {
		ik.v.cfg.Logger.LogAttrs(ik.v.ctx, slog.LevelWarn, "auth: jwks key skipped",
			slog.String("event", "jwks_key_skipped"), slog.String("reason", "unusable_key"),
			slog.String("issuer", ik.issuer.Issuer), slog.String("kid", kid), slog.String("error", err.Error()))
	}
}

func (ik *issuerKeys) wake() {
	select {
	case ik.refreshNow <- struct{}{}:
	default:
	}
}

// loop refreshes a remote JWKS in the background: at the interval the
// last response asked for, sooner after a failure (with back-off), and
// when woken. It ends when the verifier is closed.
func (ik *issuerKeys) loop() {
	defer ik.v.wg.Done()
	backoff := time.Second
	for {
		_ = ik.refresh(ik.v.ctx)
		ik.mu.Lock()
		wait, failed := ik.nextRefresh, ik.lastErr != nil
		ik.mu.Unlock()
		if failed {
			wait = backoff
			backoff = min(backoff*2, ik.v.cfg.MinKeyRefresh)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ik.v.ctx.Done():
			t.Stop()
			return
		case <-ik.refreshNow:
			t.Stop()
		case <-t.C:
		}
	}
}

// verifySignature checks a JWS signature over input with the standard
// library's implementation of alg.
func verifySignature(alg jwa.SignatureAlgorithm, pub crypto.PublicKey, input, sig []byte) error {
	var h hash.Hash
	var ch crypto.Hash
	switch alg {
	case jwa.RS256, jwa.PS256, jwa.ES256:
		h, ch = sha256.New(), crypto.SHA256
	case jwa.RS384, jwa.PS384, jwa.ES384:
		h, ch = sha512.New384(), crypto.SHA384
	case jwa.RS512, jwa.PS512, jwa.ES512:
		h, ch = sha512.New(), crypto.SHA512
	case jwa.EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok || !ed25519.Verify(k, input, sig) {
			return ErrSignature
		}
		return nil
	default:
		return ErrAlgorithm
	}
	h.Write(input)
	digest := h.Sum(nil)
	switch alg {
	case jwa.RS256, jwa.RS384, jwa.RS512:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || rsa.VerifyPKCS1v15(k, ch, digest, sig) != nil {
			return ErrSignature
		}
	case jwa.PS256, jwa.PS384, jwa.PS512:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || rsa.VerifyPSS(k, ch, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) != nil {
			return ErrSignature
		}
	default: // ES*: r || s, each the size of the curve (RFC 7518 §3.4)
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return ErrSignature
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return ErrSignature
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(k, digest, r, s) {
			return ErrSignature
		}
	}
	return nil
}
