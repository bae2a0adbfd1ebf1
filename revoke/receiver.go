package revoke

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/problem"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Event types the Receiver turns into revocations.
const (
	EventSessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventCredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change" // #nosec G101 -- an event type URI, not a credential
	EventAccountDisabled  = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	EventAccountPurged    = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
)

// Refusals of a Security Event Token, matched with errors.Is. Each has the
// RFC 8935 §2.3 error code in its comment, which the push endpoint
// answers with status 400 (401 for ErrTransmitterAuth) and a fixed
// description; the cause goes to the log only.
var (
	// ErrSETMalformed: not a compact JWS with a JSON SET payload, a
	// forbidden header (jku, x5u, jwk, crit), typ not secevent+jwt, no
	// jti, iat or events, iat in the future or older than MaxSETAge, or
	// an unsupported subject. invalid_request.
	ErrSETMalformed = errors.New("revoke: malformed security event token")
	// ErrSETReplay: the SET's jti was accepted before. invalid_request.
	ErrSETReplay = errors.New("revoke: replayed security event token")
	// ErrSETKey: alg is none, HMAC or not allowed, no transmitter key
	// matches kid, or the signature does not verify. invalid_key.
	ErrSETKey = errors.New("revoke: security event token key or signature invalid")
	// ErrSETIssuer: iss is not the transmitter's. invalid_issuer.
	ErrSETIssuer = errors.New("revoke: security event token issuer not accepted")
	// ErrSETAudience: aud does not name this receiver. invalid_audience.
	ErrSETAudience = errors.New("revoke: security event token audience not accepted")
	// ErrSETSubject: an event is about a subject of an issuer the
	// transmitter may not speak for (ReceiverConfig.SubjectIssuers).
	// access_denied.
	ErrSETSubject = errors.New("revoke: security event subject not allowed")
	// ErrTransmitterAuth: the push request lacks the bearer token of
	// ReceiverConfig.BearerToken. authentication_failed, status 401.
	ErrTransmitterAuth = errors.New("revoke: transmitter not authenticated")
	// ErrSETUnavailable: the SET could not be handled now (transmitter
	// keys unavailable, revocation list full, store down, too many jti
	// values held); the transmitter should deliver it again. Status 503
	// with Retry-After; a poll neither acknowledges nor refuses it.
	ErrSETUnavailable = errors.New("revoke: security event token not handled now")
)

var setCodes = []struct {
	err               error
	code, description string
}{
	{ErrTransmitterAuth, "authentication_failed", "The transmitter could not be authenticated."},
	{ErrSETReplay, "invalid_request", "The SET was delivered before."},
	{ErrSETMalformed, "invalid_request", "The SET is malformed or unacceptable."},
	{ErrSETKey, "invalid_key", "The SET's key or signature is invalid."},
	{ErrSETIssuer, "invalid_issuer", "The SET issuer is not accepted."},
	{ErrSETAudience, "invalid_audience", "The SET audience is not accepted."},
	{ErrSETSubject, "access_denied", "The transmitter may not send events about this subject."},
}

// setCode returns the RFC 8935 error code and fixed description of err,
// or ok false for a temporary failure.
func setCode(err error) (code, description string, ok bool) {
	for _, c := range setCodes {
		if errors.Is(err, c.err) {
			return c.code, c.description, true
		}
	}
	return "", "", false
}

// ReceiverConfig configures a [Receiver]. A zero field takes the default
// in its comment.
type ReceiverConfig struct {
	// List receives the revocations. Required.
	List *List
	// Issuer is the transmitter's iss. Required.
	Issuer string
	// Audience is this receiver's name at the transmitter; a SET's aud
	// must contain it. Required.
	Audience string
	// JWKSURL is the transmitter's key set (https, or http on loopback);
	// exactly one of JWKSURL and Keys is required. It is fetched on the
	// first SET, again at most once per minute for an unknown kid, and
	// hourly.
	JWKSURL string
	// Keys is a static transmitter key set.
	Keys jwk.Set
	// Algorithms are the accepted SET algorithms, asymmetric only.
	// Default: RS256, PS256, ES256, EdDSA.
	Algorithms []jwa.SignatureAlgorithm
	// SubjectIssuers are the token issuers whose subjects, sessions and
	// clients this transmitter may revoke; the first is the issuer of
	// subjects given without one (opaque, email). Default: Issuer.
	SubjectIssuers []string
	// AcceptEmail maps email subject identifiers to the token's sub, for
	// issuers whose sub is the email address. Default: false (such events
	// are acknowledged, logged and counted as ignored).
	AcceptEmail bool
	// BearerToken, when set, is the token the transmitter must present
	// (Authorization: Bearer) to push. Default: none.
	BearerToken string
	// MaxSETAge refuses SETs issued longer ago; their jti values are kept
	// that long, so none is accepted twice. Default: 24 hours.
	MaxSETAge time.Duration
	// MaxJTIs caps the jti values kept; when all are younger than
	// MaxSETAge a new SET gets ErrSETUnavailable. Default: 100000.
	MaxJTIs int
	// MaxBodySize caps a pushed or polled body. Default: 64 KiB.
	MaxBodySize int64

	// PollURL, when set, is the transmitter's RFC 8936 poll endpoint,
	// polled from NewReceiver until Close. Default: none (push only).
	PollURL string
	// PollAuthorization is the Authorization header value of poll
	// requests. Default: none.
	PollAuthorization string
	// PollMaxEvents is the maxEvents of a poll. Default: 100.
	PollMaxEvents int
	// PollInterval is the least time between the starts of two polls when
	// the first brought nothing (long polls that the transmitter holds take
	// longer anyway). Default: 1s.
	PollInterval time.Duration
	// HTTPClient fetches keys and polls; its timeout must exceed the
	// transmitter's long-poll wait. Default: a client with a 60s timeout
	// and no redirects to other hosts.
	HTTPClient *http.Client

	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives the events set_received, set_rejected, set_ignored
	// and set_poll_error. Default: slog.Default().
	Logger *slog.Logger
}

// ReceiverStats are a Receiver's counters since NewReceiver.
type ReceiverStats struct {
	Accepted uint64 // SETs accepted
	Rejected uint64 // SETs refused (bad, replayed, or not handled now)
	Ignored  uint64 // events acknowledged without a revocation (unknown type or subject)
	Revoked  uint64 // revocations made
}

// Receiver receives OpenID Shared Signals events as Security Event
// Tokens (RFC 8417) and records the revocations they carry in a [List].
// It serves the push endpoint (RFC 8935) as an http.Handler and, with
// ReceiverConfig.PollURL, polls (RFC 8936). It is safe for concurrent
// use by multiple goroutines; stop its polling with [Receiver.Close].
type Receiver struct {
	cfg    ReceiverConfig
	bearer [sha256.Size]byte

	keyMu   sync.Mutex
	keys    jwk.Set
	fetched time.Time // of keys, for a remote set
	tried   time.Time // the last fetch attempt: at most one a minute
	lastErr error     // of that attempt

	jtiMu   sync.Mutex
	jtis    map[string]int64 // jti -> when it may be forgotten (unix ns)
	jtiNext int64            // no jti may be forgotten before

	accepted, rejected, ignored, revoked atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var defaultSETAlgorithms = []jwa.SignatureAlgorithm{jwa.RS256, jwa.PS256, jwa.ES256, jwa.EdDSA}

var asymmetric = []jwa.SignatureAlgorithm{
	jwa.RS256, jwa.RS384, jwa.RS512, jwa.PS256, jwa.PS384, jwa.PS512,
	jwa.ES256, jwa.ES384, jwa.ES512, jwa.EdDSA,
}

// NewReceiver validates cfg, fills in its defaults and returns a
// Receiver; with PollURL it starts polling.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	switch {
	case cfg.List == nil:
		return nil, errors.New("revoke: ReceiverConfig.List is required")
	case cfg.Issuer == "":
		return nil, errors.New("revoke: ReceiverConfig.Issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("revoke: ReceiverConfig.Audience is required")
	case (cfg.JWKSURL == "") == (cfg.Keys == nil):
		return nil, errors.New("revoke: ReceiverConfig needs exactly one of JWKSURL and Keys")
	case cfg.MaxSETAge < 0 || cfg.MaxJTIs < 0 || cfg.MaxBodySize < 0 || cfg.PollMaxEvents < 0 || cfg.PollInterval < 0:
		return nil, errors.New("revoke: ReceiverConfig sizes and durations must not be negative")
	}
	for _, u := range []struct{ name, v string }{{"JWKSURL", cfg.JWKSURL}, {"PollURL", cfg.PollURL}} {
		if u.v != "" && !secureURL(u.v) {
			return nil, fmt.Errorf("revoke: ReceiverConfig.%s must be an https URL (http only on loopback)", u.name)
		}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultSETAlgorithms
	}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(asymmetric, a) {
			return nil, fmt.Errorf("revoke: ReceiverConfig.Algorithms: %q is not allowed (asymmetric algorithms only; never none or HMAC)", a)
		}
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	if len(cfg.SubjectIssuers) == 0 {
		cfg.SubjectIssuers = []string{cfg.Issuer}
	}
	cfg.SubjectIssuers = slices.Clone(cfg.SubjectIssuers)
	if cfg.MaxSETAge == 0 {
		cfg.MaxSETAge = 24 * time.Hour
	}
	if cfg.MaxJTIs == 0 {
		cfg.MaxJTIs = 100_000
	}
	if cfg.MaxBodySize == 0 {
		cfg.MaxBodySize = 64 << 10
	}
	if cfg.PollMaxEvents == 0 {
		cfg.PollMaxEvents = 100
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Timeout: 60 * time.Second,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 || req.URL.Host != via[0].URL.Host {
					return errors.New("revoke: redirect to another host refused")
				}
				return nil
			},
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Receiver{cfg: cfg, keys: cfg.Keys, jtis: map[string]int64{}, ctx: ctx, cancel: cancel}
	if cfg.BearerToken != "" {
		r.bearer = sha256.Sum256([]byte(cfg.BearerToken))
	}
	if cfg.PollURL != "" {
		r.wg.Add(1)
		go r.pollLoop()
	}
	return r, nil
}

func secureURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	h := u.Hostname()
	return u.Scheme == "https" || (u.Scheme == "http" && (h == "localhost" || h == "127.0.0.1" || h == "::1"))
}

// Close stops polling and waits for it. It is idempotent and returns nil.
// The push handler keeps working.
func (r *Receiver) Close() error {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
	return nil
}

// Stats returns the Receiver's counters.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{Accepted: r.accepted.Load(), Rejected: r.rejected.Load(), Ignored: r.ignored.Load(), Revoked: r.revoked.Load()}
}

// ServeHTTP is the RFC 8935 push endpoint: a POST of one SET as
// application/secevent+jwt is answered 202 Accepted once its revocations
// are recorded, 400 with an RFC 8935 §2.3 JSON error ({"err":...,
// "description":...}) when the SET is refused, 401 when
// ReceiverConfig.BearerToken is set and not presented, 503 with
// Retry-After when it cannot be handled now (deliver it again), and 405
// or 415 for another method or media type (those three with an RFC 9457
// problem+json body).
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		problem.Write(w, probMethod)
		return
	}
	if r.cfg.BearerToken != "" {
		scheme, tok, _ := strings.Cut(req.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(tok))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], r.bearer[:]) != 1 {
			r.refuse(w, req, ErrTransmitterAuth)
			return
		}
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/secevent+jwt" {
		problem.Write(w, probMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, r.cfg.MaxBodySize+1))
	if err != nil || int64(len(body)) > r.cfg.MaxBodySize {
		r.refuse(w, req, fmt.Errorf("%w: body unreadable or over ReceiverConfig.MaxBodySize", ErrSETMalformed))
		return
	}
	if err := r.Receive(req.Context(), bytes.TrimSpace(body)); err != nil {
		r.refuse(w, req, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

var (
	probMethod      = problem.Problem{Type: problem.TypeBase + "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: "Security events are delivered with POST."}
	probMediaType   = problem.Problem{Type: problem.TypeBase + "unsupported-media-type", Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType, Detail: "The body must be application/secevent+jwt."}
	probUnavailable = problem.Problem{Type: problem.TypeBase + "event-not-handled", Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: "The event cannot be handled now; deliver it again."}
)

func (r *Receiver) refuse(w http.ResponseWriter, req *http.Request, err error) {
	code, desc, ok := setCode(err)
	if !ok {
		w.Header().Set("Retry-After", "5")
		problem.Write(w, probUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	status := http.StatusBadRequest
	if errors.Is(err, ErrTransmitterAuth) {
		// Receive never logged it: log the refusal here.
		r.rejected.Add(1)
		events.Log(req.Context(), r.cfg.Logger, slog.LevelWarn, "revoke: security event refused",
			slog.String("event", "set_rejected"), slog.String("reason", code))
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		status = http.StatusUnauthorized
	}
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"err": code, "description": desc})
	_, _ = w.Write(b)
}

// Receive verifies one SET (compact JWS) and records the revocations its
// events carry. It returns nil when the SET was accepted (events it does
// not act on included, counted as ignored), or an error matching one of
// the ErrSET sentinels; on an error nothing is recorded, except with
// ErrSETUnavailable from the list's store ([ErrStore]), when this
// instance holds the revocations and the jti stays unused so that a
// redelivery shares them. It logs set_received or set_rejected.
func (r *Receiver) Receive(ctx context.Context, set []byte) error {
	revs, jti, exp, err := r.verify(ctx, set)
	if err == nil {
		err = r.useJTI(jti, exp)
	}
	if err == nil {
		err = r.record(ctx, revs)
		if err != nil {
			r.forgetJTI(jti)
		}
	}
	if err != nil {
		r.rejected.Add(1)
		code, _, ok := setCode(err)
		if !ok {
			code = "unavailable"
		}
		events.Log(ctx, r.cfg.Logger, slog.LevelWarn, "revoke: security event refused",
			slog.String("event", "set_rejected"), slog.String("reason", code), slog.String("error", err.Error()))
		return err
	}
	r.accepted.Add(1)
	events.Log(ctx, r.cfg.Logger, slog.LevelInfo, "revoke: security event accepted",
		slog.String("event", "set_received"), slog.String("reason", "accepted"), slog.Int("revocations", len(revs)))
	return nil
}

func (r *Receiver) record(ctx context.Context, revs []Revocation) error {
	for _, rv := range revs {
		if err := r.cfg.List.Revoke(ctx, rv); err != nil {
			if errors.Is(err, ErrInvalid) {
				// An event time ahead of our clock, say: the SET is bad.
				return fmt.Errorf("%w: %w", ErrSETMalformed, err)
			}
			return fmt.Errorf("%w: %w", ErrSETUnavailable, err)
		}
		r.revoked.Add(1)
	}
	return nil
}

// useJTI records jti as used until exp, or refuses it.
func (r *Receiver) useJTI(jti string, exp int64) error {
	now := r.cfg.Now().UnixNano()
	r.jtiMu.Lock()
	defer r.jtiMu.Unlock()
	if until, ok := r.jtis[jti]; ok && until > now {
		return ErrSETReplay
	}
	if len(r.jtis) >= r.cfg.MaxJTIs && now >= r.jtiNext {
		next := int64(0)
		for k, until := range r.jtis {
			switch {
			case until <= now:
				delete(r.jtis, k)
			case next == 0 || until < next:
				next = until
			}
		}
		r.jtiNext = next
	}
	if len(r.jtis) >= r.cfg.MaxJTIs {
		// Forgetting an unexpired jti would let its SET be replayed.
		return fmt.Errorf("%w: %d jti values held (ReceiverConfig.MaxJTIs)", ErrSETUnavailable, r.cfg.MaxJTIs)
	}
	if len(r.jtis) == 0 || exp < r.jtiNext {
		r.jtiNext = exp
	}
	r.jtis[jti] = exp
	return nil
}

func (r *Receiver) forgetJTI(jti string) {
	r.jtiMu.Lock()
	delete(r.jtis, jti)
	r.jtiMu.Unlock()
}

// setPayload is the JSON shape of a SET (RFC 8417 §2.2).
type setPayload struct {
	Iss    string                     `json:"iss"`
	Aud    audience                   `json:"aud"`
	Iat    *json.Number               `json:"iat"`
	Exp    *json.Number               `json:"exp"`
	Jti    string                     `json:"jti"`
	SubID  json.RawMessage            `json:"sub_id"`
	Events map[string]json.RawMessage `json:"events"`
}

type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

func numericTime(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	// Seconds and fraction apart: f·1e9 overflows int64 past 2262.
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// verify checks the SET's signature and claims, and returns the
// revocations of its events, its jti and when the jti may be forgotten.
func (r *Receiver) verify(ctx context.Context, raw []byte) ([]Revocation, string, int64, error) {
	if int64(len(raw)) > r.cfg.MaxBodySize || bytes.Count(raw, []byte{'.'}) != 2 {
		return nil, "", 0, fmt.Errorf("%w: not a compact JWS", ErrSETMalformed)
	}
	msg, err := jws.Parse(raw, jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, "", 0, fmt.Errorf("%w: not a compact JWS", ErrSETMalformed)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.JWKSetURL() != "" || h.X509URL() != "" || h.JWK() != nil || len(h.Critical()) > 0 {
		return nil, "", 0, fmt.Errorf("%w: jku, x5u, jwk or crit header", ErrSETMalformed)
	}
	if _, ok := h.Get("crit"); ok {
		return nil, "", 0, fmt.Errorf("%w: crit header", ErrSETMalformed)
	}
	typ := strings.ToLower(h.Type())
	if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
		return nil, "", 0, fmt.Errorf("%w: typ is not secevent+jwt", ErrSETMalformed)
	}
	alg := h.Algorithm()
	if !slices.Contains(r.cfg.Algorithms, alg) {
		return nil, "", 0, fmt.Errorf("%w: alg %q not allowed", ErrSETKey, quote(alg.String()))
	}
	key, err := r.key(ctx, h.KeyID(), alg)
	if err != nil {
		return nil, "", 0, err
	}
	payload, err := jws.Verify(raw, jws.WithKey(alg, key))
	if err != nil {
		return nil, "", 0, fmt.Errorf("%w: signature", ErrSETKey)
	}
	var p setPayload
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, "", 0, fmt.Errorf("%w: payload: %v", ErrSETMalformed, err)
	}
	if p.Iss != r.cfg.Issuer {
		return nil, "", 0, fmt.Errorf("%w: iss %s", ErrSETIssuer, quote(p.Iss))
	}
	if !slices.Contains(p.Aud, r.cfg.Audience) {
		return nil, "", 0, ErrSETAudience
	}
	now := r.cfg.Now()
	iat, ok := numericTime(p.Iat)
	skew := r.cfg.List.cfg.ClockSkew
	switch {
	case !ok:
		return nil, "", 0, fmt.Errorf("%w: no iat", ErrSETMalformed)
	case iat.After(now.Add(skew)):
		return nil, "", 0, fmt.Errorf("%w: iat in the future", ErrSETMalformed)
	case now.Sub(iat) > r.cfg.MaxSETAge:
		return nil, "", 0, fmt.Errorf("%w: iat older than ReceiverConfig.MaxSETAge", ErrSETMalformed)
	}
	if exp, ok := numericTime(p.Exp); ok && !now.Before(exp.Add(skew)) {
		return nil, "", 0, fmt.Errorf("%w: expired", ErrSETMalformed)
	}
	if p.Jti == "" || len(p.Jti) > 256 {
		return nil, "", 0, fmt.Errorf("%w: no jti, or one over 256 bytes", ErrSETMalformed)
	}
	if len(p.Events) == 0 {
		return nil, "", 0, fmt.Errorf("%w: no events", ErrSETMalformed)
	}
	var revs []Revocation
	for typ, body := range p.Events {
		rv, err := r.event(typ, body, p.SubID, iat)
		if err != nil {
			return nil, "", 0, err
		}
		revs = append(revs, rv...)
	}
	return revs, p.Jti, iat.Add(r.cfg.MaxSETAge + skew).UnixNano(), nil
}

// subjectID is a subject identifier (RFC 9493), or a complex subject of
// Shared Signals (user, session, ...) when Format is empty.
type subjectID struct {
	Format  string     `json:"format"`
	Iss     string     `json:"iss"`
	Sub     string     `json:"sub"`
	ID      string     `json:"id"`
	Email   string     `json:"email"`
	User    *subjectID `json:"user"`
	Session *subjectID `json:"session"`
}

// eventBody is the part of an event the Receiver reads.
type eventBody struct {
	Subject        json.RawMessage `json:"subject"`
	EventTimestamp *json.Number    `json:"event_timestamp"`
	ChangeType     string          `json:"change_type"`
}

// event returns the revocations of one event: none for an event type it
// does not act on or a subject it cannot map (both counted as ignored).
func (r *Receiver) event(typ string, body, subID json.RawMessage, iat time.Time) ([]Revocation, error) {
	switch typ {
	case EventSessionRevoked, EventCredentialChange, EventAccountDisabled, EventAccountPurged:
	default:
		r.ignore("event_type")
		return nil, nil
	}
	var e eventBody
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("%w: event: %v", ErrSETMalformed, err)
	}
	if typ == EventCredentialChange && e.ChangeType == "create" {
		r.ignore("credential_created") // a new credential ends no session
		return nil, nil
	}
	raw := e.Subject // RISC and older CAEP put the subject in the event
	if len(raw) == 0 {
		raw = subID
	}
	var s subjectID
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return nil, fmt.Errorf("%w: event without a subject", ErrSETMalformed)
	}
	at := iat
	if t, ok := numericTime(e.EventTimestamp); ok {
		at = t
	}
	user, session := &s, (*subjectID)(nil)
	if s.Format == "" {
		user, session = s.User, s.Session
	}
	rv := Revocation{At: at}
	if user != nil {
		iss, sub, err := r.subject(user)
		if err != nil {
			return nil, err
		}
		rv.Issuer, rv.Subject = iss, sub
	}
	if session != nil && typ == EventSessionRevoked {
		iss, sid, err := r.subject(session)
		if err != nil {
			return nil, err
		}
		if session.Format != "iss_sub" && rv.Issuer != "" {
			iss = rv.Issuer // an opaque session id belongs to its user's issuer
		}
		rv.Issuer, rv.Subject, rv.SessionID = iss, "", sid
	}
	if rv.Issuer == "" {
		r.ignore("subject_format")
		return nil, nil
	}
	return []Revocation{rv}, nil
}

// subject maps a simple subject identifier to an issuer and value.
func (r *Receiver) subject(s *subjectID) (iss, val string, err error) {
	switch s.Format {
	case "iss_sub":
		if s.Iss == "" || s.Sub == "" {
			return "", "", fmt.Errorf("%w: iss_sub without iss or sub", ErrSETMalformed)
		}
		if !slices.Contains(r.cfg.SubjectIssuers, s.Iss) {
			return "", "", fmt.Errorf("%w: subject of issuer %s", ErrSETSubject, quote(s.Iss))
		}
		return s.Iss, s.Sub, nil
	case "opaque":
		if s.ID == "" {
			return "", "", fmt.Errorf("%w: opaque without id", ErrSETMalformed)
		}
		return r.cfg.SubjectIssuers[0], s.ID, nil
	case "email":
		if s.Email == "" {
			return "", "", fmt.Errorf("%w: email without email", ErrSETMalformed)
		}
		if r.cfg.AcceptEmail {
			return r.cfg.SubjectIssuers[0], s.Email, nil
		}
	}
	return "", "", nil // a format not mapped: ignored
}

func (r *Receiver) ignore(reason string) {
	r.ignored.Add(1)
	events.Log(r.ctx, r.cfg.Logger, slog.LevelInfo, "revoke: security event acknowledged, not acted on",
		slog.String("event", "set_ignored"), slog.String("reason", reason))
}

// key returns the transmitter's key for kid and alg, fetching a remote
// set when it has none, is an hour old, or lacks kid and was fetched over
// a minute ago; never more than one attempt a minute, failed ones included.
func (r *Receiver) key(ctx context.Context, kid string, alg jwa.SignatureAlgorithm) (jwk.Key, error) {
	r.keyMu.Lock()
	defer r.keyMu.Unlock()
	find := func() jwk.Key {
		if r.keys == nil {
			return nil
		}
		if kid == "" {
			if r.keys.Len() != 1 {
				return nil
			}
			k, _ := r.keys.Key(0)
			return k
		}
		k, _ := r.keys.LookupKeyID(kid)
		return k
	}
	k := find()
	if r.cfg.JWKSURL != "" {
		now := r.cfg.Now()
		age := now.Sub(r.fetched)
		// Failed attempts are spaced too, so that SETs with unknown kids
		// while the transmitter's JWKS is down cost one fetch a minute.
		due := r.tried.IsZero() || now.Sub(r.tried) > time.Minute
		if due && (r.keys == nil || age > time.Hour || (k == nil && age > time.Minute)) {
			r.tried = now
			set, err := r.fetchKeys(ctx)
			r.lastErr = err
			if err == nil {
				r.keys, r.fetched = set, now
				k = find()
			}
		}
		// Without the key while the last fetch failed, the SET may be
		// good: unavailable (503, redelivered), never refused.
		if k == nil && r.lastErr != nil {
			return nil, fmt.Errorf("%w: transmitter keys: %w", ErrSETUnavailable, r.lastErr)
		}
	}
	if k == nil {
		return nil, fmt.Errorf("%w: no transmitter key for kid %s", ErrSETKey, quote(kid))
	}
	if ka := k.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
		return nil, fmt.Errorf("%w: key is for %s", ErrSETKey, quote(ka.String()))
	}
	return k, nil
}

func (r *Receiver) fetchKeys(ctx context.Context) (jwk.Set, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 512<<10))
	if err != nil {
		return nil, err
	}
	return jwk.Parse(b)
}

// quote quotes an untrusted value for an error: at most 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}
