package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// ErrAppCheckToken: the Firebase App Check token is not valid (signature,
// alg, typ, issuer, audience, expiry or app).
var ErrAppCheckToken = errors.New("attest: app check token not valid")

// HeaderAppCheck carries a Firebase App Check token.
const HeaderAppCheck = "X-Firebase-AppCheck"

// AppCheckConfig configures an [AppCheck] verifier.
type AppCheckConfig struct {
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
	// MinRefresh is the least time between refreshes of the key set
	// caused by an unknown kid. Default: 1 minute.
	MinRefresh time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives events (attestation_failed). Default: slog.Default().
	Logger *slog.Logger
}

// AppCheck verifies Firebase App Check tokens: RS256 JWTs of type JWT,
// issuer https://firebaseappcheck.googleapis.com/<project number>,
// audience containing projects/<project number>, from the App Check
// JWKS (fetched and cached by jwx, refreshed on an unknown kid at most
// once per MinRefresh). It is safe for concurrent use by multiple
// goroutines; Close stops the key-set refresh.
type AppCheck struct {
	cfg    AppCheckConfig
	cache  *jwk.Cache
	cancel context.CancelFunc
	iss    string
	aud    string

	mu          sync.Mutex
	lastRefresh time.Time
}

// NewAppCheck validates cfg, fills in its defaults and returns a verifier.
// The key set is fetched on first use.
func NewAppCheck(cfg AppCheckConfig) (*AppCheck, error) {
	if cfg.ProjectNumber == "" || strings.Trim(cfg.ProjectNumber, "0123456789") != "" {
		return nil, errors.New("attest: AppCheckConfig.ProjectNumber is required: the numeric project number")
	}
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = "https://firebaseappcheck.googleapis.com/v1/jwks"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cache := jwk.NewCache(ctx)
	if err := cache.Register(cfg.JWKSURL, jwk.WithHTTPClient(cfg.HTTPClient), jwk.WithMinRefreshInterval(cfg.MinRefresh)); err != nil {
		cancel()
		return nil, fmt.Errorf("attest: app check jwks: %w", err)
	}
	return &AppCheck{
		cfg: cfg, cache: cache, cancel: cancel,
		iss: "https://firebaseappcheck.googleapis.com/" + cfg.ProjectNumber,
		aud: "projects/" + cfg.ProjectNumber,
	}, nil
}

// Close stops the key-set refresh. It is idempotent and returns nil.
func (c *AppCheck) Close() error {
	c.cancel()
	return nil
}

// AppCheckToken is a verified App Check token.
type AppCheckToken struct {
	AppID  string
	Expiry time.Time
}

// Verify checks an App Check token. Errors match [ErrAppCheckToken], or
// [ErrVendor] when the key set cannot be had.
func (c *AppCheck) Verify(ctx context.Context, token string) (*AppCheckToken, error) {
	t, err := c.verify(ctx, token)
	if err != nil {
		reason := "token"
		if errors.Is(err, ErrVendor) {
			reason = "vendor"
		}
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "attest: app check token refused",
			slog.String("event", "attestation_failed"), slog.String("reason", reason), slog.String("provider", "app_check"))
	}
	return t, err
}

func (c *AppCheck) verify(ctx context.Context, token string) (t *AppCheckToken, err error) {
	defer func() { // a panic in the JOSE library on crafted input is a refusal
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%w: malformed", ErrAppCheckToken)
		}
	}()
	if token == "" || len(token) > 8<<10 || strings.Count(token, ".") != 2 {
		return nil, fmt.Errorf("%w: malformed", ErrAppCheckToken)
	}
	hb, err := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
	if err != nil {
		return nil, fmt.Errorf("%w: malformed header", ErrAppCheckToken)
	}
	var hdr struct{ Alg, Typ, Kid string }
	if json.Unmarshal(hb, &hdr) != nil || hdr.Alg != "RS256" || !strings.EqualFold(hdr.Typ, "JWT") || hdr.Kid == "" {
		return nil, fmt.Errorf("%w: header", ErrAppCheckToken)
	}
	set, err := c.cache.Get(ctx, c.cfg.JWKSURL)
	if err != nil {
		return nil, fmt.Errorf("%w: app check jwks: %v", ErrVendor, err)
	}
	if _, ok := set.LookupKeyID(hdr.Kid); !ok && c.mayRefresh() {
		if set, err = c.cache.Refresh(ctx, c.cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("%w: app check jwks: %v", ErrVendor, err)
		}
	}
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKeySet(set, jws.WithRequireKid(true), jws.WithInferAlgorithmFromKey(false)),
		jwt.WithValidate(true), jwt.WithIssuer(c.iss), jwt.WithAudience(c.aud),
		jwt.WithRequiredClaim("exp"), jwt.WithAcceptableSkew(30*time.Second),
		jwt.WithClock(jwt.ClockFunc(c.cfg.Now)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAppCheckToken, err)
	}
	if len(c.cfg.AppIDs) > 0 && !slices.Contains(c.cfg.AppIDs, tok.Subject()) {
		return nil, fmt.Errorf("%w: app not allowed", ErrAppCheckToken)
	}
	return &AppCheckToken{AppID: tok.Subject(), Expiry: tok.Expiration()}, nil
}

func (c *AppCheck) mayRefresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	if now.Sub(c.lastRefresh) < c.cfg.MinRefresh {
		return false
	}
	c.lastRefresh = now
	return true
}

var _ = jwa.RS256
