package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// DPoPMode says whether sender-constrained tokens (RFC 9449) are accepted
// or required.
//
// With Config.DPoP set, tokens bound to a key (cnf.jkt) are accepted with
// the DPoP scheme and a proof that passes every check of RFC 9449 §4.3
// (an RSA proof key may have at most 4096 bits, a JWKS key 8192);
// htu is compared with Config.DPoPURL plus the request path, never with
// the Host header, after RFC 3986 normalisation; a request path with dot
// segments ("/a/../b", "/a/%2E%2E/b") is refused, because routers resolve
// it differently. A proof's iat may be Config.DPoPProofWindow old but only
// Config.DPoPFutureSkew (10s) ahead. Proof jti values are single use
// through a [ReplayStore]; a proof that fails a check does not burn its
// jti. A bound token sent as a bearer token is refused whatever the mode.
// Server nonces (Config.DPoPNonceKey) are stateless, so they work across
// instances.
type DPoPMode int

const (
	// DPoPOff accepts Bearer tokens only. A token bound to a key (with
	// cnf.jkt) is rejected: its binding cannot be checked.
	DPoPOff DPoPMode = iota
	// DPoPAllowed accepts Bearer tokens and DPoP-bound tokens with a valid
	// proof.
	DPoPAllowed
	// DPoPRequired accepts DPoP-bound tokens with a valid proof only.
	DPoPRequired
)

// Config configures a [Verifier]. A zero field takes the default in its
// comment.
type Config struct {
	// Issuers are the trusted token issuers. Required: at least one. The
	// token's iss picks the issuer before any key is looked up.
	Issuers []Issuer

	// ClockSkew is the leeway for exp, nbf and iat. Default: 30s.
	ClockSkew time.Duration
	// MaxTokenLifetime rejects tokens whose exp - iat exceeds it, and
	// tokens without iat: the long-lived token is the classic incident.
	// Default: 1 hour.
	MaxTokenLifetime time.Duration
	// MaxTokenSize caps the token, checked before any parsing. Default:
	// 8 KiB.
	MaxTokenSize int
	// Realm is the realm of the WWW-Authenticate challenges. Default: none.
	Realm string
	// Resource is this API's resource identifier (RFC 9728): the https URL
	// (http only on loopback), without query or fragment, that clients ask
	// tokens for. With it, challenges carry resource_metadata, the URL of
	// the document [Verifier.MetadataHandler] serves. Default: none.
	Resource string
	// ResourceMetadata adds optional members to that document. Default:
	// none.
	ResourceMetadata ResourceMetadata
	// Shadow decides every request exactly as enforce mode does, with the
	// same side effects (DPoP proof jti values recorded as used, nonces
	// checked), logs each refusal as its usual event (auth_failed with
	// its reason) with shadow=true, which telemetry counts with the
	// attribute shadow="true" (the would-deny count), and then calls the
	// next handler instead of refusing. A refused token puts no claims in
	// the context ([ClaimsFrom] reports false), and a later Require of
	// the same Verifier in the chain neither decides nor logs again; a
	// valid token that lacks a scope or step-up passes with its claims.
	// Outages (ErrKeysUnavailable, 503 in enforce mode) pass too, counted
	// the same way: a control on trial must not make the API less
	// available than it was without it. A DPoP-Nonce is sent as on an
	// accepted request. Default: false.
	Shadow bool

	// DPoP says whether DPoP-bound tokens are accepted or required.
	// Default: DPoPOff.
	DPoP DPoPMode
	// DPoPURL is the public base URL of this API as clients call it
	// ("https://api.example.com", or with a path prefix); a proof's htu
	// must equal it joined with the request path, ignoring query and
	// fragment, after normalisation. Required when DPoP is not DPoPOff: the
	// Host header is the client's to forge.
	DPoPURL string
	// DPoPAlgorithms are the proof algorithms accepted, asymmetric only.
	// Default: ES256, RS256, PS256, EdDSA.
	DPoPAlgorithms []jwa.SignatureAlgorithm
	// DPoPProofWindow is how old a proof may be: its iat may lie up to
	// DPoPProofWindow (plus ClockSkew) in the past. Default: 60s.
	DPoPProofWindow time.Duration
	// DPoPFutureSkew is how far a proof's iat may lie ahead of the server's
	// clock: the client's clock running fast. It is separate from, and
	// much smaller than, the window for old proofs, because a proof dated
	// in the future stays usable (and is held by the replay store) for
	// that much longer. A phone whose clock is set by the network or NTP
	// is within a second or two. Default: 10s.
	DPoPFutureSkew time.Duration
	// DPoPNonceKey, when set (at least 32 bytes), makes the server require
	// nonces in proofs (RFC 9449 §8). Nonces are stateless, an HMAC over
	// time, so every instance sharing the key accepts them. Default: none.
	DPoPNonceKey []byte
	// DPoPNonceLifetime is how long a nonce is accepted. Default: 5 minutes.
	DPoPNonceLifetime time.Duration
	// ReplayStore records used proof jti values. Default: an in-memory
	// store of ReplayCacheSize entries (see [NewMemoryReplayStore]); use a
	// shared store (redisstore) when several instances serve one API.
	ReplayStore ReplayStore
	// ReplayCacheSize sizes the default ReplayStore. Default: 100000.
	ReplayCacheSize int

	// TokenCacheSize is the number of verified tokens remembered (by
	// SHA-256 of the token) so that a token seen before is not verified
	// again until it expires; it also sizes the cache of introspection
	// answers. Negative disables the caches. Default: 10000.
	TokenCacheSize int

	// HTTPClient fetches remote JWKS and discovery documents. Default: a
	// client with no redirects to other hosts or to cleartext http, and
	// FetchTimeout.
	HTTPClient *http.Client
	// FetchTimeout bounds one JWKS fetch, discovery included. Default: 5s.
	FetchTimeout time.Duration
	// MaxJWKSSize caps a JWKS response body, and a discovery document.
	// Default: 512 KiB.
	MaxJWKSSize int64
	// MinKeyRefresh is the floor of the refresh interval a JWKS's
	// Cache-Control may ask for, the least time between the start of a
	// successful fetch and the next fetch (whatever asks for it: an
	// unknown kid, stale keys), and the ceiling of the back-off between
	// failed fetches. Default: 1 minute.
	MinKeyRefresh time.Duration
	// MaxKeyRefresh is the ceiling of the refresh interval, and the
	// interval when the JWKS response sets no max-age. Default: 1 hour.
	MaxKeyRefresh time.Duration
	// MaxKeyStaleness is how long the last good keys keep serving while the
	// JWKS cannot be fetched; past it, requests get 503, tokens verified
	// earlier (the verified-token cache) included. It must not be below
	// MinKeyRefresh. Default: 24 hours.
	MaxKeyStaleness time.Duration
	// MaxKeyWait is the longest a request waits for a JWKS fetch it needs
	// (keys never loaded, keys past MaxKeyStaleness, a kid the key set
	// lacks). Past it the request gets 503 with Retry-After while the
	// fetch carries on in the background. Negative: never wait. Default:
	// 300ms.
	MaxKeyWait time.Duration
	// Rand is the source of the jitter added to the back-off between
	// failed JWKS fetches. Default: crypto/rand.Reader.
	Rand io.Reader

	// Revocations, when set, is asked about every token after it verifies
	// and on every verified-token cache hit, so the cache never serves a
	// revoked token: a revoked one is refused with [ErrRevoked] (401
	// invalid_token, logged with reason "revoked"). A *revoke.List
	// implements it. Default: none.
	Revocations interface {
		Revoked(iss, sub, sid, jti, clientID string, issuedAt time.Time) bool
	}

	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives events (auth_failed with a reason, jwks_refresh,
	// jwks_error, jwks_key_skipped, introspection_error, and at debug
	// level introspection_cache_error). Default: slog.Default().
	Logger *slog.Logger
	// ErrorHandler writes rejections. Default: [Verifier.WriteError].
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// Issuer is one trusted token issuer.
//
// # Key fetching
//
// A remote JWKS is fetched in the background, first when [New] returns,
// then at the interval its Cache-Control asks for, clamped to
// [Config.MinKeyRefresh, Config.MaxKeyRefresh]. Fetches of one issuer never
// overlap, and keep to one schedule in every state (never loaded, fresh,
// failing, past staleness) whatever the traffic: the next fetch starts no
// sooner than MinKeyRefresh after a successful one, and after n failures
// in a row no sooner than 1s·2^(n-1), at most MinKeyRefresh, plus up to
// half again of random jitter (Config.Rand). A request can make a fetch
// that the schedule allows start now, never an earlier one; a 503's
// Retry-After says when the next one may start (1s while one is under
// way), and the background loop makes it then.
//
// A token whose kid the loaded set lacks, or whose signature the set's
// key for its kid (or, without kid, its single key) rejects, may be
// signed by a key published since (a new kid, or a key replaced under the
// same kid): if the set was fetched before the token was issued (the
// earlier of the token's arrival and its iat plus Config.ClockSkew), the
// answer is 503 with Retry-After and a refresh is due as soon as the
// schedule allows; only a set fetched after that proves the kid unknown
// or the signature bad (401). So a rotation never gets valid tokens refused,
// and a flood of random kids costs at most one fetch per MinKeyRefresh;
// tokens issued before the last fetch, expired or without iat are refused
// at once, with no fetch. No request waits for a fetch longer than
// Config.MaxKeyWait (300ms); the fetch carries on in the background.
//
// The verified-token cache obeys the same rules as new tokens: an entry
// serves only while the key set that verified it is current and, for a
// remote set, within MaxKeyStaleness. A malformed key in a set is skipped
// and logged (event=jwks_key_skipped). [Verifier.Close] stops the
// background work.
//
// # Discovery
//
// An issuer with neither JWKSURL nor Keys (its Issuer an https URL, http
// only on loopback) finds its jwks_uri as [Discover] does: OpenID Connect
// discovery first, RFC 8414 metadata if that answers 404 or 410; the
// document's issuer must equal Issuer exactly. Discovery is part of a key
// fetch, on the schedule above and under the same FetchTimeout,
// MaxJWKSSize and redirect rules: a fetch discovers when no jwks_uri is
// known, when the last discovery is MaxKeyRefresh old, and once more when
// the jwks_uri answers 404 or 410. A failed discovery is a failed fetch
// (back-off, 503 with Retry-After, [Verifier.Ready] naming the issuer and
// the cause, event=jwks_error with reason=discovery), and the keys loaded
// before it keep serving within MaxKeyStaleness.
type Issuer struct {
	// Issuer is the exact iss value. Required.
	Issuer string
	// Audience lists the accepted aud values; the token's aud must contain
	// one. Required.
	Audience []string
	// JWKSURL is the issuer's remote JWKS (https, or http on loopback).
	// Default: discovered from Issuer (see Discovery above), except for
	// an issuer with an Introspection: without JWKSURL or Keys its tokens
	// are checked by introspection only.
	JWKSURL string
	// Keys is a static key set, instead of JWKSURL. Default: none.
	Keys jwk.Set
	// Algorithms are the accepted token algorithms, asymmetric only.
	// Default: RS256, PS256, ES256, EdDSA.
	Algorithms []jwa.SignatureAlgorithm
	// Introspection, when set, checks this issuer's opaque tokens (and,
	// with Introspection.JWTs, its JWTs) at its RFC 7662 introspection
	// endpoint; JWKSURL and Keys are then optional. At most one issuer
	// may have one: see [Introspection]. Default: none.
	Introspection *Introspection
	// InsecureAllowJWTType also accepts typ "JWT" (and a missing typ)
	// instead of only "at+jwt" (RFC 9068), for issuers that do not type
	// their access tokens. It weakens the defence against ID tokens used
	// as access tokens; tokens carrying nonce, at_hash or c_hash are still
	// refused as ID tokens. Default: false.
	InsecureAllowJWTType bool
}

var defaultAlgorithms = []jwa.SignatureAlgorithm{jwa.RS256, jwa.PS256, jwa.ES256, jwa.EdDSA}

// supportedAlgorithms are the asymmetric algorithms apiguard verifies.
var supportedAlgorithms = []jwa.SignatureAlgorithm{
	jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512,
	jwa.ES256, jwa.ES384, jwa.ES512, jwa.EdDSA,
}

func (cfg *Config) setDefaults() error {
	if len(cfg.Issuers) == 0 {
		return errors.New("auth: Config.Issuers is required")
	}
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"ClockSkew", cfg.ClockSkew < 0}, {"MaxTokenLifetime", cfg.MaxTokenLifetime < 0},
		{"MaxTokenSize", cfg.MaxTokenSize < 0}, {"FetchTimeout", cfg.FetchTimeout < 0},
		{"MaxJWKSSize", cfg.MaxJWKSSize < 0}, {"MinKeyRefresh", cfg.MinKeyRefresh < 0},
		{"MaxKeyRefresh", cfg.MaxKeyRefresh < 0}, {"MaxKeyStaleness", cfg.MaxKeyStaleness < 0},
		{"DPoPProofWindow", cfg.DPoPProofWindow < 0}, {"DPoPFutureSkew", cfg.DPoPFutureSkew < 0},
		{"DPoPNonceLifetime", cfg.DPoPNonceLifetime < 0}, {"ReplayCacheSize", cfg.ReplayCacheSize < 0},
	} {
		if f.neg {
			return fmt.Errorf("auth: Config.%s must not be negative", f.name)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.ClockSkew, 30*time.Second)
	def(&cfg.MaxTokenLifetime, time.Hour)
	def(&cfg.FetchTimeout, 5*time.Second)
	def(&cfg.MinKeyRefresh, time.Minute)
	def(&cfg.MaxKeyRefresh, time.Hour)
	def(&cfg.MaxKeyStaleness, 24*time.Hour)
	def(&cfg.DPoPProofWindow, 60*time.Second)
	def(&cfg.DPoPFutureSkew, 10*time.Second)
	def(&cfg.MaxKeyWait, 300*time.Millisecond)
	def(&cfg.DPoPNonceLifetime, 5*time.Minute)
	if cfg.MaxKeyRefresh < cfg.MinKeyRefresh {
		return errors.New("auth: Config.MaxKeyRefresh is below Config.MinKeyRefresh")
	}
	if cfg.MaxKeyStaleness < cfg.MinKeyRefresh {
		// The keys would go stale before a refresh may replace them: 503s
		// in normal operation.
		return errors.New("auth: Config.MaxKeyStaleness is below Config.MinKeyRefresh")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.MaxTokenSize == 0 {
		cfg.MaxTokenSize = 8 << 10
	}
	if cfg.MaxJWKSSize == 0 {
		cfg.MaxJWKSSize = 512 << 10
	}
	if cfg.ReplayCacheSize == 0 {
		cfg.ReplayCacheSize = 100_000
	}
	if cfg.TokenCacheSize == 0 {
		cfg.TokenCacheSize = 10_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultHTTPClient(cfg.FetchTimeout)
	}
	if err := cfg.checkResource(); err != nil {
		return err
	}
	switch cfg.DPoP {
	case DPoPOff:
	case DPoPAllowed, DPoPRequired:
		if cfg.DPoPURL == "" {
			return errors.New("auth: Config.DPoPURL is required when DPoP is on")
		}
		u, err := url.Parse(cfg.DPoPURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("auth: Config.DPoPURL %q must be an absolute http(s) URL without query or fragment", cfg.DPoPURL)
		}
		if len(cfg.DPoPAlgorithms) == 0 {
			cfg.DPoPAlgorithms = slices.Clone(defaultAlgorithms)
		}
		if err := checkAlgorithms("Config.DPoPAlgorithms", cfg.DPoPAlgorithms); err != nil {
			return err
		}
		if cfg.DPoPNonceKey != nil && len(cfg.DPoPNonceKey) < 32 {
			return errors.New("auth: Config.DPoPNonceKey must be at least 32 bytes")
		}
	default:
		return fmt.Errorf("auth: Config.DPoP has unknown mode %d", cfg.DPoP)
	}
	seen := map[string]bool{}
	for i := range cfg.Issuers {
		is := &cfg.Issuers[i]
		if is.Issuer == "" {
			return fmt.Errorf("auth: Config.Issuers[%d].Issuer is required", i)
		}
		if seen[is.Issuer] {
			return fmt.Errorf("auth: issuer %q configured twice", is.Issuer)
		}
		seen[is.Issuer] = true
		if len(is.Audience) == 0 || slices.Contains(is.Audience, "") {
			return fmt.Errorf("auth: Config.Issuers[%d].Audience is required and must not hold an empty value", i)
		}
		if is.JWKSURL != "" && is.Keys != nil {
			return fmt.Errorf("auth: Config.Issuers[%d] has both JWKSURL and Keys: set one, or neither to discover the JWKS URL", i)
		}
		if is.JWKSURL == "" && is.Keys == nil && is.Introspection == nil {
			if err := checkIssuerURL(is.Issuer); err != nil {
				return fmt.Errorf("auth: Config.Issuers[%d]: %w", i, err)
			}
		}
		if is.JWKSURL != "" {
			u, err := url.Parse(is.JWKSURL)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
				return fmt.Errorf("auth: Config.Issuers[%d].JWKSURL must be an https URL (http only on loopback)", i)
			}
		}
		if len(is.Algorithms) == 0 {
			is.Algorithms = slices.Clone(defaultAlgorithms)
		}
		if err := checkAlgorithms(fmt.Sprintf("Config.Issuers[%d].Algorithms", i), is.Algorithms); err != nil {
			return err
		}
	}
	return cfg.checkIntrospection()
}

func checkAlgorithms(field string, algs []jwa.SignatureAlgorithm) error {
	for _, a := range algs {
		if !slices.Contains(supportedAlgorithms, a) {
			return fmt.Errorf("auth: %s: algorithm %q is not allowed (asymmetric algorithms only; never none or HMAC)", field, a)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}
