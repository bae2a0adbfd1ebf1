package auth

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apiguard/apiguard/internal/problem"
)

// Rejections. Every error returned by [Verifier.Verify] and the
// middleware matches one of these with errors.Is. Clients never learn which
// of the invalid-token checks failed: all of them are answered with the
// same 401 invalid_token and the same text, and the log gets the reason.
var (
	// ErrNoToken: the request carries no access token. 401 without an
	// error code, as RFC 6750 §3.1 asks.
	ErrNoToken = errors.New("auth: no access token")
	// ErrInvalidRequest: the Authorization header is malformed or repeated.
	// 400 invalid_request.
	ErrInvalidRequest = errors.New("auth: malformed authorization request")

	// ErrMalformedToken: not a compact JWS of three base64url parts with
	// JSON header and payload (or, for a token to introspect, not an RFC
	// 6750 b64token), or larger than Config.MaxTokenSize.
	ErrMalformedToken = errors.New("auth: malformed token")
	// ErrAlgorithm: alg is "none", HMAC, or not in the issuer's allow-list.
	ErrAlgorithm = errors.New("auth: algorithm not allowed")
	// ErrForbiddenHeader: the header carries jku, x5u or crit.
	ErrForbiddenHeader = errors.New("auth: forbidden token header")
	// ErrType: typ is not at+jwt (RFC 9068), or the token looks like an
	// ID token.
	ErrType = errors.New("auth: token type not accepted")
	// ErrIssuer: iss is not one of the configured issuers.
	ErrIssuer = errors.New("auth: unknown issuer")
	// ErrUnknownKey: no key of the issuer matches the token's kid and alg.
	ErrUnknownKey = errors.New("auth: unknown signing key")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("auth: invalid signature")
	// ErrAudience: aud contains none of the issuer's audiences.
	ErrAudience = errors.New("auth: audience not accepted")
	// ErrExpired: exp is missing or has passed (with Config.ClockSkew).
	ErrExpired = errors.New("auth: token expired")
	// ErrNotYetValid: nbf or iat is in the future (with Config.ClockSkew).
	ErrNotYetValid = errors.New("auth: token not yet valid")
	// ErrLifetime: iat is missing, or exp - iat exceeds
	// Config.MaxTokenLifetime.
	ErrLifetime = errors.New("auth: token lifetime too long")

	// ErrInactive: the issuer's introspection endpoint answered that the
	// token is not active (revoked, expired or unknown to it).
	ErrInactive = errors.New("auth: token not active")
	// ErrRevoked: Config.Revocations holds a revocation of the token (its
	// jti, sid, or its sub or client_id at or after its iat). 401
	// invalid_token.
	ErrRevoked = errors.New("auth: token revoked")

	// ErrInsufficientScope: the token lacks a required scope. 403
	// insufficient_scope.
	ErrInsufficientScope = errors.New("auth: insufficient scope")
	// ErrStepUp: the authentication event is too weak (acr) or too old
	// (max_age); 401 insufficient_user_authentication (RFC 9470).
	ErrStepUp = errors.New("auth: insufficient user authentication")

	// ErrKeysUnavailable: the issuer's keys cannot settle the token now:
	// no key set fresher than Config.MaxKeyStaleness is loaded (the JWKS
	// cannot be fetched, or its first fetch has not ended), or the token's
	// kid is missing from a key set fetched before the token was issued,
	// or its key there fails the signature, and a refresh is due; or the
	// issuer's introspection endpoint gave no answer (see [Introspection]).
	// 503 with Retry-After, never 401: the token may well be valid. Tokens
	// in the verified-token cache get it too.
	ErrKeysUnavailable = errors.New("auth: signing keys unavailable")
)

// RequirementError carries what a request lacked, for the
// WWW-Authenticate challenge. It wraps [ErrInsufficientScope] or
// [ErrStepUp].
type RequirementError struct {
	Err       error         // ErrInsufficientScope or ErrStepUp
	Scopes    []string      // the scopes the endpoint requires
	ACRValues []string      // acceptable acr values, most preferred first
	MaxAge    time.Duration // the greatest accepted age of the authentication
}

// Error returns the text of the wrapped sentinel.
func (e *RequirementError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped sentinel, for errors.Is.
func (e *RequirementError) Unwrap() error { return e.Err }

// UnavailableError wraps [ErrKeysUnavailable] with the time after which a
// retry may succeed.
type UnavailableError struct {
	// RetryAfter is when the next JWKS fetch (or introspection call, after
	// failed ones) may start (1s while one is under way): a retry then
	// finds it made or under way. For the DPoP replay store, 1s.
	RetryAfter time.Duration
	Err        error // the fetch error, for the log
}

// Error returns the sentinel's text and the fetch error's, when there is one.
func (e *UnavailableError) Error() string {
	if e.Err != nil {
		return ErrKeysUnavailable.Error() + ": " + e.Err.Error()
	}
	return ErrKeysUnavailable.Error()
}

// Unwrap returns [ErrKeysUnavailable] and the fetch error, for errors.Is.
func (e *UnavailableError) Unwrap() []error { return []error{ErrKeysUnavailable, e.Err} }

// reason maps an error to the fixed reason logged with event=auth_failed
// and used as the metric label.
func reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "other"
}

var reasons = []struct {
	err    error
	reason string
}{
	{ErrNoToken, "no_token"},
	{ErrInvalidRequest, "invalid_request"},
	{ErrMalformedToken, "malformed"},
	{ErrAlgorithm, "algorithm"},
	{ErrForbiddenHeader, "forbidden_header"},
	{ErrType, "type"},
	{ErrIssuer, "issuer"},
	{ErrUnknownKey, "unknown_key"},
	{ErrSignature, "signature"},
	{ErrAudience, "audience"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrLifetime, "lifetime"},
	{ErrInactive, "inactive"},
	{ErrRevoked, "revoked"},
	{ErrInsufficientScope, "insufficient_scope"},
	{ErrStepUp, "step_up"},
	{errKidRefreshDue, "kid_refresh_due"},
	{errIntrospectionDown, "introspection_unavailable"},
	{ErrKeysUnavailable, "keys_unavailable"},
	{ErrDPoPRequired, "dpop_required"},
	{ErrDPoPProof, "dpop_proof"},
	{ErrDPoPBinding, "dpop_binding"},
	{ErrDPoPReplay, "dpop_replay"},
	{ErrDPoPNonce, "dpop_nonce"},
}

var (
	probInvalidRequest = problem.Problem{Type: problem.TypeBase + "invalid-request", Title: "Invalid request", Status: http.StatusBadRequest, Detail: "The Authorization header is malformed."}
	probNoToken        = problem.Problem{Type: problem.TypeBase + "unauthorized", Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: "An access token is required."}
	probInvalidToken   = problem.Problem{Type: problem.TypeBase + "invalid-token", Title: "Invalid token", Status: http.StatusUnauthorized, Detail: "The access token is invalid."}
	probInvalidDPoP    = problem.Problem{Type: problem.TypeBase + "invalid-dpop-proof", Title: "Invalid DPoP proof", Status: http.StatusUnauthorized, Detail: "The DPoP proof is invalid."}
	probNonce          = problem.Problem{Type: problem.TypeBase + "use-dpop-nonce", Title: "DPoP nonce required", Status: http.StatusUnauthorized, Detail: "Retry with the DPoP-Nonce the server sent."}
	probScope          = problem.Problem{Type: problem.TypeBase + "insufficient-scope", Title: "Insufficient scope", Status: http.StatusForbidden, Detail: "The access token lacks a scope this endpoint requires."}
	probStepUp         = problem.Problem{Type: problem.TypeBase + "insufficient-user-authentication", Title: "Step-up authentication required", Status: http.StatusUnauthorized, Detail: "This endpoint requires a stronger or more recent sign-in."}
	probUnavailable    = problem.Problem{Type: problem.TypeBase + "keys-unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: "Access tokens cannot be checked right now; retry later."}
)

// challenge builds one WWW-Authenticate challenge (RFC 9110 §11.6.1) from
// fixed parameter values; none of them comes from the request.
func challenge(scheme string, params ...string) string {
	var b strings.Builder
	b.WriteString(scheme)
	for i := 0; i+1 < len(params); i += 2 {
		if params[i+1] == "" {
			continue
		}
		if b.Len() == len(scheme) {
			b.WriteByte(' ')
		} else {
			b.WriteString(", ")
		}
		b.WriteString(params[i])
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(params[i+1]))
		b.WriteByte('"')
	}
	return b.String()
}

// WriteError is the default Config.ErrorHandler. It answers per RFC 6750,
// RFC 9449 and RFC 9470: the status, a WWW-Authenticate challenge for each
// accepted scheme (Bearer, and DPoP with algs= when DPoP is on), and an
// RFC 9457 problem+json body with a fixed text per kind of rejection.
func (v *Verifier) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var p problem.Problem
	code := ""
	extra := []string(nil)
	switch {
	case errors.Is(err, ErrNoToken):
		p = probNoToken
	case errors.Is(err, ErrInvalidRequest):
		p, code = probInvalidRequest, "invalid_request"
	case errors.Is(err, ErrKeysUnavailable):
		retry := 30 * time.Second
		if ue, ok := errors.AsType[*UnavailableError](err); ok && ue.RetryAfter > 0 {
			retry = ue.RetryAfter
		}
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
		problem.Write(w, probUnavailable)
		return
	case errors.Is(err, ErrInsufficientScope):
		p, code = probScope, "insufficient_scope"
		if re, ok := errors.AsType[*RequirementError](err); ok {
			extra = append(extra, "scope", strings.Join(re.Scopes, " "))
		}
	case errors.Is(err, ErrStepUp):
		p, code = probStepUp, "insufficient_user_authentication"
		if re, ok := errors.AsType[*RequirementError](err); ok {
			extra = append(extra, "acr_values", strings.Join(re.ACRValues, " "))
			if re.MaxAge > 0 {
				extra = append(extra, "max_age", strconv.FormatInt(int64(re.MaxAge/time.Second), 10))
			}
		}
	case errors.Is(err, ErrDPoPNonce):
		p, code = probNonce, "use_dpop_nonce"
		if v.dpop != nil && v.dpop.nonces != nil {
			w.Header().Set("DPoP-Nonce", v.dpop.nonces.issue(v.now()))
		}
	case errors.Is(err, ErrDPoPProof), errors.Is(err, ErrDPoPReplay):
		p, code = probInvalidDPoP, "invalid_dpop_proof"
	default:
		p, code = probInvalidToken, "invalid_token"
	}
	v.setChallenges(w, code, extra)
	problem.Write(w, p)
}

// setChallenges adds the WWW-Authenticate challenges for code. A DPoP
// error is reported on the DPoP challenge; a Bearer error on both, so a
// client of either kind learns what to do.
func (v *Verifier) setChallenges(w http.ResponseWriter, code string, extra []string) {
	h := w.Header()
	dpopErr := code == "invalid_dpop_proof" || code == "use_dpop_nonce"
	if v.resMeta.url != "" {
		extra = append(extra, "resource_metadata", v.resMeta.url) // RFC 9728 §5.1
	}
	if v.cfg.DPoP != DPoPRequired {
		params := []string{"realm", v.cfg.Realm}
		if !dpopErr {
			params = append(params, "error", code)
		}
		h.Add("WWW-Authenticate", challenge("Bearer", append(params, extra...)...))
	}
	if v.cfg.DPoP != DPoPOff {
		params := []string{"realm", v.cfg.Realm, "error", code}
		params = append(params, extra...)
		params = append(params, "algs", v.dpop.algsParam)
		h.Add("WWW-Authenticate", challenge("DPoP", params...))
	}
}
