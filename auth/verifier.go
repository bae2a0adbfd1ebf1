package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/apiguard/apiguard/internal/events"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
)

// Verifier verifies access tokens. It is safe for concurrent use by
// multiple goroutines. The zero value is not usable; create one with
// [New] and stop its background work with [Verifier.Close].
type Verifier struct {
	cfg     Config
	issuers map[string]*issuerKeys
	cache   *lru.Cache[[32]byte, cachedToken] // by SHA-256 of the token; nil when disabled
	gens    atomic.Uint64                     // key-set generations
	dpop    *dpopChecker                      // nil when DPoP is off
	resMeta resourceMeta                      // RFC 9728 document; zero without Config.Resource
	intro   *introspector                     // nil when no issuer introspects

	issuerNames string // the configured issuers, quoted, for errors

	ctx    context.Context // lives until Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	endMu    sync.Mutex
	fetchEnd chan struct{} // closed, and replaced, when any JWKS fetch ends
}

// cachedToken is a verified token: its claims, and the key set (issuer
// and generation) whose key verified it. It serves only while that key set
// is current and, for a remote one, within MaxKeyStaleness.
type cachedToken struct {
	claims *Claims
	ik     *issuerKeys
	gen    uint64
}

// New validates cfg, fills in its defaults and returns a Verifier. Remote
// key sets are fetched in the background from now on; New does not wait
// for them, so a JWKS outage at start-up does not stop the service (the
// first requests wait up to Config.MaxKeyWait, then get 503 with
// Retry-After).
func New(cfg Config) (*Verifier, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &Verifier{cfg: cfg, issuers: map[string]*issuerKeys{}, ctx: ctx, cancel: cancel, fetchEnd: make(chan struct{})}
	names := make([]string, len(cfg.Issuers))
	for i, is := range cfg.Issuers {
		names[i] = is.Issuer
	}
	v.issuerNames = fmt.Sprintf("%q", names)
	v.resMeta = newResourceMeta(&v.cfg)
	if cfg.TokenCacheSize > 0 {
		c, err := lru.New[[32]byte, cachedToken](cfg.TokenCacheSize)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("auth: token cache: %w", err)
		}
		v.cache = c
	}
	if cfg.DPoP != DPoPOff {
		d, err := newDPoPChecker(&v.cfg)
		if err != nil {
			cancel()
			return nil, err
		}
		v.dpop = d
	}
	for i := range v.cfg.Issuers {
		is := &v.cfg.Issuers[i]
		// An issuer without Keys fetches its JWKS (from JWKSURL, or
		// discovered), unless it introspects and has no JWKSURL: then it
		// has no key set at all.
		remote := is.Keys == nil && (is.JWKSURL != "" || is.Introspection == nil)
		ik := &issuerKeys{issuer: is, v: v, remote: remote, wake: make(chan struct{}, 1)}
		if is.Keys != nil {
			set := buildKeySet(setKeys(is.Keys), is.Algorithms, cfg.Now(), ik.skipLogger())
			if len(set.all) == 0 {
				cancel()
				return nil, fmt.Errorf("auth: Config.Issuers[%d].Keys holds no usable key", i)
			}
			set.gen = v.gens.Add(1)
			ik.cur.Store(set)
		}
		v.issuers[is.Issuer] = ik
		if is.Introspection != nil {
			in, err := newIntrospector(v, ik)
			if err != nil {
				cancel()
				return nil, err
			}
			v.intro = in
		}
	}
	for _, ik := range v.issuers {
		if ik.remote {
			v.wg.Add(1)
			go ik.loop()
		}
	}
	events.WarnUnobserved(v.cfg.Logger, "auth")
	return v, nil
}

// Close stops the background JWKS refreshes and waits for them to end. It
// is idempotent and always returns nil. A closed Verifier keeps verifying
// with the keys it has.
func (v *Verifier) Close() error {
	v.once.Do(func() {
		v.cancel()
		for _, ik := range v.issuers {
			ik.mu.Lock()
			ik.closed = true // no fetch starts (no wg.Add) once Wait may run
			ik.mu.Unlock()
		}
		v.wg.Wait()
	})
	return nil
}

func (v *Verifier) now() time.Time { return v.cfg.Now() }

// keysRotated frees the cache when a key set changed: its entries would
// no longer serve (their generation is not current), and tokens verified
// by keys still in the new set are verified once again.
func (v *Verifier) keysRotated() {
	if v.cache != nil {
		v.cache.Purge()
	}
}

// Verify checks the access token of r, and its DPoP proof when it has
// one, and returns the token's claims. It writes nothing; the errors match
// the sentinels of this package (errors.Is). The Claims returned may be
// shared with other requests that carry the same token: treat them as
// read-only.
func (v *Verifier) Verify(r *http.Request) (*Claims, error) {
	scheme, token, err := v.extract(r)
	if err != nil {
		return nil, err
	}
	claims, err := v.VerifyToken(r.Context(), token)
	if err != nil {
		return nil, err
	}
	if err := v.checkBinding(r, scheme, token, claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// extract returns the scheme ("Bearer" or "DPoP") and token of r.
func (v *Verifier) extract(r *http.Request) (string, string, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", "", ErrNoToken
	}
	if len(vals) > 1 {
		return "", "", ErrInvalidRequest
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	token = strings.TrimLeft(token, " ") // credentials = auth-scheme 1*SP token68 (RFC 9110 §11.4)
	switch {
	case strings.EqualFold(scheme, "Bearer") && v.cfg.DPoP != DPoPRequired:
		scheme = "Bearer"
	case strings.EqualFold(scheme, "DPoP") && v.cfg.DPoP != DPoPOff:
		scheme = "DPoP"
	default:
		// Another scheme (Basic, or one not enabled): no token for us.
		return "", "", ErrNoToken
	}
	// Characters outside base64url fail the token's strict decoding
	// (invalid_token); only the header's own syntax is checked here.
	if !ok || token == "" || strings.IndexByte(token, ' ') >= 0 {
		return "", "", ErrInvalidRequest
	}
	return scheme, token, nil
}

// jwsHeader is the protected header of a token or proof.
type jwsHeader struct {
	Alg  string           `json:"alg"`
	Kid  string           `json:"kid"`
	Typ  string           `json:"typ"`
	Jku  *json.RawMessage `json:"jku"`
	X5u  *json.RawMessage `json:"x5u"`
	Crit *json.RawMessage `json:"crit"`
	JWK  json.RawMessage  `json:"jwk"`
}

// compact is a split compact JWS.
type compact struct {
	header  jwsHeader
	payload []byte // decoded
	input   []byte // the signing input: header "." payload, as sent
	sig     []byte // decoded
}

var b64 = base64.RawURLEncoding.Strict()

// parseCompact splits and decodes a compact JWS of at most maxSize bytes.
func parseCompact(token string, maxSize int) (*compact, error) {
	if len(token) > maxSize || strings.Count(token, ".") != 2 {
		return nil, ErrMalformedToken
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	if h == "" || p == "" || s == "" {
		return nil, ErrMalformedToken
	}
	hb, err1 := b64.DecodeString(h)
	pb, err2 := b64.DecodeString(p)
	sb, err3 := b64.DecodeString(s)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, ErrMalformedToken
	}
	c := &compact{payload: pb, input: []byte(token[:len(h)+1+len(p)]), sig: sb}
	if len(hb) == 0 || hb[0] != '{' || json.Unmarshal(hb, &c.header) != nil {
		return nil, ErrMalformedToken
	}
	if c.header.Jku != nil || c.header.X5u != nil || c.header.Crit != nil {
		return nil, ErrForbiddenHeader
	}
	return c, nil
}

// VerifyToken checks an access token alone, with no request: signature,
// issuer, audience, type, lifetime, or for a token to introspect (see
// [Introspection]) the endpoint's answer. It does not check DPoP binding;
// use [Verifier.Verify] for requests.
func (v *Verifier) VerifyToken(ctx context.Context, token string) (*Claims, error) {
	if len(token) > v.cfg.MaxTokenSize {
		return nil, ErrMalformedToken
	}
	var key [32]byte
	if v.cache != nil || v.intro != nil {
		key = sha256.Sum256([]byte(token))
	}
	if v.cache != nil {
		if e, ok := v.cache.Get(key); ok {
			now := v.now()
			// The entry serves only under the key set that verified it,
			// and within the staleness bound new tokens are held to; else
			// the token is verified again (and gets what a new one would).
			if set := e.ik.cur.Load(); set.gen == e.gen && (!e.ik.remote || now.Sub(set.fetched) <= v.cfg.MaxKeyStaleness) {
				if err := v.checkTimes(e.claims, now); err != nil {
					v.cache.Remove(key)
					return nil, err
				}
				if err := v.checkRevoked(e.claims); err != nil {
					return nil, err
				}
				return e.claims, nil
			}
		}
	}
	// After the JWT cache, which never holds a token to introspect, so
	// that cached JWTs pay nothing for the routing.
	if v.intro != nil && v.intro.introspects(token) {
		c, err := v.intro.verify(ctx, token, key)
		if err != nil {
			return nil, err
		}
		if err := v.checkRevoked(c); err != nil {
			return nil, err
		}
		return c, nil
	}
	e, err := v.verifyToken(ctx, token)
	if err != nil {
		return nil, err
	}
	if err := v.checkRevoked(e.claims); err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.Add(key, e)
	}
	return e.claims, nil
}

// checkRevoked asks Config.Revocations about a verified token.
func (v *Verifier) checkRevoked(c *Claims) error {
	if v.cfg.Revocations != nil && v.cfg.Revocations.Revoked(c.Issuer, c.Subject, c.SessionID, c.ID, c.ClientID, c.IssuedAt) {
		return ErrRevoked
	}
	return nil
}

func (v *Verifier) verifyToken(ctx context.Context, token string) (cachedToken, error) {
	jws, err := parseCompact(token, v.cfg.MaxTokenSize)
	if err != nil {
		return cachedToken{}, err
	}
	if len(jws.payload) == 0 || jws.payload[0] != '{' {
		return cachedToken{}, ErrMalformedToken
	}
	var p payload
	if err := json.Unmarshal(jws.payload, &p); err != nil {
		return cachedToken{}, fmt.Errorf("%w: claims: %v", ErrMalformedToken, err)
	}
	ik := v.issuers[p.Iss]
	if ik == nil {
		return cachedToken{}, fmt.Errorf("%w: token iss %s is none of the configured issuers %s", ErrIssuer, quoteUntrusted(p.Iss), v.issuerNames)
	}
	alg := jwa.SignatureAlgorithm(jws.header.Alg)
	if !slices.Contains(ik.issuer.Algorithms, alg) {
		return cachedToken{}, ErrAlgorithm
	}
	if err := checkType(jws.header.Typ, &p, ik.issuer); err != nil {
		return cachedToken{}, err
	}
	now := v.now()
	issued := v.issuedBound(&p, now)
	begin := time.Now() // MaxKeyWait bounds real waiting, for both look-ups
	set, k, err := ik.keysFor(ctx, jws.header.Kid, alg, now, issued, false, v.cfg.MaxKeyWait)
	if err != nil {
		return cachedToken{}, err
	}
	if err := verifySignature(alg, k.pub, jws.input, jws.sig); err != nil {
		// A set older than the token may hold a key the issuer has since
		// replaced under the same kid (or, for tokens without kid, its
		// single key replaced): as for a kid the set lacks, 503 until a
		// set fetched after the token settles it, never a 401 for a valid
		// token because the keys are behind.
		if !ik.remote || !set.fetched.Before(issued) {
			return cachedToken{}, err
		}
		set, k, err = ik.keysFor(ctx, jws.header.Kid, alg, v.now(), issued, true, v.cfg.MaxKeyWait-time.Since(begin))
		if err != nil {
			return cachedToken{}, err
		}
		if err := verifySignature(alg, k.pub, jws.input, jws.sig); err != nil {
			return cachedToken{}, err
		}
	}
	if !p.Exp.set {
		return cachedToken{}, ErrExpired
	}
	if !p.Iat.set {
		return cachedToken{}, fmt.Errorf("%w: no iat, so Config.MaxTokenLifetime (%s) cannot be checked", ErrLifetime, v.cfg.MaxTokenLifetime)
	}
	if err := p.checkConfirmation(); err != nil {
		return cachedToken{}, err
	}
	c := p.claims(jws.payload)
	if err := v.checkTimes(c, now); err != nil {
		return cachedToken{}, err
	}
	if life := c.Expiry.Sub(c.IssuedAt); life > v.cfg.MaxTokenLifetime {
		return cachedToken{}, fmt.Errorf("%w: exp - iat is %s, over Config.MaxTokenLifetime (%s)", ErrLifetime, life, v.cfg.MaxTokenLifetime)
	}
	if !containsAny(c.Audience, ik.issuer.Audience) {
		return cachedToken{}, ErrAudience
	}
	return cachedToken{claims: c, ik: ik, gen: set.gen}, nil
}

// issuedBound returns the latest time at which the token of p, if it is
// genuine, can have been issued: the earlier of now and its (unverified)
// iat plus ClockSkew. Its signing key was published by then, so a key set
// fetched no earlier that lacks the kid proves the kid unknown. It is the
// zero time when the token cannot be valid with any key (no iat, or
// expired), so that such tokens never cause a fetch.
func (v *Verifier) issuedBound(p *payload, now time.Time) time.Time {
	if !p.Iat.set || (p.Exp.set && !now.Before(p.Exp.t.Add(v.cfg.ClockSkew))) {
		return time.Time{}
	}
	return minTime(now, p.Iat.t.Add(v.cfg.ClockSkew))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkTimes checks exp, nbf and iat against now with skew.
func (v *Verifier) checkTimes(c *Claims, now time.Time) error {
	skew := v.cfg.ClockSkew
	if !now.Before(c.Expiry.Add(skew)) {
		return ErrExpired
	}
	if !c.NotBefore.IsZero() && now.Add(skew).Before(c.NotBefore) {
		return ErrNotYetValid
	}
	if now.Add(skew).Before(c.IssuedAt) {
		return ErrNotYetValid
	}
	return nil
}

// checkType enforces typ at+jwt (RFC 9068 §4), or with
// Issuer.InsecureAllowJWTType also JWT or none, never a token with
// ID-token claims. The error names the setting, and says whether it would
// help.
func checkType(typ string, p *payload, is *Issuer) error {
	if p.Nonce != nil || p.AtHash != nil || p.CHash != nil {
		return fmt.Errorf("%w: an ID token (it carries nonce, at_hash or c_hash), whatever Issuer.InsecureAllowJWTType says", ErrType)
	}
	t := strings.ToLower(typ)
	jwt := t == "" || t == "jwt" || t == "application/jwt"
	switch {
	case t == "at+jwt" || t == "application/at+jwt":
	case jwt && is.InsecureAllowJWTType:
	case jwt:
		return fmt.Errorf("%w: typ %s is not at+jwt (RFC 9068); if issuer %q does not type its access tokens, set its Issuer.InsecureAllowJWTType", ErrType, quoteUntrusted(typ), is.Issuer)
	default:
		return fmt.Errorf("%w: typ %s is neither at+jwt nor JWT (which Issuer.InsecureAllowJWTType would accept)", ErrType, quoteUntrusted(typ))
	}
	return nil
}

// maxUntrusted caps a value from a token quoted in an error or log.
const maxUntrusted = 128

// quoteUntrusted quotes a value taken from a token, for an error or log:
// at most maxUntrusted bytes, invalid UTF-8 dropped, control and format
// characters (newlines, escape sequences, bidi overrides) removed, so
// that it can neither forge log lines nor flood them.
func quoteUntrusted(s string) string {
	cut := len(s) > maxUntrusted
	if cut {
		s = s[:maxUntrusted]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	q := strconv.Quote(s)
	if cut {
		q += "..."
	}
	return q
}

func containsAny(have, want []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// Requirement is what an endpoint asks of a verified token beyond
// validity: scopes, and for step-up (RFC 9470) the authentication context
// class and the age of the authentication.
type Requirement struct {
	// Scopes must all be granted.
	Scopes []string
	// ACRValues, when set, lists the acceptable acr values, most preferred
	// first; a token with another acr gets a step-up challenge.
	ACRValues []string
	// MaxAge, when set, is the greatest accepted time since auth_time; a
	// token without auth_time or with an older one gets a step-up
	// challenge.
	MaxAge time.Duration
}

// Authorize checks claims against req. It returns a *[RequirementError]
// wrapping [ErrInsufficientScope] or [ErrStepUp].
func (v *Verifier) Authorize(claims *Claims, req Requirement) error {
	for _, s := range req.Scopes {
		if !claims.HasScope(s) {
			return &RequirementError{Err: ErrInsufficientScope, Scopes: req.Scopes}
		}
	}
	stepUp := len(req.ACRValues) > 0 && !slices.Contains(req.ACRValues, claims.ACR)
	if req.MaxAge > 0 && (claims.AuthTime.IsZero() || v.now().Sub(claims.AuthTime) > req.MaxAge+v.cfg.ClockSkew) {
		stepUp = true
	}
	if stepUp {
		return &RequirementError{Err: ErrStepUp, ACRValues: req.ACRValues, MaxAge: req.MaxAge}
	}
	return nil
}

type ctxKey struct{ name string }

var claimsKey = &ctxKey{"claims"}

// claimsCtx is the context that carries the claims and the verifier that
// checked them: one allocation instead of a value and a context.
type claimsCtx struct {
	context.Context
	claims *Claims
	v      *Verifier
	// refused: shadow mode refused the request (claims nil, or failing a
	// Require), decided and logged once; stacked Requires add nothing.
	refused bool
}

// Value returns the claimsCtx for auth's key and defers to the parent
// context for every other key.
func (c *claimsCtx) Value(key any) any {
	if key == claimsKey {
		return c
	}
	return c.Context.Value(key)
}

// ClaimsFrom returns the claims of the token verified for the request
// whose context is ctx; false when there are none (no Verifier ran, or
// one in shadow mode refused the token).
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	cc, ok := ctx.Value(claimsKey).(*claimsCtx)
	if !ok || cc.claims == nil {
		return nil, false
	}
	return cc.claims, true
}

// Handler returns next behind access-token verification: a request with
// a valid token reaches next with its claims in the context
// ([ClaimsFrom]); any other is answered by Config.ErrorHandler and logged
// as event=auth_failed with its reason (in shadow mode, Config.Shadow,
// logged with shadow=true and passed to next without claims). It panics
// if next is nil.
func (v *Verifier) Handler(next http.Handler) http.Handler {
	return v.RequireWith(Requirement{})(next)
}

// Require returns middleware that verifies the token (unless this
// Verifier's Handler already did, earlier in the chain) and requires all
// of scopes: a token without them is answered 403 with
// WWW-Authenticate: Bearer error="insufficient_scope", scope="...".
func (v *Verifier) Require(scopes ...string) func(http.Handler) http.Handler {
	return v.RequireWith(Requirement{Scopes: scopes})
}

// RequireWith is [Verifier.Require] with step-up requirements (RFC 9470):
// a token whose acr or auth_time falls short is answered 401 with
// error="insufficient_user_authentication" and the acr_values and max_age
// the client must ask the authorization server for.
func (v *Verifier) RequireWith(req Requirement) func(http.Handler) http.Handler {
	req.Scopes = slices.Clone(req.Scopes)
	req.ACRValues = slices.Clone(req.ACRValues)
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("auth: nil handler")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			var claims *Claims
			refused := false
			if cc, ok := ctx.Value(claimsKey).(*claimsCtx); ok && cc.v == v {
				claims, refused = cc.claims, cc.refused || cc.claims == nil
			} else {
				c, err := v.Verify(r)
				if err != nil && v.reject(w, r, err) {
					return
				}
				claims = c
				r = r.WithContext(&claimsCtx{Context: ctx, claims: c, v: v})
			}
			if !refused && claims != nil {
				if err := v.Authorize(claims, req); err != nil {
					if v.reject(w, r, err) {
						return
					}
					r = r.WithContext(&claimsCtx{Context: r.Context(), claims: claims, v: v, refused: true})
				}
			}
			if v.dpop != nil {
				v.dpop.refreshNonce(w, r)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// reject logs the refusal of r for err and answers it, and reports true;
// in shadow mode it logs the refusal with shadow=true, answers nothing and
// reports false: the caller passes r on.
func (v *Verifier) reject(w http.ResponseWriter, r *http.Request, err error) bool {
	level := slog.LevelWarn
	if err == ErrNoToken {
		level = slog.LevelInfo
	}
	attrs := []slog.Attr{slog.String("event", "auth_failed"), slog.String("reason", reason(err)), slog.String("error", err.Error())}
	if v.cfg.Shadow {
		attrs = append(attrs, slog.Bool("shadow", true))
	}
	events.Log(r.Context(), v.cfg.Logger, level, "auth: request rejected", attrs...)
	if v.cfg.Shadow {
		return false
	}
	if v.cfg.ErrorHandler != nil {
		v.cfg.ErrorHandler(w, r, err)
		return true
	}
	v.WriteError(w, r, err)
	return true
}
