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
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/big"
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
	fetched time.Time // when the fetch that obtained the keys started
	digest  string    // identifies the content, to detect rotation
	gen     uint64    // changes with digest; a cached token verified under another gen is verified again
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
//
// A remote key set is fetched by one goroutine at a time, on a schedule
// kept under mu on the injected clock: the next fetch may start no
// earlier than nextAllowed (MinKeyRefresh after the start of a successful
// fetch; after failures, a back-off with jitter), and the background loop
// fetches on its own at nextDue (the interval the JWKS's Cache-Control
// asked for; after a failure, nextAllowed). A request that needs newer keys
// (none loaded, keys past MaxKeyStaleness, a kid the set lacks) can make a
// due fetch start now, or ask the loop for one at nextAllowed; it never
// makes fetches more frequent than the schedule, whatever the state.
type issuerKeys struct {
	issuer *Issuer
	v      *Verifier
	remote bool
	cur    atomic.Pointer[keySet]

	// remote only
	mu          sync.Mutex
	inflight    chan struct{} // closed when the running fetch ends; nil when none runs
	started     time.Time     // start of the last fetch, by the injected clock
	nextAllowed time.Time     // the earliest start of the next fetch
	nextDue     time.Time     // when the loop fetches without being asked
	wanted      bool          // a request waits for a fetch at nextAllowed
	failures    int           // consecutive failed fetches
	lastErr     error         // of the last fetch; nil once one succeeded
	lastErrAt   time.Time     // start of the fetch that failed with lastErr
	closed      bool          // set by Close: no fetch starts any more
	disc        *discovered   // the discovered JWKS URL; owned by the fetch
	wake        chan struct{} // wakes the background loop to reschedule
}

// errKidRefreshDue is the cause logged (reason kid_refresh_due) when a
// kid the key set lacks, or whose key there fails the signature, is
// answered 503: the set predates the token, and a refresh is due. Forged
// tokens with fresh random kids or bad signatures get it too, so it is no
// sign of an outage by itself.
var errKidRefreshDue = errors.New("kid not settled by a key set older than the token; refresh due")

// errKeysStale is the cause logged when the keys are past MaxKeyStaleness
// or not loaded yet, and no fetch has failed.
var errKeysStale = errors.New("no key set fresher than MaxKeyStaleness yet")

// keysFor returns the key to verify a token with, and the key set it
// belongs to. issued bounds from above when the token was issued (the
// earlier of its unverified iat plus ClockSkew and its arrival; zero when
// the token cannot be valid whatever the key): a kid absent from a key
// set fetched no earlier than that is unknown (401); a kid absent from an
// older set may be newer than the set, and is answered 503 with
// Retry-After while a refresh is due. failed says that the key an older
// set holds for kid failed the token's signature: the issuer may have
// replaced it since (re-keyed under the same kid, or the single key of
// tokens without kid), so only a set fetched no earlier than issued
// settles the token. A request waits for a fetch at most wait.
func (ik *issuerKeys) keysFor(ctx context.Context, kid string, alg jwa.SignatureAlgorithm, now, issued time.Time, failed bool, wait time.Duration) (*keySet, *verifyKey, error) {
	set := ik.cur.Load()
	if !ik.remote {
		if k := set.lookup(kid, alg); k != nil {
			return set, k, nil
		}
		return nil, nil, ErrUnknownKey
	}
	if k, err, ok := ik.decide(set, now, kid, alg, issued, failed); ok {
		return set, k, err
	}
	// The keys cannot settle the request: have a fetch start (or join the
	// one under way) if the schedule allows, and wait for it, bounded.
	ch := ik.need(now)
	if ch != nil && wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		set = ik.cur.Load()
		if k, err, ok := ik.decide(set, ik.v.now(), kid, alg, issued, failed); ok {
			return set, k, err
		}
	}
	if ch != nil {
		select {
		case <-ch: // it ended without settling the request: want the next one
			ik.need(ik.v.now())
		default:
		}
	}
	return nil, nil, ik.unavailable(set, ik.v.now())
}

// decide reports whether set settles a request: the key, or
// ErrUnknownKey for a kid it proves unknown. ok is false when newer keys
// are needed. With failed (an older set's key for kid failed the
// signature), only a set fetched no earlier than issued settles it.
func (ik *issuerKeys) decide(set *keySet, now time.Time, kid string, alg jwa.SignatureAlgorithm, issued time.Time, failed bool) (*verifyKey, error, bool) {
	if set == nil || now.Sub(set.fetched) > ik.v.cfg.MaxKeyStaleness {
		return nil, nil, false
	}
	proves := !set.fetched.Before(issued)
	if failed && !proves {
		return nil, nil, false
	}
	if k := set.lookup(kid, alg); k != nil {
		return k, nil, true
	}
	if proves {
		return nil, ErrUnknownKey, true
	}
	return nil, nil, false
}

// need records that a request needs a newer key set than the one loaded.
// It returns the channel of the fetch under way, or of one it started
// because the schedule allowed it; otherwise nil, and the loop fetches at
// nextAllowed.
func (ik *issuerKeys) need(now time.Time) chan struct{} {
	ik.mu.Lock()
	defer ik.mu.Unlock()
	if ik.inflight != nil {
		return ik.inflight
	}
	ik.wanted = true
	if ch := ik.startLocked(now); ch != nil {
		return ch
	}
	ik.poke()
	return nil
}

// startLocked starts a fetch when none runs and the schedule allows one
// at now: a request asked for it, or it is due. It requires ik.mu held.
func (ik *issuerKeys) startLocked(now time.Time) chan struct{} {
	if ik.closed || ik.inflight != nil || now.Before(ik.nextAllowed) || (!ik.wanted && now.Before(ik.nextDue)) {
		return nil
	}
	ch := make(chan struct{})
	ik.inflight, ik.started, ik.wanted = ch, now, false
	ik.v.wg.Add(1)
	go ik.fetch(ch, now)
	return ch
}

// unavailable returns the 503 for a request the keys cannot settle, with
// the time after which a retry finds a fetch made: 1s while one is under
// way, else until the schedule allows the next (which the loop then
// makes, because a request wanted it).
func (ik *issuerKeys) unavailable(set *keySet, now time.Time) error {
	ik.mu.Lock()
	defer ik.mu.Unlock()
	retry := time.Second
	if ik.inflight == nil {
		retry = max(retry, ik.nextAllowed.Sub(now))
	}
	err := ik.lastErr
	if set != nil && now.Sub(set.fetched) <= ik.v.cfg.MaxKeyStaleness {
		err = errKidRefreshDue
		if ik.lastErr != nil {
			err = fmt.Errorf("%w (last fetch: %v)", errKidRefreshDue, ik.lastErr)
		}
	} else if err == nil {
		err = errKeysStale
	}
	return &UnavailableError{RetryAfter: retry, Err: err}
}

// backoff is the least time between the start of the failures-th
// consecutive failed fetch and the next fetch: 1s doubling per failure,
// at most MinKeyRefresh, plus up to half again of jitter from
// Config.Rand, so that instances that failed together do not retry
// together.
func (ik *issuerKeys) backoff(failures int) time.Duration {
	ceil := ik.v.cfg.MinKeyRefresh
	d := min(time.Second, ceil)
	for i := 1; i < failures && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	var b [8]byte
	if _, err := io.ReadFull(ik.v.cfg.Rand, b[:]); err == nil {
		frac := float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53) // [0, 1)
		d += time.Duration(frac * float64(d/2))
	}
	return d
}

// fetch runs one JWKS fetch under the verifier's lifetime context, not a
// request's: a client that hangs up does not cancel it for the others.
func (ik *issuerKeys) fetch(done chan struct{}, started time.Time) {
	defer ik.v.wg.Done()
	set, maxAge, err := ik.download(started)
	var wait time.Duration
	if err != nil {
		ik.mu.Lock()
		n := ik.failures + 1
		ik.mu.Unlock()
		wait = ik.backoff(n) // reads Config.Rand outside the lock
		// Logged before the failure is published: a Ready or a request
		// that sees it finds the log written.
		why := "fetch"
		if errors.Is(err, errDiscovery) {
			why = "discovery"
		}
		ik.v.cfg.Logger.LogAttrs(ik.v.ctx, slog.LevelWarn, "auth: jwks fetch failed",
			slog.String("event", "jwks_error"), slog.String("reason", why),
			slog.String("issuer", ik.issuer.Issuer), slog.String("error", err.Error()),
			slog.Duration("retry_in", wait))
	}
	ik.mu.Lock()
	rotated := false
	if err == nil {
		ik.failures, ik.lastErr = 0, nil
		ik.nextAllowed = started.Add(ik.v.cfg.MinKeyRefresh)
		ik.nextDue = started.Add(maxAge)
		old := ik.cur.Load()
		if old != nil && old.digest == set.digest {
			set.gen = old.gen
		} else {
			set.gen = ik.v.gens.Add(1)
			rotated = true
		}
		ik.cur.Store(set)
	} else {
		ik.failures++
		ik.lastErr, ik.lastErrAt = err, started
		ik.nextAllowed = started.Add(wait)
		ik.nextDue = ik.nextAllowed
	}
	ik.inflight = nil
	ik.poke()
	ik.mu.Unlock()
	// The cache purge and the log come before the waiters wake, so that
	// what they do next (cache the token they verify, read the log)
	// follows them.
	log := ik.v.cfg.Logger
	if rotated {
		ik.v.keysRotated()
		log.LogAttrs(ik.v.ctx, slog.LevelInfo, "auth: jwks loaded",
			slog.String("event", "jwks_refresh"), slog.String("reason", "changed"),
			slog.String("issuer", ik.issuer.Issuer), slog.Int("keys", len(set.all)))
	}
	close(done)
	ik.v.fetchEnded()
}

func (ik *issuerKeys) download(started time.Time) (*keySet, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ik.v.ctx, ik.v.cfg.FetchTimeout)
	defer cancel()
	if ik.issuer.JWKSURL == "" {
		return ik.discoverJWKS(ctx, started)
	}
	return ik.downloadFrom(ctx, ik.issuer.JWKSURL, started)
}

func (ik *issuerKeys) downloadFrom(ctx context.Context, jwksURL string, started time.Time) (*keySet, time.Duration, error) {
	body, hdr, err := getBounded(ctx, ik.v.cfg.HTTPClient, jwksURL, "application/jwk-set+json, application/json", ik.v.cfg.MaxJWKSSize)
	if err != nil {
		return nil, 0, err
	}
	skip := ik.skipLogger()
	keys, err := parseJWKS(body, skip)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", jwksURL, err)
	}
	// The set counts as fetched when its fetch started: the keys it holds
	// were published by then, which is what decides that a kid is unknown.
	set := buildKeySet(keys, ik.issuer.Algorithms, started, skip)
	if len(set.all) == 0 {
		return nil, 0, fmt.Errorf("GET %s: no usable key (event=jwks_key_skipped says why)", jwksURL)
	}
	return set, ik.maxAge(hdr.Get("Cache-Control")), nil
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

// poke wakes the loop to reschedule; it never blocks.
func (ik *issuerKeys) poke() {
	select {
	case ik.wake <- struct{}{}:
	default:
	}
}

// loop refreshes a remote JWKS in the background: the first fetch at
// once, then at nextDue, or at nextAllowed when a request wanted keys
// sooner. Its timer is computed from the injected clock. It ends when the
// verifier is closed.
func (ik *issuerKeys) loop() {
	defer ik.v.wg.Done()
	for {
		now := ik.v.now()
		ik.mu.Lock()
		ch := ik.startLocked(now)
		if ch == nil {
			ch = ik.inflight
		}
		next := ik.nextDue
		if ik.wanted {
			next = ik.nextAllowed
		}
		ik.mu.Unlock()
		if ch != nil {
			select {
			case <-ch:
			case <-ik.v.ctx.Done():
				return
			}
			continue
		}
		t := time.NewTimer(max(next.Sub(now), time.Millisecond))
		select {
		case <-ik.v.ctx.Done():
			t.Stop()
			return
		case <-ik.wake:
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
