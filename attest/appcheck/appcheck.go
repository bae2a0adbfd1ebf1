package appcheck

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/replay"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// App Check errors.
var (
	// ErrToken: the Firebase App Check token is not valid (signature, alg,
	// typ, issuer, audience, expiry, app, or a key ID the current key set
	// does not hold).
	ErrToken = errors.New("attest: app check token not valid")
	// ErrVendor: the key set cannot be had, is too stale, or has not
	// caught up with the token's kid (an [*UnavailableError]).
	ErrVendor = provider.ErrVendor
	// ErrTokenReplayed: a limited-use token was presented again before
	// its expiry (its jti is recorded in Config.Replay, or the Consumer
	// reported it already consumed). It matches [ErrToken].
	ErrTokenReplayed = fmt.Errorf("%w: limited-use token used before", ErrToken)
	// ErrStore: the Config.Replay store did not answer, so a limited-use
	// token cannot be proved unused; it is refused (an outage).
	ErrStore = provider.ErrStore
)

// ReplayStore records the jti of limited-use tokens as used until their
// expiry: the method set of redisstore.ReplayStore (and of
// auth.ReplayStore and playintegrity.NonceStore). Use returns true for
// the first use of id, false for every later one until exp.
type ReplayStore interface {
	Use(ctx context.Context, id string, exp time.Time) (bool, error)
}

// Consumer marks a limited-use token as consumed at Firebase, so that
// backends not behind this verifier (Cloud Functions, a Node service with
// the Admin SDK's consume option) refuse it too. A client implements it
// with a POST to
// https://firebaseappcheck.googleapis.com/v1beta/projects/{project_number}:verifyAppCheckToken
// with body {"appCheckToken": token}, under Google service-account
// credentials, returning the answer's alreadyConsumed. An error (no
// answer, a non-2xx) is an outage: the token is refused. ctx is the
// request's; the client bounds its own call. apiguard ships no such
// client (it would pull in Google credentials).
type Consumer interface {
	Consume(ctx context.Context, token string) (alreadyConsumed bool, err error)
}

// UnavailableError reports that the key set cannot be used now, and in
// RetryAfter how long until the next fetch. It wraps [ErrVendor].
type UnavailableError = provider.UnavailableError

// Header carries a Firebase App Check token.
const Header = "X-Firebase-AppCheck"

// App Check key set bounds that are not configurable.
const (
	// appCheckDefaultMaxAge is how long a key set is used before a
	// background refresh when its answer had no Cache-Control max-age;
	// a max-age is clamped to [MinRefresh, appCheckDefaultMaxAge].
	appCheckDefaultMaxAge = 6 * time.Hour
	// appCheckMaxStaleness is how long after its fetch a key set is used
	// at all: past it, while refreshes fail, tokens are answered as a
	// vendor outage.
	appCheckMaxStaleness = 24 * time.Hour
	// appCheckMaxJWKS caps the key set document.
	appCheckMaxJWKS = 256 << 10
	// appCheckSkew is the clock skew allowed on exp: a token is accepted
	// until exp plus appCheckSkew, so its jti is recorded as long.
	appCheckSkew = 30 * time.Second
)

// Config configures a [Verifier]. A zero field takes the default in its
// comment; a negative duration is an error naming the field.
type Config struct {
	// ProjectNumber is the Firebase project number. Required.
	ProjectNumber string
	// AppIDs, when set, are the accepted Firebase app IDs (the token's
	// sub). Default: any app of the project.
	AppIDs []string
	// JWKSURL is App Check's key set. Default:
	// https://firebaseappcheck.googleapis.com/v1/jwks.
	JWKSURL string
	// HTTPClient fetches the key set. Default: http.DefaultClient.
	HTTPClient *http.Client
	// MinRefresh is the least time between two fetches of the key set, in
	// every state: before the first successful load as after it, on an
	// unknown kid and for the periodic refresh. After consecutive failures
	// the spacing doubles from MinRefresh up to 16 times MinRefresh, with
	// ±20 % jitter. Fetches are deduplicated: one at a time, whatever the
	// traffic. Default: 1 minute.
	MinRefresh time.Duration
	// MaxWait is the longest a request waits on a fetch of the key set
	// (the first load, or a refresh for a kid the set does not hold). The
	// fetch goes on in the background, bounded by FetchTimeout, and the
	// request is answered as a vendor outage ([UnavailableError], whose
	// RetryAfter is the time until the next fetch). Default: 500ms.
	MaxWait time.Duration
	// FetchTimeout bounds one fetch of the key set. Default: 10s.
	FetchTimeout time.Duration
	// LimitedUse makes every token verified single use, as
	// [Verifier.VerifyLimitedUse] does. Default: false: only
	// VerifyLimitedUse, and routes with attest.Route.LimitedUse, require
	// it.
	LimitedUse bool
	// Replay records the jti of limited-use tokens until their exp (plus
	// 30s of skew); ids are a digest of project and jti, never the token.
	// Several instances must share one (redisstore.ReplayStore), or a
	// token is usable once per instance. Default: in memory, 100000
	// entries, forgotten at restart; an id it must evict raises its
	// floor, so tokens expiring at or before the evicted one are refused,
	// never admitted twice.
	Replay ReplayStore
	// Consumer, when set, is called for each limited-use token that
	// Replay accepted, to consume it at Firebase as well. Default: none.
	Consumer Consumer
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives events (attestation_failed, appcheck_jwks_error,
	// appcheck_jwks_refresh). Default: slog.Default().
	Logger *slog.Logger
}

// Verifier verifies Firebase App Check tokens. It is safe for concurrent
// use by multiple goroutines; Close waits for a fetch under way.
type Verifier struct {
	cfg Config
	iss string
	aud string

	keys *provider.Fetcher[map[string]*rsa.PublicKey] // the key set, by kid
}

// New validates cfg, fills in its defaults and returns a verifier. The
// key set is fetched on first use.
func New(cfg Config) (*Verifier, error) {
	if cfg.ProjectNumber == "" || strings.Trim(cfg.ProjectNumber, "0123456789") != "" {
		return nil, errors.New("attest: appcheck.Config.ProjectNumber is required: the numeric project number")
	}
	if err := provider.Negative(
		provider.Dur("appcheck.Config.MinRefresh", cfg.MinRefresh),
		provider.Dur("appcheck.Config.MaxWait", cfg.MaxWait),
		provider.Dur("appcheck.Config.FetchTimeout", cfg.FetchTimeout),
	); err != nil {
		return nil, err
	}
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = "https://firebaseappcheck.googleapis.com/v1/jwks"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = time.Minute
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Replay == nil {
		cfg.Replay = memoryReplay{replay.New(100000, cfg.Now(), cfg.Now)}
	}
	events.WarnUnobserved(cfg.Logger, "attest/appcheck")
	return &Verifier{
		cfg: cfg,
		iss: "https://firebaseappcheck.googleapis.com/" + cfg.ProjectNumber,
		aud: "projects/" + cfg.ProjectNumber,
		keys: provider.NewFetcher(provider.FetchConfig[map[string]*rsa.PublicKey]{
			Name: "app check key set", Message: "app check key set", Event: "appcheck_jwks", Fetch: "fetch app check jwks",
			URL: cfg.JWKSURL, Client: cfg.HTTPClient, MaxBytes: appCheckMaxJWKS, Parse: parseKeySet,
			Size:          func(keys map[string]*rsa.PublicKey) slog.Attr { return slog.Int("keys", len(keys)) },
			DefaultMaxAge: appCheckDefaultMaxAge, MaxMaxAge: appCheckDefaultMaxAge,
			MinRefresh: cfg.MinRefresh, FetchTimeout: cfg.FetchTimeout, MaxStale: appCheckMaxStaleness,
			Now: cfg.Now, Logger: cfg.Logger,
		}),
	}, nil
}

// Provider is how an attest.Verifier consults c: set c itself as
// attest.Config.AppCheck rather than calling this. A request carries its
// token in the [Header]; App Check binds nothing of the request. On a
// route with attest.Route.LimitedUse (or with Config.LimitedUse) the
// token is used once, within the request's store deadline.
func (c *Verifier) Provider() provider.Provider {
	return provider.Provider{Name: "app_check", Identities: []string{"firebase:" + c.cfg.ProjectNumber},
		Check: func(ctx context.Context, r *provider.Request) (*provider.Verdict, error) {
			if _, err := c.check(ctx, r.Token, r.LimitedUse || c.cfg.LimitedUse, r.Store); err != nil {
				return nil, err
			}
			return &provider.Verdict{}, nil
		}}
}

// KeySetAge reports, for gauges, the key set's age since its last
// successful fetch (by Config.Now), whether a set was ever loaded, and
// the error of the last fetch (nil when it succeeded). It can be called
// concurrently with request handling.
func (c *Verifier) KeySetAge() (age time.Duration, loaded bool, lastErr error) {
	return c.keys.Age()
}

// Ready reports whether tokens can be verified: nil while a key set is
// loaded and fetched less than 24 hours ago (the longest a set is used
// while refreshes fail). Otherwise it starts a fetch when the spacing
// allows one (Config.MinRefresh: probes never storm the key server),
// waits for the fetch under way until it ends or ctx does, and returns
// an [*UnavailableError] (matching [ErrVendor]) carrying the last fetch
// error. With a key set, when Config.Replay has a Ready(ctx) error
// method (redisstore's), it returns its answer wrapped in [ErrStore].
// To wait for the first key set at start-up, bounded:
//
//	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
//	defer cancel()
//	if err := ac.Ready(ctx); err != nil { ... } // start anyway, or exit
//
// A set older than its max-age is refreshed in the background. Ready can
// be called concurrently with request handling.
func (c *Verifier) Ready(ctx context.Context) error {
	now := c.cfg.Now()
	if c.keys.Current(now) == nil {
		c.keys.Await(ctx, now, 0)
		now = c.cfg.Now()
		if c.keys.Current(now) == nil {
			return c.keys.Unavailable(now, c.keys.Missing())
		}
	}
	return provider.StoreReady(ctx, "replay store", c.cfg.Replay)
}

// Close stops fetching the key set and waits for a fetch under way. It is
// idempotent and returns nil.
func (c *Verifier) Close() error {
	c.keys.Close()
	return nil
}

// Token is a verified App Check token.
type Token struct {
	AppID  string
	Expiry time.Time
}

// Verify checks an App Check token. Errors match [ErrToken], or
// [ErrVendor] (an [*UnavailableError]) when the key set cannot be had or
// has not caught up with the token's kid. With Config.LimitedUse it is
// [Verifier.VerifyLimitedUse].
func (c *Verifier) Verify(ctx context.Context, token string) (*Token, error) {
	return c.check(ctx, token, c.cfg.LimitedUse, nil)
}

// VerifyLimitedUse checks a limited-use App Check token (one the app got
// with getLimitedUseToken) as Verify does, then uses it once: its jti is
// recorded in Config.Replay until its expiry, and the Consumer, if any,
// consumes it at Firebase. Returns [ErrTokenReplayed] (matching
// [ErrToken]) for a token used before, [ErrToken] for one without a jti,
// [ErrStore] when the store did not answer, and [ErrVendor] when the
// Consumer failed: a token is refused whenever its single use cannot be
// proved.
func (c *Verifier) VerifyLimitedUse(ctx context.Context, token string) (*Token, error) {
	return c.check(ctx, token, true, nil)
}

// check verifies token, uses it once when limited (store calls under
// the request's deadline d when not nil), and logs a refusal.
func (c *Verifier) check(ctx context.Context, token string, limited bool, d *provider.StoreDeadline) (*Token, error) {
	t, jti, err := c.verify(ctx, token)
	if err == nil && limited {
		err = c.useOnce(ctx, token, jti, t.Expiry, d)
	}
	if err != nil {
		reason := "token"
		switch {
		case errors.Is(err, ErrTokenReplayed):
			reason = "replay"
		case errors.Is(err, ErrVendor):
			reason = "vendor"
		case errors.Is(err, ErrStore):
			reason = "store"
		}
		events.Log(ctx, c.cfg.Logger, slog.LevelWarn, "attest: app check token refused",
			slog.String("event", "attestation_failed"), slog.String("reason", reason), slog.String("provider", "app_check"))
		return nil, err
	}
	return t, nil
}

// useOnce records jti as used until exp plus the skew Verify allows, and
// then asks the Consumer. The store comes first: a replay costs no call
// to Google.
func (c *Verifier) useOnce(ctx context.Context, token, jti string, exp time.Time, d *provider.StoreDeadline) error {
	if jti == "" {
		return fmt.Errorf("%w: limited-use token without jti", ErrToken)
	}
	id := sha256.Sum256([]byte("app-check-jti\x00" + c.cfg.ProjectNumber + "\x00" + jti))
	sctx, cancel := ctx, context.CancelFunc(func() {})
	if d != nil {
		sctx, cancel = d.Context(ctx)
	}
	fresh, err := c.cfg.Replay.Use(sctx, base64.RawURLEncoding.EncodeToString(id[:]), exp.Add(appCheckSkew))
	cancel()
	switch {
	case err != nil:
		return fmt.Errorf("%w: replay store: %v", ErrStore, err)
	case !fresh:
		return ErrTokenReplayed
	case c.cfg.Consumer == nil:
		return nil
	}
	used, err := c.cfg.Consumer.Consume(ctx, token)
	switch {
	case err != nil:
		return fmt.Errorf("%w: consume: %v", ErrVendor, err)
	case used:
		return ErrTokenReplayed
	}
	return nil
}

// memoryReplay is the bounded in-memory ReplayStore, with the eviction
// floor of internal/replay.
type memoryReplay struct{ c *replay.Cache }

func (m memoryReplay) Use(_ context.Context, id string, exp time.Time) (bool, error) {
	return m.c.Use(id, exp) == replay.Fresh, nil
}

// verify checks token and returns it with its jti ("" when it has none).
func (c *Verifier) verify(ctx context.Context, token string) (t *Token, jti string, err error) {
	defer func() { // a panic in the JOSE library on crafted input is a refusal
		if r := recover(); r != nil {
			t, jti, err = nil, "", fmt.Errorf("%w: malformed", ErrToken)
		}
	}()
	if token == "" || len(token) > 8<<10 || strings.Count(token, ".") != 2 {
		return nil, "", fmt.Errorf("%w: malformed", ErrToken)
	}
	hb, err := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
	if err != nil {
		return nil, "", fmt.Errorf("%w: malformed header", ErrToken)
	}
	var hdr struct{ Alg, Typ, Kid string }
	if json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "RS256" || !strings.EqualFold(hdr.Typ, "JWT") || hdr.Kid == "" {
		return nil, "", fmt.Errorf("%w: header", ErrToken)
	}
	key, err := c.key(ctx, hdr.Kid)
	if err != nil {
		return nil, "", err
	}
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(jwa.RS256, key), jwt.WithValidate(true), jwt.WithIssuer(c.iss), jwt.WithAudience(c.aud),
		jwt.WithRequiredClaim("exp"), jwt.WithAcceptableSkew(appCheckSkew),
		jwt.WithClock(jwt.ClockFunc(c.cfg.Now)))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrToken, err)
	}
	if len(c.cfg.AppIDs) > 0 && !slices.Contains(c.cfg.AppIDs, tok.Subject()) {
		return nil, "", fmt.Errorf("%w: app not allowed", ErrToken)
	}
	return &Token{AppID: tok.Subject(), Expiry: tok.Expiration()}, tok.JwtID(), nil
}

// key returns the key for kid. Without a usable set, or for a kid the set
// lacks, it starts a fetch if the spacing allows one and waits on the
// fetch under way for at most MaxWait.
func (c *Verifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	now := c.cfg.Now()
	seen := c.keys.Current(now)
	if seen != nil && seen.Value[kid] != nil {
		return seen.Value[kid], nil
	}
	c.keys.Await(ctx, now, c.cfg.MaxWait)
	now = c.cfg.Now()
	set := c.keys.Current(now)
	if set != nil {
		if k := set.Value[kid]; k != nil {
			return k, nil
		}
		if set != seen {
			// A set fetched since this request arrived lacks the kid.
			return nil, fmt.Errorf("%w: unknown kid", ErrToken)
		}
	}
	return nil, c.keys.Unavailable(now, nil)
}

// parseKeySet reads App Check's key set: its RS256 signing keys of 2048
// to 8192 bits, by kid; other keys are skipped.
func parseKeySet(body []byte) (map[string]*rsa.PublicKey, error) {
	keys := map[string]*rsa.PublicKey{}
	parsed, err := jwk.Parse(bytes.TrimSpace(body))
	if err != nil {
		return nil, fmt.Errorf("decode app check jwks: %w", err)
	}
	for i := range parsed.Len() {
		k, _ := parsed.Key(i)
		if k.KeyType() != jwa.RSA || k.KeyID() == "" || (k.KeyUsage() != "" && k.KeyUsage() != "sig") {
			continue
		}
		if a := k.Algorithm(); a != nil && a.String() != "" && a.String() != jwa.RS256.String() {
			continue
		}
		var pub rsa.PublicKey
		if err := k.Raw(&pub); err != nil || pub.N.BitLen() < 2048 || pub.N.BitLen() > 8192 {
			continue
		}
		keys[k.KeyID()] = &pub
	}
	if len(keys) == 0 {
		return nil, errors.New("decode app check jwks: no usable RS256 key")
	}
	return keys, nil
}
