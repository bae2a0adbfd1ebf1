package playintegrity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/events"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Play Integrity errors.
var (
	// ErrToken: the token does not decrypt or verify with the configured
	// keys, or its algorithms are not A256KW/A256GCM and ES256.
	ErrToken = errors.New("attest: integrity token not valid")
	// ErrPolicy: the verdict fails the policy (package, nonce or request
	// hash, freshness, app recognition, certificate, version, device,
	// licensing, testing response).
	ErrPolicy = errors.New("attest: integrity verdict refused")
	// ErrVendor: Google's API could not be reached or answered an error
	// (an [*UnavailableError] when no call was made).
	ErrVendor = provider.ErrVendor
	// ErrStore: the Nonces store did not answer.
	ErrStore = provider.ErrStore
)

// UnavailableError reports that Google's API cannot be asked now (it
// failed and is backed off, or too many calls are under way), and in
// RetryAfter how long until the verifier asks it again. It wraps
// [ErrVendor].
type UnavailableError = provider.UnavailableError

// Header carries a Play Integrity standard token whose requestHash is
// [RequestHash] of the request.
const Header = "X-Play-Integrity"

// RequestHash is the requestHash an Android app passes to the Play
// Integrity API for a request: lower-case hex SHA-256 of the request's
// client data (appattest.ClientData) with an empty challenge, so that it
// binds the method, the path, the query as sent and the body.
func RequestHash(method, path, query string, body []byte) string {
	return provider.RequestHash(method, path, query, body)
}

// DeviceLevel orders Play Integrity device verdicts: STRONG > DEVICE >
// BASIC (and VIRTUAL, an emulator Google vouches for) > none.
type DeviceLevel int

// Device levels.
const (
	DeviceNone DeviceLevel = iota
	DeviceBasic
	DeviceVirtual
	DeviceIntegrity
	DeviceStrong
)

func deviceLevel(verdicts []string) DeviceLevel {
	level := DeviceNone
	for _, v := range verdicts {
		l := DeviceNone
		switch v {
		case "MEETS_STRONG_INTEGRITY":
			l = DeviceStrong
		case "MEETS_DEVICE_INTEGRITY":
			l = DeviceIntegrity
		case "MEETS_VIRTUAL_INTEGRITY":
			l = DeviceVirtual
		case "MEETS_BASIC_INTEGRITY":
			l = DeviceBasic
		}
		level = max(level, l)
	}
	return level
}

// Policy is the checklist a Play Integrity verdict must pass.
type Policy struct {
	// PackageName is the app's package. Required.
	PackageName string
	// CertificateDigests are the allowed app signing certificate SHA-256
	// digests (base64url, as Play reports them). Required.
	CertificateDigests []string
	// MinVersionCode refuses older app versions. Default: 0.
	MinVersionCode int64
	// MinDevice is the lowest device level accepted. Default:
	// DeviceIntegrity.
	MinDevice DeviceLevel
	// RequireLicensed refuses apps not licensed through Play. Default:
	// false.
	RequireLicensed bool
	// MaxAge is how old timestampMillis may be. Default: 2 minutes.
	MaxAge time.Duration
	// InsecureAllowTestingResponses accepts license-tester responses,
	// which Play makes up; never in production. Default: false.
	InsecureAllowTestingResponses bool
	// InsecureAllowUnrecognizedApp accepts apps that are not
	// PLAY_RECOGNIZED (sideloaded or modified builds). Default: false.
	InsecureAllowUnrecognizedApp bool
	// InsecureAllowTokenReuse accepts a standard token more than once
	// while its verdict is fresh. By default a standard token is single
	// use, like a classic token's nonce: once it passes, a digest of its
	// verdict (requestHash and timestampMillis, so that no re-encoding of
	// the token counts as another) is recorded in
	// Config.Nonces until the verdict is older than MaxAge,
	// so that a captured request cannot be replayed with its token (a
	// requestHash is the same for identical requests).
	// Default: false.
	InsecureAllowTokenReuse bool
}

// Config configures a [Verifier]. A zero field takes the default in its
// comment; a negative duration or count is an error naming the field.
type Config struct {
	// Policy is the checklist. Required: PackageName and
	// CertificateDigests.
	Policy Policy
	// DecryptionKeys are the AES-256 keys for classic tokens (from the
	// Play Console, base64-decoded), newest first: two during rotation.
	// Required for classic tokens.
	DecryptionKeys [][]byte
	// VerificationKeys are the EC P-256 keys that sign classic tokens,
	// newest first. Required for classic tokens.
	VerificationKeys []*ecdsa.PublicKey
	// Nonces records classic-token nonces and standard-token verdicts as
	// used. Default: in memory, 100000 entries.
	Nonces NonceStore
	// APIBaseURL is Google's Play Integrity API for standard tokens.
	// Default: https://playintegrity.googleapis.com.
	APIBaseURL string
	// HTTPClient calls the API; it must add Google credentials (an
	// oauth2 client for a service account). Default: none, standard tokens
	// are refused.
	HTTPClient *http.Client
	// InsecureAllowLegacyRequestHash also accepts, in the risk
	// assessment, standard tokens whose requestHash is that of the first
	// HTTP profile (method, path and body digest), which does not cover
	// the query: a proxy can rewrite the query of such a request
	// undetected. Turn it on only while app versions built before
	// [RequestHash] covered the query are phased out; each request it
	// admits is logged (event attestation_legacy_binding). Default: false.
	InsecureAllowLegacyRequestHash bool
	// APITimeout bounds an API call, and so the wait of a request on it.
	// Default: 2s.
	APITimeout time.Duration
	// MaxConcurrentCalls caps the API calls under way: a request beyond
	// it is answered at once as a vendor outage ([UnavailableError])
	// rather than queued, so that a flood of tokens cannot pile up calls
	// to Google. Concurrent requests with one token share one call. After
	// a failed call (no answer, a 5xx or a 429), no call is made for a
	// back-off of 2s doubling up to a minute (longer if the API's
	// Retry-After says so, up to 5 minutes), with ±20 % jitter, then one
	// probe at a time until a call succeeds; meanwhile requests are
	// answered as a vendor outage whose RetryAfter is the back-off left.
	// Default: 64.
	MaxConcurrentCalls int
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives events (attestation_failed). Default: slog.Default().
	Logger *slog.Logger
}

// NonceStore records single-use nonces (the method set of
// auth.ReplayStore and redisstore.ReplayStore).
type NonceStore interface {
	Use(ctx context.Context, id string, exp time.Time) (bool, error)
}

// Verifier verifies Google Play Integrity tokens. It is safe for
// concurrent use by multiple goroutines. Create one with [New].
type Verifier struct {
	cfg  Config
	gate apiGate
}

// New validates cfg, fills in its defaults and returns a verifier.
func New(cfg Config) (*Verifier, error) {
	p := &cfg.Policy
	if p.PackageName == "" || len(p.CertificateDigests) == 0 {
		return nil, errors.New("attest: playintegrity.Config.Policy.PackageName and CertificateDigests are required")
	}
	if err := provider.Negative(
		provider.Dur("playintegrity.Config.Policy.MaxAge", p.MaxAge),
		provider.Dur("playintegrity.Config.APITimeout", cfg.APITimeout),
		provider.Size("playintegrity.Config.MaxConcurrentCalls", int64(cfg.MaxConcurrentCalls)),
		provider.Size("playintegrity.Config.Policy.MinVersionCode", p.MinVersionCode),
	); err != nil {
		return nil, err
	}
	if p.MinDevice < DeviceNone || p.MinDevice > DeviceStrong {
		return nil, fmt.Errorf("attest: playintegrity.Config.Policy.MinDevice %d is not a DeviceLevel", p.MinDevice)
	}
	if p.MinDevice == DeviceNone {
		p.MinDevice = DeviceIntegrity
	}
	if p.MaxAge == 0 {
		p.MaxAge = 2 * time.Minute
	}
	for _, k := range cfg.DecryptionKeys {
		if len(k) != 32 {
			return nil, errors.New("attest: playintegrity.Config.DecryptionKeys must be 32-byte AES-256 keys")
		}
	}
	if (len(cfg.DecryptionKeys) == 0) != (len(cfg.VerificationKeys) == 0) {
		return nil, errors.New("attest: playintegrity.Config needs both DecryptionKeys and VerificationKeys for classic tokens")
	}
	if cfg.APIBaseURL == "" {
		cfg.APIBaseURL = "https://playintegrity.googleapis.com"
	}
	if cfg.APITimeout == 0 {
		cfg.APITimeout = 2 * time.Second
	}
	if cfg.MaxConcurrentCalls == 0 {
		cfg.MaxConcurrentCalls = 64
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Nonces == nil {
		cfg.Nonces = newMemoryNonces(100_000, cfg.Now)
	}
	events.WarnUnobserved(cfg.Logger, "attest/playintegrity")
	return &Verifier{cfg: cfg, gate: apiGate{
		space:    provider.Spacing{Base: 2 * time.Second, Limit: time.Minute},
		inflight: map[[32]byte]*apiCall{},
	}}, nil
}

// Verdict is a verdict that passed the policy, with the signals
// the policy does not decide on.
type Verdict struct {
	PackageName string
	VersionCode int64
	Device      DeviceLevel
	Licensed    bool
	Timestamp   time.Time
	// PlayProtect is environmentDetails.playProtectVerdict, a risk signal.
	PlayProtect string
	// RecentDeviceActivity is deviceIntegrity.recentDeviceActivity's
	// deviceActivityLevel (LEVEL_1..LEVEL_4), a risk signal.
	RecentDeviceActivity string
	// SDKVersion is deviceIntegrity.deviceAttributes.sdkVersion, the
	// Android API level (0 when Play does not report it), a risk signal.
	SDKVersion int
}

// flexInt is a JSON number or a string of one (Play sends both).
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %w", err)
	}
	*f = flexInt(n)
	return nil
}

type integrityPayload struct {
	RequestDetails struct {
		RequestPackageName string  `json:"requestPackageName"`
		Nonce              string  `json:"nonce"`
		RequestHash        string  `json:"requestHash"`
		TimestampMillis    flexInt `json:"timestampMillis"`
	} `json:"requestDetails"`
	AppIntegrity struct {
		AppRecognitionVerdict   string   `json:"appRecognitionVerdict"`
		PackageName             string   `json:"packageName"`
		CertificateSha256Digest []string `json:"certificateSha256Digest"`
		VersionCode             flexInt  `json:"versionCode"`
	} `json:"appIntegrity"`
	DeviceIntegrity struct {
		DeviceRecognitionVerdict []string `json:"deviceRecognitionVerdict"`
		RecentDeviceActivity     struct {
			DeviceActivityLevel string `json:"deviceActivityLevel"`
		} `json:"recentDeviceActivity"`
		DeviceAttributes struct {
			SDKVersion flexInt `json:"sdkVersion"`
		} `json:"deviceAttributes"`
	} `json:"deviceIntegrity"`
	AccountDetails struct {
		AppLicensingVerdict string `json:"appLicensingVerdict"`
	} `json:"accountDetails"`
	EnvironmentDetails struct {
		PlayProtectVerdict string `json:"playProtectVerdict"`
	} `json:"environmentDetails"`
	TestingDetails *struct {
		IsTestingResponse bool `json:"isTestingResponse"`
	} `json:"testingDetails"`
}

// maxIntegrityToken caps a token.
const maxIntegrityToken = 16 << 10

// VerifyClassic decrypts and verifies a classic token locally (JWE
// A256KW/A256GCM wrapping a JWS ES256, algorithms pinned), checks the
// policy, and uses its nonce once; nonce is the value the server issued
// for this request (the app passes it to the API base64url-encoded).
func (p *Verifier) VerifyClassic(ctx context.Context, token, nonce string) (*Verdict, error) {
	v, err := p.verifyClassic(ctx, token, nonce)
	if err != nil {
		p.fail(ctx, err)
	}
	return v, err
}

func (p *Verifier) verifyClassic(ctx context.Context, token, nonce string) (v *Verdict, err error) {
	// jwx's JWE code has panicked on crafted input (an empty encrypted
	// key, found by fuzzing): a token is untrusted input, so a panic in
	// the library is a refusal, never a crash of the request.
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: malformed", ErrToken)
		}
	}()
	if len(p.cfg.DecryptionKeys) == 0 {
		return nil, fmt.Errorf("%w: no keys for classic tokens", ErrToken)
	}
	if len(token) > maxIntegrityToken || strings.Count(token, ".") != 4 {
		return nil, fmt.Errorf("%w: not a compact JWE", ErrToken)
	}
	msg, err := jwe.Parse([]byte(token))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrToken, err)
	}
	h := msg.ProtectedHeaders()
	if h.Algorithm() != jwa.A256KW || h.ContentEncryption() != jwa.A256GCM {
		return nil, fmt.Errorf("%w: algorithms %s/%s", ErrToken, h.Algorithm(), h.ContentEncryption())
	}
	// A256KW wraps the 32-byte A256GCM key into 40 bytes (RFC 3394).
	if rs := msg.Recipients(); len(rs) != 1 || len(rs[0].EncryptedKey()) != 40 {
		return nil, fmt.Errorf("%w: encrypted key", ErrToken)
	}
	var inner []byte
	for _, k := range p.cfg.DecryptionKeys {
		if inner, err = jwe.Decrypt([]byte(token), jwe.WithKey(jwa.A256KW, k)); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: decrypt", ErrToken)
	}
	var payload []byte
	for _, k := range p.cfg.VerificationKeys {
		if payload, err = jws.Verify(inner, jws.WithKey(jwa.ES256, k)); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: signature", ErrToken)
	}
	var pl integrityPayload
	if err := json.Unmarshal(payload, &pl); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrToken, err)
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(pl.RequestDetails.Nonce), []byte(nonce)) != 1 {
		return nil, fmt.Errorf("%w: nonce", ErrPolicy)
	}
	v, err = p.check(&pl)
	if err != nil {
		return nil, err
	}
	if err := p.useOnce(ctx, "classic", nonce, v); err != nil {
		return nil, err
	}
	return v, nil
}

// useOnce records what makes a verdict single use (kind "classic": the
// nonce; "standard": the verdict's requestHash and timestamp) until the
// verdict is older than MaxAge. The recorded id is a digest under the
// package name, so that two apps on one store never share ids and the
// store never holds a token.
func (p *Verifier) useOnce(ctx context.Context, kind, value string, v *Verdict) error {
	id := sha256.Sum256([]byte("play-integrity-" + kind + "\x00" + p.cfg.Policy.PackageName + "\x00" + value))
	fresh, err := p.cfg.Nonces.Use(ctx, base64.RawURLEncoding.EncodeToString(id[:]), v.Timestamp.Add(p.cfg.Policy.MaxAge))
	switch {
	case err != nil:
		return fmt.Errorf("%w: nonce store: %v", ErrStore, err)
	case !fresh && kind == "classic":
		return fmt.Errorf("%w: nonce used before", ErrPolicy)
	case !fresh:
		return fmt.Errorf("%w: token used before", ErrPolicy)
	}
	return nil
}

// VerifyStandard decodes a standard token through Google's
// decodeIntegrityToken API, checks the policy, and uses the token once
// (unless Policy.InsecureAllowTokenReuse); requestHash is the
// hash the app passed for this request (the server recomputes it from the
// request, [RequestHash]).
func (p *Verifier) VerifyStandard(ctx context.Context, token, requestHash string) (*Verdict, error) {
	v, _, err := p.verifyStandard(ctx, token, []string{requestHash})
	if err != nil {
		p.fail(ctx, err)
	}
	return v, err
}

// Ready reports whether tokens can be verified now, without a call to
// Google (one needs a token): with an HTTPClient, an [*UnavailableError]
// (matching [ErrVendor]) while calls to the API are backed off after a
// failure, carrying the last failure; then, when Config.Nonces has a
// Ready(ctx) error method (redisstore's), its answer, wrapped in
// [ErrStore]. It can be called concurrently with request handling.
func (p *Verifier) Ready(ctx context.Context) error {
	if p.cfg.HTTPClient != nil {
		now := p.cfg.Now()
		g := &p.gate
		g.mu.Lock()
		backedOff := g.space.Failures > 0 && !g.space.Allowed(now)
		retry, last := g.space.RetryAfter(now), g.lastErr
		g.mu.Unlock()
		if backedOff {
			return provider.Unavailable(retry, last)
		}
	}
	return provider.StoreReady(ctx, "nonce store", p.cfg.Nonces)
}

// Provider is how an attest.Verifier consults p: set p itself as
// attest.Config.PlayIntegrity rather than calling this. Under it, a
// request's standard token ([Header]) carries [RequestHash] of the
// request; Google's API is asked first, under APITimeout, and the token
// is then used once within the risk assessment's store deadline.
func (p *Verifier) Provider() provider.Provider {
	return provider.Provider{Name: "play_integrity", Identities: []string{"android:" + p.cfg.Policy.PackageName},
		Check: p.checkRequest}
}

// checkRequest checks the standard token of a request: decoded by the
// API, checked against the request hash of r and the policy, and used
// once under r's store deadline. Failures are logged.
func (p *Verifier) checkRequest(ctx context.Context, r *provider.Request) (*provider.Verdict, error) {
	pl, err := p.decodeStandard(ctx, r.Token)
	if err != nil {
		p.fail(ctx, err)
		return nil, err
	}
	sctx, cancel := r.Store.Context(ctx)
	defer cancel()
	v, i, err := p.finishStandard(sctx, pl, r.RequestHashes(p.cfg.InsecureAllowLegacyRequestHash))
	if err != nil {
		p.fail(ctx, err)
		return nil, err
	}
	if i > 0 {
		events.Log(ctx, p.cfg.Logger, slog.LevelInfo, "attest: integrity token over a legacy request hash admitted",
			slog.String("event", "attestation_legacy_binding"), slog.String("reason", "query_not_covered"),
			slog.String("provider", "play_integrity"))
	}
	return &provider.Verdict{PlayProtect: v.PlayProtect, DeviceActivity: v.RecentDeviceActivity, SDKVersion: v.SDKVersion}, nil
}

// verifyStandard decodes token and checks it against the first of
// requestHashes that its requestHash equals, whose index it returns.
func (p *Verifier) verifyStandard(ctx context.Context, token string, requestHashes []string) (*Verdict, int, error) {
	pl, err := p.decodeStandard(ctx, token)
	if err != nil {
		return nil, 0, err
	}
	return p.finishStandard(ctx, pl, requestHashes)
}

// finishStandard checks a decoded payload against requestHashes and the
// policy, and uses its verdict once.
func (p *Verifier) finishStandard(ctx context.Context, pl *integrityPayload, requestHashes []string) (*Verdict, int, error) {
	i := slices.IndexFunc(requestHashes, func(h string) bool {
		return h != "" && subtle.ConstantTimeCompare([]byte(pl.RequestDetails.RequestHash), []byte(h)) == 1
	})
	if i < 0 {
		return nil, 0, fmt.Errorf("%w: request hash", ErrPolicy)
	}
	v, err := p.check(pl)
	if err != nil {
		return nil, 0, err
	}
	if !p.cfg.Policy.InsecureAllowTokenReuse {
		// The verdict, not the token's spelling, is what is used once: a
		// token re-encoded (padding, the unused bits of a base64url
		// character) is another string that the API decodes to the same
		// verdict. A verdict is one token's: its requestHash and the
		// millisecond the token was prepared.
		once := pl.RequestDetails.RequestHash + "\x00" + strconv.FormatInt(int64(pl.RequestDetails.TimestampMillis), 10)
		if err := p.useOnce(ctx, "standard", once, v); err != nil {
			return nil, 0, err
		}
	}
	return v, i, nil
}

// decodeStandard has Google's API decode a standard token, through the
// gate that keeps a flood of requests from becoming a flood of calls:
// concurrent calls for one token share one call; at most
// MaxConcurrentCalls are under way; after a vendor failure no call is
// made for a jittered, growing back-off, then one probe at a time until a
// call succeeds. A request turned away by the gate gets an
// [UnavailableError] at once, whose RetryAfter is when the gate opens.
func (p *Verifier) decodeStandard(ctx context.Context, token string) (*integrityPayload, error) {
	if p.cfg.HTTPClient == nil {
		return nil, fmt.Errorf("%w: no HTTPClient for the API", ErrVendor)
	}
	if token == "" || len(token) > maxIntegrityToken {
		return nil, fmt.Errorf("%w: token size", ErrToken)
	}
	g := &p.gate
	key := sha256.Sum256([]byte(token))
	start := p.cfg.Now()
	g.mu.Lock()
	if c := g.inflight[key]; c != nil {
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.pl, c.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrVendor, ctx.Err())
		}
	}
	if !g.space.Allowed(start) {
		retry, last := g.space.RetryAfter(start), g.lastErr
		g.mu.Unlock()
		return nil, provider.Unavailable(retry, last)
	}
	probe := g.space.Failures > 0
	if probe && g.probing {
		g.mu.Unlock()
		return nil, provider.Unavailable(time.Second, errors.New("a probe of the API is under way"))
	}
	if g.calls >= p.cfg.MaxConcurrentCalls {
		g.mu.Unlock()
		return nil, provider.Unavailable(time.Second, errors.New("too many API calls under way"))
	}
	g.calls++
	g.probing = g.probing || probe
	attempt := g.space.Begin()
	c := &apiCall{done: make(chan struct{})}
	g.inflight[key] = c
	g.mu.Unlock()

	// The call is shared: a requester that hangs up does not cancel it
	// for the others, and APITimeout bounds it.
	var hint time.Duration
	c.pl, hint, c.err = p.callAPI(context.WithoutCancel(ctx), token)
	now := p.cfg.Now()
	g.mu.Lock()
	delete(g.inflight, key)
	g.calls--
	if probe {
		g.probing = false
	}
	if errors.Is(c.err, ErrVendor) {
		g.lastErr = c.err
		g.space.Failed(attempt, now)
		if hint > 0 && now.Add(hint).After(g.space.Next) {
			g.space.Next = now.Add(min(hint, 5*time.Minute)) // the API's own Retry-After
		}
	} else {
		g.space.Succeeded(attempt, start)
	}
	g.mu.Unlock()
	close(c.done)
	return c.pl, c.err
}

// apiGate is the state of the calls to the API (see decodeStandard).
type apiGate struct {
	mu       sync.Mutex
	space    provider.Spacing
	calls    int  // under way
	probing  bool // a probe after failures is under way
	lastErr  error
	inflight map[[32]byte]*apiCall
}

// apiCall is one call to the API, shared by the requests of one token.
type apiCall struct {
	done chan struct{}
	pl   *integrityPayload
	err  error
}

// callAPI makes one decodeIntegrityToken call; hint is the answer's
// Retry-After, if any.
func (p *Verifier) callAPI(ctx context.Context, token string) (*integrityPayload, time.Duration, error) {
	body, _ := json.Marshal(map[string]string{"integrityToken": token})
	ctx, cancel := context.WithTimeout(ctx, p.cfg.APITimeout)
	defer cancel()
	u := strings.TrimSuffix(p.cfg.APIBaseURL, "/") + "/v1/" + url.PathEscape(p.cfg.Policy.PackageName) + ":decodeIntegrityToken"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrVendor, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrVendor, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrVendor, err)
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest:
		return nil, 0, fmt.Errorf("%w: the API refused the token", ErrToken)
	case resp.StatusCode != http.StatusOK:
		var hint time.Duration
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
			hint = time.Duration(n) * time.Second
		}
		return nil, hint, fmt.Errorf("%w: status %d", ErrVendor, resp.StatusCode)
	}
	var out struct {
		TokenPayloadExternal *integrityPayload `json:"tokenPayloadExternal"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.TokenPayloadExternal == nil {
		return nil, 0, fmt.Errorf("%w: unexpected API answer", ErrVendor)
	}
	return out.TokenPayloadExternal, 0, nil
}

// check applies the policy to a payload.
func (p *Verifier) check(pl *integrityPayload) (*Verdict, error) {
	pol := &p.cfg.Policy
	refuse := func(what string) (*Verdict, error) {
		return nil, fmt.Errorf("%w: %s", ErrPolicy, what)
	}
	if pl.RequestDetails.RequestPackageName != pol.PackageName {
		return refuse("request package")
	}
	ts := time.UnixMilli(int64(pl.RequestDetails.TimestampMillis))
	now := p.cfg.Now()
	if pl.RequestDetails.TimestampMillis <= 0 || now.Sub(ts) > pol.MaxAge || ts.Sub(now) > time.Minute {
		return refuse("timestamp")
	}
	if pl.TestingDetails != nil && pl.TestingDetails.IsTestingResponse && !pol.InsecureAllowTestingResponses {
		return refuse("testing response")
	}
	if pl.AppIntegrity.AppRecognitionVerdict != "PLAY_RECOGNIZED" && !pol.InsecureAllowUnrecognizedApp {
		return refuse("app not recognized")
	}
	if pl.AppIntegrity.PackageName != "" && pl.AppIntegrity.PackageName != pol.PackageName {
		return refuse("app package")
	}
	if pl.AppIntegrity.AppRecognitionVerdict != "UNEVALUATED" {
		ok := len(pl.AppIntegrity.CertificateSha256Digest) > 0
		for _, d := range pl.AppIntegrity.CertificateSha256Digest {
			ok = ok && slices.Contains(pol.CertificateDigests, d)
		}
		if !ok {
			return refuse("certificate")
		}
	}
	if int64(pl.AppIntegrity.VersionCode) < pol.MinVersionCode {
		return refuse("version")
	}
	level := deviceLevel(pl.DeviceIntegrity.DeviceRecognitionVerdict)
	if level < pol.MinDevice {
		return refuse("device")
	}
	licensed := pl.AccountDetails.AppLicensingVerdict == "LICENSED"
	if pol.RequireLicensed && !licensed {
		return refuse("licensing")
	}
	return &Verdict{
		PackageName: pol.PackageName, VersionCode: int64(pl.AppIntegrity.VersionCode), Device: level,
		Licensed: licensed, Timestamp: ts, PlayProtect: pl.EnvironmentDetails.PlayProtectVerdict,
		RecentDeviceActivity: pl.DeviceIntegrity.RecentDeviceActivity.DeviceActivityLevel,
		SDKVersion:           int(pl.DeviceIntegrity.DeviceAttributes.SDKVersion),
	}, nil
}

func (p *Verifier) fail(ctx context.Context, err error) {
	reason := "token"
	switch {
	case errors.Is(err, ErrPolicy):
		reason = "policy"
	case errors.Is(err, ErrVendor):
		reason = "vendor"
	case errors.Is(err, ErrStore):
		reason = "store"
	}
	events.Log(ctx, p.cfg.Logger, slog.LevelWarn, "attest: integrity token refused",
		slog.String("event", "attestation_failed"), slog.String("reason", reason), slog.String("provider", "play_integrity"))
}
