package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Introspection configures RFC 7662 token introspection for an [Issuer]
// whose access tokens are opaque (or, with JWTs, for all of them).
//
// # Which issuer
//
// A token that is not a JWT (not three base64url parts whose first is a
// JSON object) names no issuer, so it goes to the one issuer that has an
// Introspection: [New] refuses a Config in which more than one issuer
// has one. With JWTs set, the JWTs whose (unverified) iss is that issuer
// are introspected too, instead of verified with keys; the answer of the
// endpoint decides, not the token's content.
//
// # What is checked
//
// The endpoint is called with HTTP POST, client_secret_basic
// authentication and token_type_hint=access_token; only a 200 with a
// JSON object whose active is a boolean is an answer. active must be
// true; token_type, when present, must not be a refresh or ID token, and
// nonce, at_hash and c_hash (ID-token claims) must be absent; exp is
// required; nbf, iat (in the future) and exp are checked with
// Config.ClockSkew, and exp - iat against Config.MaxTokenLifetime when
// iat is present; iss, when present, must equal Issuer.Issuer; aud must
// contain one of Issuer.Audience. scope, sub, client_id, jti, acr, amr,
// auth_time and cnf.jkt fill the same [Claims] as a JWT's (cnf.jkt binds
// the token to a DPoP key, checked as for JWTs), and Claims.Decode reads
// the whole response.
//
// # Cache
//
// Results are cached by SHA-256 of the token, never the token: an
// active one until the earlier of its exp and CacheTTL, an inactive one
// (or one that fails a check) for InactiveCacheTTL, in a local cache of
// Config.TokenCacheSize entries and, when Cache is set, in a cache that
// instances share. Concurrent requests with one token make one call per
// instance; with a shared Cache that implements [IntrospectionLocker],
// one call for all instances. A revoked token stays accepted until its
// cached result expires: CacheTTL bounds the delay.
//
// # Outages
//
// As for key sets: an endpoint that cannot be reached, answers other
// than 200 (but see below), times out (Timeout), or sends a malformed
// (not a JSON object with a boolean active) or oversized answer gets the
// request 503 with Retry-After (an error matching [ErrKeysUnavailable]),
// never 401; only an answer (active false, a claim of the wrong type, or
// a failed check) is a 401. After n failed calls in a row the next call
// starts no sooner than 1s·2^(n-1), at most Config.MinKeyRefresh, plus up
// to half again of jitter; until then requests with tokens not cached get
// 503 at once, and then one call at a time probes the endpoint.
// [Verifier.Ready] makes that probe (with a random token) when one is
// due, or when no call has got an answer yet, and names the issuer and
// the cause while no call has got an answer (bad credentials stop
// start-up under [Verifier.WaitReady]) or once calls have failed for
// longer than CacheTTL: until then the cached answers still serve, as the
// last good keys do, and a probe that took every instance out of service
// when the endpoint blinked would turn its outage into yours.
//
// A 4xx other than 401, 408 and 429 may be about the token alone (a
// WAF's 403 for a token that reads like an attack): the endpoint is then
// called at once with a random token and, when it answers that, the
// token is refused (401, cached for InactiveCacheTTL) and the endpoint is
// not put in back-off, so that one client's token does not take it out
// for all.
//
// A shared Cache that fails (Redis down) is skipped: each instance calls
// the endpoint itself, one call per token per instance, and no valid
// token is refused for it. Whoever can write to the shared cache can
// forge answers: protect it as the endpoint's credentials.
//
// Every token never seen costs a call: put a rate limiter keyed by client
// IP before auth, as for signature checks. At most MaxConcurrent calls
// run at once; a request that cannot start one within Timeout gets 503.
type Introspection struct {
	// URL is the introspection endpoint (https, or http on loopback).
	// Required.
	URL string
	// ClientID and ClientSecret authenticate this resource server to the
	// endpoint (client_secret_basic). Required. The secret is never logged
	// or put in an error.
	ClientID     string
	ClientSecret string
	// JWTs also introspects the JWTs whose iss is this issuer, instead of
	// verifying them with keys; the issuer then has neither JWKSURL nor
	// Keys. Without it, and without keys, the issuer's JWTs are refused.
	// Default: false.
	JWTs bool
	// Timeout bounds one call. Default: 2s.
	Timeout time.Duration
	// MaxResponseSize caps the response body; a larger one is an outage
	// (503). Default: 16 KiB. The local cache holds up to
	// Config.TokenCacheSize responses.
	MaxResponseSize int64
	// CacheTTL is the longest an active result is cached; never past the
	// token's exp. Negative: not cached. Default: 5 minutes.
	CacheTTL time.Duration
	// InactiveCacheTTL is how long an inactive result, or one that fails
	// a check, is cached. Negative: not cached. Default: 10s.
	InactiveCacheTTL time.Duration
	// Cache, when set, shares results between instances (see
	// redisstore.IntrospectionCache). Default: none.
	Cache IntrospectionCache
	// MaxConcurrent caps the calls in flight. Default: 32.
	MaxConcurrent int
}

// String describes in without its secret, so that a Config printed
// with %v does not leak it.
func (in Introspection) String() string {
	return fmt.Sprintf("{URL:%s ClientID:%s ClientSecret:[redacted] JWTs:%t}", in.URL, in.ClientID, in.JWTs)
}

// GoString is String, for %#v.
func (in Introspection) GoString() string { return in.String() }

// MarshalJSON encodes in with its secret redacted, so that a Config
// logged by slog's JSON handler, or encoded as JSON, does not leak it.
func (in Introspection) MarshalJSON() ([]byte, error) {
	type plain Introspection // no methods: no recursion
	p := plain(in)
	if p.ClientSecret != "" {
		p.ClientSecret = "[redacted]"
	}
	return json.Marshal(p)
}

// IntrospectionCache is a cache of introspection results that several
// instances share. Keys are hex digests (of the issuer, endpoint, client
// and the token's SHA-256), never a token; values hold the endpoint's
// answer (no token) and are at most Introspection.MaxResponseSize plus
// 21 bytes. Implementations must be safe for concurrent use.
type IntrospectionCache interface {
	// Get returns the value stored under key and true, or false when
	// there is none (or it expired).
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// IntrospectionLocker is implemented by an [IntrospectionCache] that can
// also make instances take turns: the instance whose TryLock takes a
// token's lock calls the endpoint and stores the result; the others
// poll the cache until it is there, so N instances make one call per
// token, not N.
type IntrospectionLocker interface {
	// TryLock takes the lock named key for at most ttl. It returns a
	// function that releases it when it took it, nil when another holder
	// has it.
	TryLock(ctx context.Context, key string, ttl time.Duration) (release func(), err error)
}

// errIntrospectionDown is the cause (reason introspection_unavailable)
// of a 503 for an introspection endpoint that gave no answer.
var errIntrospectionDown = errors.New("introspection endpoint gave no answer")

// lockPoll is how often an instance that waits for another's call looks
// in the shared cache.
const lockPoll = 10 * time.Millisecond

// checkIntrospection checks the Issuers' Introspection settings and
// fills in their defaults. Each Introspection is copied, so the caller's
// is never modified.
func (cfg *Config) checkIntrospection() error {
	owner := -1
	for i := range cfg.Issuers {
		is := &cfg.Issuers[i]
		if is.Introspection == nil {
			continue
		}
		if owner >= 0 {
			return fmt.Errorf("auth: Config.Issuers[%d] and Config.Issuers[%d] both have an Introspection: a token that is not a JWT names no issuer, so at most one issuer may introspect", owner, i)
		}
		owner = i
		in := *is.Introspection
		is.Introspection = &in
		field := fmt.Sprintf("Config.Issuers[%d].Introspection", i)
		u, err := url.Parse(in.URL)
		if in.URL == "" || err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			return fmt.Errorf("auth: %s.URL must be an https URL (http only on loopback) without user info", field)
		}
		if in.ClientID == "" || in.ClientSecret == "" {
			return fmt.Errorf("auth: %s.ClientID and ClientSecret are required", field)
		}
		if in.JWTs && (is.JWKSURL != "" || is.Keys != nil) {
			return fmt.Errorf("auth: %s.JWTs introspects the issuer's JWTs, so its JWKSURL and Keys would never be used: drop them", field)
		}
		if in.Timeout < 0 || in.MaxResponseSize < 0 || in.MaxConcurrent < 0 {
			return fmt.Errorf("auth: %s: Timeout, MaxResponseSize and MaxConcurrent must not be negative", field)
		}
		if in.Timeout == 0 {
			in.Timeout = 2 * time.Second
		}
		if in.MaxResponseSize == 0 {
			in.MaxResponseSize = 16 << 10
		}
		if in.CacheTTL == 0 {
			in.CacheTTL = 5 * time.Minute
		}
		if in.InactiveCacheTTL == 0 {
			in.InactiveCacheTTL = 10 * time.Second
		}
		if in.MaxConcurrent == 0 {
			in.MaxConcurrent = 32
		}
	}
	return nil
}

// introspector calls one issuer's introspection endpoint and caches the
// results. Its back-off state follows the key-set schedule (see
// issuerKeys.backoff).
type introspector struct {
	v      *Verifier
	ik     *issuerKeys // the issuer, and its back-off
	cfg    *Introspection
	cache  *lru.Cache[[32]byte, introEntry] // nil when disabled
	locker IntrospectionLocker              // nil when cfg.Cache has no lock
	ns     []byte                           // what the shared keys are apart by
	sem    chan struct{}                    // calls in flight

	flMu    sync.Mutex
	flights map[[32]byte]*introFlight // by SHA-256 of the token

	mu          sync.Mutex
	succeeded   bool      // a call got an answer
	failures    int       // consecutive calls without an answer
	failingFrom time.Time // start of the first of them
	lastErr     error     // of the last call; nil once one got an answer
	nextAllowed time.Time // the earliest start of a call while failing
	probing     bool      // a call is under way while failing
}

// introEntry is a cached result: claims, or the rejection; until is when
// it stops serving.
type introEntry struct {
	claims *Claims
	err    error
	until  time.Time
}

type introFlight struct {
	done chan struct{}
	e    introEntry
	err  error
}

func newIntrospector(v *Verifier, ik *issuerKeys) (*introspector, error) {
	cfg := ik.issuer.Introspection
	in := &introspector{v: v, ik: ik, cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrent), flights: map[[32]byte]*introFlight{}}
	if v.cfg.TokenCacheSize > 0 {
		c, err := lru.New[[32]byte, introEntry](v.cfg.TokenCacheSize)
		if err != nil {
			return nil, fmt.Errorf("auth: introspection cache: %w", err)
		}
		in.cache = c
	}
	if l, ok := cfg.Cache.(IntrospectionLocker); ok {
		in.locker = l
	}
	for _, s := range []string{"apiguard-introspection-v1", ik.issuer.Issuer, cfg.URL, cfg.ClientID} {
		in.ns = binary.AppendUvarint(in.ns, uint64(len(s)))
		in.ns = append(in.ns, s...)
	}
	return in, nil
}

// looksLikeJWT reports whether token has the shape of a compact JWS or
// JWT: three parts, the first a base64url JSON object. Only the start of
// the header is decoded; the JWT path checks the rest.
func looksLikeJWT(token string) bool {
	if strings.Count(token, ".") != 2 {
		return false
	}
	h, _, _ := strings.Cut(token, ".")
	if len(h) < 4 {
		return false
	}
	var src [8]byte
	var dst [6]byte
	n := copy(src[:], h[:min(len(h), 8)&^3]) // whole quartets only
	m, err := b64.Decode(dst[:], src[:n])
	if err != nil {
		return false
	}
	b := bytes.TrimLeft(dst[:m], " \t\r\n")
	return len(b) == 0 || b[0] == '{'
}

// introspects reports whether token goes to the introspector: it is not
// a JWT, or it is one whose unverified iss is the issuer and JWTs is set.
func (in *introspector) introspects(token string) bool {
	if !looksLikeJWT(token) {
		return true
	}
	if !in.cfg.JWTs {
		return false
	}
	_, rest, _ := strings.Cut(token, ".")
	p, _, _ := strings.Cut(rest, ".")
	body, err := b64.DecodeString(p)
	if err != nil {
		return false
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	return json.Unmarshal(body, &claims) == nil && claims.Iss == in.ik.issuer.Issuer
}

// isB64Token reports whether token is an RFC 6750 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(token string) bool {
	i := 0
	for ; i < len(token); i++ {
		c := token[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && !strings.ContainsRune("-._~+/", rune(c)) {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(token); i++ {
		if token[i] != '=' {
			return false
		}
	}
	return true
}

// verify checks token, whose SHA-256 is key, by introspection, from the
// cache when it can.
func (in *introspector) verify(ctx context.Context, token string, key [32]byte) (*Claims, error) {
	if !isB64Token(token) {
		return nil, fmt.Errorf("%w: not an RFC 6750 b64token", ErrMalformedToken)
	}
	if in.cache != nil {
		if e, ok := in.cache.Get(key); ok {
			now := in.v.now()
			if now.Before(e.until) {
				return in.result(e, now)
			}
			in.cache.Remove(key)
		}
	}
	e, err := in.once(ctx, key, token)
	if err != nil {
		return nil, err
	}
	return in.result(e, in.v.now())
}

func (in *introspector) result(e introEntry, now time.Time) (*Claims, error) {
	if e.err != nil {
		return nil, e.err
	}
	if err := in.v.checkTimes(e.claims, now); err != nil {
		return nil, err
	}
	return e.claims, nil
}

// once resolves the token with one call for all the concurrent requests
// that carry it (singleflight). The call runs in the first request's
// goroutine, under the verifier's lifetime, not its context; the others
// wait for it or their context, whichever ends first.
func (in *introspector) once(ctx context.Context, key [32]byte, token string) (introEntry, error) {
	in.flMu.Lock()
	if f, ok := in.flights[key]; ok {
		in.flMu.Unlock()
		select {
		case <-f.done:
			return f.e, f.err
		case <-ctx.Done():
			return introEntry{}, &UnavailableError{RetryAfter: time.Second, Err: fmt.Errorf("%w: %w", errIntrospectionDown, context.Cause(ctx))}
		}
	}
	f := &introFlight{done: make(chan struct{})}
	in.flights[key] = f
	in.flMu.Unlock()
	f.e, f.err = in.resolve(key, token)
	if f.err == nil && in.cache != nil && in.v.now().Before(f.e.until) {
		in.cache.Add(key, f.e)
	}
	in.flMu.Lock()
	delete(in.flights, key)
	in.flMu.Unlock()
	close(f.done)
	return f.e, f.err
}

// sharedKey is the key of a token in the shared cache: a digest of the
// issuer, endpoint and client (whose answers may differ) and the token's
// SHA-256. Neither the token nor its plain digest appears.
func (in *introspector) sharedKey(key [32]byte) string {
	h := sha256.New()
	h.Write(in.ns)
	h.Write(key[:])
	return hex.EncodeToString(h.Sum(nil))
}

// resolve gets the result for token: from the shared cache, after the
// call of whichever instance holds the token's lock, or from a call of
// its own. A shared cache that fails is skipped.
func (in *introspector) resolve(key [32]byte, token string) (introEntry, error) {
	ctx, cancel := context.WithTimeout(in.v.ctx, in.cfg.Timeout)
	defer cancel()
	var sk string
	if in.cfg.Cache != nil {
		sk = in.sharedKey(key)
		if e, ok := in.fromShared(ctx, sk); ok {
			return e, nil
		}
		if in.locker != nil {
			e, ok, release := in.takeTurn(ctx, sk)
			if ok {
				return e, nil
			}
			if release != nil {
				defer release()
			}
			// The wait for another instance may have spent the budget.
			cancel()
			ctx, cancel = context.WithTimeout(in.v.ctx, in.cfg.Timeout)
			defer cancel()
		}
	}
	body, err := in.call(ctx, token)
	if tr, ok := errors.AsType[*tokenRefusedError](err); ok {
		ttl := max(in.cfg.InactiveCacheTTL, 0)
		return introEntry{err: fmt.Errorf("%w: %w", ErrMalformedToken, tr), until: in.v.now().Add(ttl)}, nil
	}
	if err != nil {
		return introEntry{}, err
	}
	now := in.v.now()
	e, err := in.entry(body, now)
	if err != nil {
		return introEntry{}, err // parsed once in call: not reached
	}
	if ttl := e.until.Sub(now); sk != "" && ttl > 0 {
		v := strconv.AppendInt(make([]byte, 0, 21+len(body)), e.until.UnixMilli(), 10)
		v = append(append(v, '\n'), body...)
		if err := in.cfg.Cache.Set(ctx, sk, v, ttl); err != nil {
			in.cacheFailed("set", err)
		}
	}
	return e, nil
}

// fromShared looks sk up in the shared cache. A value is the time it
// serves until (Unix ms, in decimal), a newline and the endpoint's
// answer; one that does not parse is a miss.
func (in *introspector) fromShared(ctx context.Context, sk string) (introEntry, bool) {
	v, ok, err := in.cfg.Cache.Get(ctx, sk)
	if err != nil {
		in.cacheFailed("get", err)
		return introEntry{}, false
	}
	if !ok {
		return introEntry{}, false
	}
	head, body, _ := bytes.Cut(v, []byte("\n"))
	ms, err := strconv.ParseInt(string(head), 10, 64)
	if err != nil {
		return introEntry{}, false
	}
	now := in.v.now()
	until := time.UnixMilli(ms)
	e, err := in.entry(body, now)
	if err != nil || !now.Before(until) {
		return introEntry{}, false
	}
	if until.Before(e.until) {
		e.until = until
	}
	return e, true
}

// takeTurn takes the token's shared lock, or waits for the holder's
// result. ok says the result was found; otherwise the caller calls the
// endpoint, and releases the lock (release, when not nil) after storing
// its result. It gives up waiting (and calls itself) after Timeout, or
// when the lock cannot be taken for an error.
func (in *introspector) takeTurn(ctx context.Context, sk string) (e introEntry, ok bool, release func()) {
	lockKey := sk + ".lock"
	for {
		release, err := in.locker.TryLock(ctx, lockKey, in.cfg.Timeout+time.Second)
		if err != nil {
			in.cacheFailed("lock", err)
			return introEntry{}, false, nil
		}
		if release != nil {
			// The holder before may have stored its result and let go
			// between the look-up and the lock.
			if e, ok := in.fromShared(ctx, sk); ok {
				release()
				return e, true, nil
			}
			return introEntry{}, false, release
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return introEntry{}, false, nil
		}
		if e, ok := in.fromShared(ctx, sk); ok {
			return e, true, nil
		}
	}
}

func (in *introspector) cacheFailed(op string, err error) {
	in.v.cfg.Logger.LogAttrs(in.v.ctx, slog.LevelDebug, "auth: introspection cache failed; calling the endpoint",
		slog.String("event", "introspection_cache_error"), slog.String("reason", op),
		slog.String("issuer", in.ik.issuer.Issuer), slog.String("error", err.Error()))
}

// entry makes the cache entry for an answer: claims, or the rejection.
func (in *introspector) entry(body []byte, now time.Time) (introEntry, error) {
	resp, err := parseIntrospection(body)
	if err != nil {
		return introEntry{}, err
	}
	c, err := in.v.checkIntrospected(resp, body, in.ik.issuer, now)
	if err != nil {
		ttl := max(in.cfg.InactiveCacheTTL, 0)
		return introEntry{err: err, until: now.Add(ttl)}, nil
	}
	ttl := max(in.cfg.CacheTTL, 0)
	return introEntry{claims: c, until: minTime(now.Add(ttl), c.Expiry)}, nil
}

// call makes one call to the endpoint, within the back-off schedule and
// MaxConcurrent, and returns the answer's body, checked to parse. Any
// failure is an *UnavailableError.
func (in *introspector) call(ctx context.Context, token string) ([]byte, error) {
	start := in.v.now()
	in.mu.Lock()
	if in.failures > 0 {
		if start.Before(in.nextAllowed) || in.probing {
			err := in.unavailableLocked(start)
			in.mu.Unlock()
			return nil, err
		}
		in.probing = true
	}
	in.mu.Unlock()
	select {
	case in.sem <- struct{}{}:
	case <-ctx.Done():
		in.mu.Lock()
		in.probing = false
		in.mu.Unlock()
		return nil, &UnavailableError{RetryAfter: time.Second, Err: fmt.Errorf("%w: %d calls in flight (Introspection.MaxConcurrent)", errIntrospectionDown, in.cfg.MaxConcurrent)}
	}
	body, err := in.post(ctx, token)
	if se, ok := errors.AsType[*introStatusError](err); ok && se.tokenSpecific() && in.answersOthers(ctx) {
		<-in.sem
		in.mu.Lock()
		in.probing = false
		changed := in.failures > 0 || !in.succeeded
		in.succeeded, in.failures, in.lastErr = true, 0, nil
		in.mu.Unlock()
		if changed {
			in.v.fetchEnded()
		}
		return nil, &tokenRefusedError{status: se.status}
	}
	<-in.sem
	if err == nil {
		_, err = parseIntrospection(body)
	}
	var wait time.Duration
	if err != nil {
		in.mu.Lock()
		n := in.failures + 1
		in.mu.Unlock()
		wait = in.ik.backoff(n) // reads Config.Rand outside the lock
	}
	in.mu.Lock()
	in.probing = false
	changed := err != nil || in.failures > 0 || !in.succeeded
	if err == nil {
		in.succeeded, in.failures, in.lastErr = true, 0, nil
	} else {
		if in.failures == 0 {
			in.failingFrom = start
		}
		in.failures++
		in.lastErr = err
		in.nextAllowed = start.Add(wait)
	}
	in.mu.Unlock()
	if changed {
		in.v.fetchEnded() // wakes WaitReady
	}
	if err != nil {
		in.v.cfg.Logger.LogAttrs(in.v.ctx, slog.LevelWarn, "auth: introspection failed",
			slog.String("event", "introspection_error"), slog.String("reason", "call"), slog.String("issuer", in.ik.issuer.Issuer),
			slog.String("error", err.Error()), slog.Duration("retry_in", wait))
		return nil, &UnavailableError{RetryAfter: max(wait, time.Second), Err: fmt.Errorf("%w: %w", errIntrospectionDown, err)}
	}
	return body, nil
}

// introStatusError is a call answered with a status other than 200.
type introStatusError struct {
	url    string
	status int
}

func (e *introStatusError) Error() string { return fmt.Sprintf("POST %s returned %d", e.url, e.status) }

// tokenSpecific reports whether the status may be about the token sent
// rather than the endpoint: a 4xx other than 401 (the credentials), 408
// and 429 (the endpoint's load).
func (e *introStatusError) tokenSpecific() bool {
	return e.status >= 400 && e.status < 500 && e.status != http.StatusUnauthorized &&
		e.status != http.StatusRequestTimeout && e.status != http.StatusTooManyRequests
}

// tokenRefusedError is a call refused for its token alone: the endpoint
// answered a random token at once.
type tokenRefusedError struct{ status int }

func (e *tokenRefusedError) Error() string {
	return fmt.Sprintf("the introspection endpoint refused this token (status %d) and answers others", e.status)
}

// answersOthers reports whether the endpoint answers a random token: a
// call made under the slot (MaxConcurrent) of the call it checks.
func (in *introspector) answersOthers(ctx context.Context) bool {
	var b [16]byte
	_, _ = rand.Read(b[:])
	body, err := in.post(ctx, "apiguard-probe-"+hex.EncodeToString(b[:]))
	if err != nil {
		return false
	}
	_, err = parseIntrospection(body)
	return err == nil
}

// unavailableLocked is the 503 while failing: retry when the next call
// may start (1s while a probe is under way). It requires in.mu held.
func (in *introspector) unavailableLocked(now time.Time) error {
	retry := time.Second
	if !in.probing {
		retry = max(retry, in.nextAllowed.Sub(now))
	}
	return &UnavailableError{RetryAfter: retry, Err: fmt.Errorf("%w: %w", errIntrospectionDown, in.lastErr)}
}

// post sends the token to the endpoint. Errors name the endpoint and the
// cause, never the token or the secret.
func (in *introspector) post(ctx context.Context, token string) ([]byte, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", in.cfg.URL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: client_id and secret form-encoded, then Basic.
	req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	resp, err := in.v.cfg.HTTPClient.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // its text repeats the method and URL
		}
		return nil, fmt.Errorf("POST %s: %w", in.cfg.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, &introStatusError{url: in.cfg.URL, status: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, in.cfg.MaxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", in.cfg.URL, err)
	}
	if int64(len(body)) > in.cfg.MaxResponseSize {
		return nil, fmt.Errorf("POST %s: body over Introspection.MaxResponseSize (%d bytes)", in.cfg.URL, in.cfg.MaxResponseSize)
	}
	return body, nil
}

// introResponse is an RFC 7662 §2.2 answer: the JWT claims, active and
// token_type.
type introResponse struct {
	Active    *bool  `json:"active"`
	TokenType string `json:"token_type"`
	payload
	// badClaims is set when a claim has the wrong type (exp a string,
	// say): an answer about this token (a 401 for it, cached briefly),
	// not an outage that would put every other token in back-off.
	badClaims error
}

// parseIntrospection parses an answer: a JSON object whose active is a
// boolean. Anything else is malformed (an outage, not a rejection of the
// token); a claim of the wrong type is an answer that refuses the token
// (badClaims). Its errors quote nothing of the body.
func parseIntrospection(body []byte) (*introResponse, error) {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return nil, errors.New("introspection response is not a JSON object")
	}
	var r introResponse
	if err := json.Unmarshal(b, &r); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, fmt.Errorf("introspection response is not JSON (offset %d)", se.Offset)
		}
		var a struct {
			Active *bool `json:"active"`
		}
		if json.Unmarshal(b, &a) != nil || a.Active == nil {
			return nil, fmt.Errorf("introspection response: %w", err)
		}
		r = introResponse{Active: a.Active, badClaims: fmt.Errorf("%w: introspected claims: %v", ErrMalformedToken, err)}
	}
	if r.Active == nil {
		return nil, errors.New("introspection response has no boolean active")
	}
	return &r, nil
}

// checkIntrospected checks an active answer as a JWT's claims are
// checked (see [Introspection]) and returns its claims.
func (v *Verifier) checkIntrospected(r *introResponse, body []byte, is *Issuer, now time.Time) (*Claims, error) {
	if !*r.Active {
		return nil, ErrInactive
	}
	if r.badClaims != nil {
		return nil, r.badClaims
	}
	switch strings.ToLower(r.TokenType) {
	case "refresh_token", "urn:ietf:params:oauth:token-type:refresh_token":
		return nil, fmt.Errorf("%w: introspected token_type is a refresh token", ErrType)
	case "id_token", "urn:ietf:params:oauth:token-type:id_token":
		return nil, fmt.Errorf("%w: introspected token_type is an ID token", ErrType)
	}
	// Some endpoints answer an ID token (sent with Introspection.JWTs)
	// active: refused as on the JWT path.
	if r.Nonce != nil || r.AtHash != nil || r.CHash != nil {
		return nil, fmt.Errorf("%w: the introspected token is an ID token (nonce, at_hash or c_hash)", ErrType)
	}
	if r.Iss != "" && r.Iss != is.Issuer {
		return nil, fmt.Errorf("%w: introspected iss %s is not %q", ErrIssuer, quoteUntrusted(r.Iss), is.Issuer)
	}
	if !r.Exp.set {
		return nil, fmt.Errorf("%w: the introspection response has no exp", ErrExpired)
	}
	if err := r.checkConfirmation(); err != nil {
		return nil, err
	}
	c := r.claims(body)
	c.Issuer = is.Issuer
	if err := v.checkTimes(c, now); err != nil {
		return nil, err
	}
	if life := c.Expiry.Sub(c.IssuedAt); r.Iat.set && life > v.cfg.MaxTokenLifetime {
		return nil, fmt.Errorf("%w: exp - iat is %s, over Config.MaxTokenLifetime (%s)", ErrLifetime, life, v.cfg.MaxTokenLifetime)
	}
	if !containsAny(c.Audience, is.Audience) {
		return nil, ErrAudience
	}
	return c, nil
}

// ready reports the endpoint's state for [Verifier.Ready]. When no call
// has got an answer yet, or calls fail and the schedule allows the next,
// it probes the endpoint with a random token first (any answer will do).
func (in *introspector) ready() error {
	in.mu.Lock()
	probe := (!in.succeeded || in.failures > 0) && !in.probing && !in.v.now().Before(in.nextAllowed)
	in.mu.Unlock()
	if probe {
		var b [16]byte
		_, _ = rand.Read(b[:])
		ctx, cancel := context.WithTimeout(in.v.ctx, in.cfg.Timeout)
		_, _ = in.call(ctx, "apiguard-readiness-probe-"+hex.EncodeToString(b[:]))
		cancel()
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.v.now()
	if in.failures == 0 || (in.succeeded && now.Sub(in.failingFrom) <= max(in.cfg.CacheTTL, 0)) {
		return nil
	}
	u := in.unavailableLocked(now).(*UnavailableError)
	u.Err = fmt.Errorf("introspection endpoint of %s: %w", in.ik.issuer.Issuer, in.lastErr)
	return u
}

// retryAt is when the next call may start while calls fail; zero when
// they do not.
func (in *introspector) retryAt() time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.failures == 0 {
		return time.Time{}
	}
	return in.nextAllowed
}
