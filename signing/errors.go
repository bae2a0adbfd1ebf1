package signing

import (
	"errors"
	"net/http"

	"github.com/apiguard/apiguard/internal/problem"
)

// Rejections. Every error of [Verifier.Verify] matches one of these with
// errors.Is. The answers to clients name the kind of failure only; which
// key or which check failed goes to the log.
var (
	// ErrMissingSignature: the request has no Signature-Input or Signature.
	ErrMissingSignature = errors.New("signing: request is not signed")
	// ErrMalformed: Signature-Input, Signature or Content-Digest is not a
	// valid structured field, repeats a label, or a covered component
	// cannot be built from the request. 400.
	ErrMalformed = errors.New("signing: malformed signature fields")
	// ErrProfile: the signature does not cover what the endpoint's
	// profile requires, or lacks a required parameter (created, keyid,
	// nonce, the tag).
	ErrProfile = errors.New("signing: signature does not meet the profile")
	// ErrUnknownKey: the key store has no key for keyid. A KeyStore
	// returns it (wrapped or not) for an unknown key.
	ErrUnknownKey = errors.New("signing: unknown key")
	// ErrRevokedKey: the key is revoked.
	ErrRevokedKey = errors.New("signing: key revoked")
	// ErrAlgorithm: alg does not match the key's algorithm, or the key
	// does not hold exactly its algorithm's material (see [Key]).
	ErrAlgorithm = errors.New("signing: algorithm does not match the key")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("signing: signature mismatch")
	// ErrDigest: Content-Digest does not match the body, or has no
	// supported algorithm.
	ErrDigest = errors.New("signing: content digest mismatch")
	// ErrBodyTooLarge: the body is over Config.MaxBodyBytes. 413.
	ErrBodyTooLarge = errors.New("signing: body too large")
	// ErrExpired: created is older than the window, or expires has passed.
	ErrExpired = errors.New("signing: signature expired")
	// ErrFuture: created is further ahead of now than Config.FutureSkew.
	ErrFuture = errors.New("signing: signature created in the future")
	// ErrStale: created is older than the newest request already accepted
	// for the key, minus Config.ReorderSlack: a capture replayed after
	// newer traffic.
	ErrStale = errors.New("signing: signature older than newer accepted traffic")
	// ErrReplay: the nonce was used before.
	ErrReplay = errors.New("signing: replayed nonce")
	// ErrReplayFloor: created is at or below the replay store's floor (the
	// newest evicted entry, or the process start), so the store cannot
	// prove the nonce unused. Fail closed.
	ErrReplayFloor = errors.New("signing: signature older than the replay floor")
	// ErrStoreUnavailable: the key store or replay store did not answer.
	// 503 with Retry-After.
	ErrStoreUnavailable = errors.New("signing: store unavailable")
)

var reasons = []struct {
	err    error
	reason string
}{
	{ErrMissingSignature, "missing"},
	{ErrMalformed, "malformed"},
	{ErrProfile, "profile"},
	{ErrUnknownKey, "unknown_key"},
	{ErrRevokedKey, "revoked_key"},
	{ErrAlgorithm, "algorithm"},
	{ErrSignature, "signature"},
	{ErrDigest, "digest"},
	{ErrBodyTooLarge, "body_too_large"},
	{ErrExpired, "expired"},
	{ErrFuture, "future"},
	{ErrStale, "stale"},
	{ErrReplay, "nonce_reused"},
	{ErrReplayFloor, "replay_floor"},
	{ErrStoreUnavailable, "store_unavailable"},
}

func reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "other"
}

var (
	probMissing = problem.Problem{Type: problem.TypeBase + "signature-required", Title: "Signature required", Status: http.StatusUnauthorized, Detail: "This request must carry an HTTP message signature."}
	probInvalid = problem.Problem{Type: problem.TypeBase + "invalid-signature", Title: "Invalid signature", Status: http.StatusUnauthorized, Detail: "The request signature is not valid."}
	probStale   = problem.Problem{Type: problem.TypeBase + "stale-signature", Title: "Stale or replayed signature", Status: http.StatusUnauthorized, Detail: "The signature is not fresh. Sign the request again now, with a new nonce and created taken from a clock set by this response's Date."}
	probProfile = problem.Problem{Type: problem.TypeBase + "insufficient-signature", Title: "Insufficient signature", Status: http.StatusUnauthorized, Detail: "The signature does not cover what this endpoint requires."}
	probBad     = problem.Problem{Type: problem.TypeBase + "malformed-signature", Title: "Malformed signature", Status: http.StatusBadRequest, Detail: "The signature fields are malformed."}
	probTooBig  = problem.Problem{Type: problem.TypeBase + "body-too-large", Title: "Body too large", Status: http.StatusRequestEntityTooLarge, Detail: "The request body is larger than this endpoint accepts."}
	probDown    = problem.Problem{Type: problem.TypeBase + "signature-store-unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: "Signatures cannot be checked right now; retry later."}
)

// WriteError is the default Config.ErrorHandler: 401 with an
// Accept-Signature field (RFC 9421 §5.1) saying what to sign, 400 for
// malformed fields, 413 for an oversize body, 503 with Retry-After when a
// store is down; each with a problem+json body of fixed text, and a Date
// field (RFC 9110 §6.6.1) from Config.Now.
//
// A signature that is not fresh (created too far ahead or too old, at or
// below the replay floor, older than newer traffic of its key, or a nonce
// used before) gets a 401 whose detail says to sign again now: a client
// whose clock is off can take the offset from Date and sign again at
// once (see the replay defence in the package doc).
//
// An unknown key, a revoked key, a key of another algorithm and a
// signature that does not verify get the same answer, so that the answer
// does not tell which key IDs exist; the log tells them apart (reason).
func (v *Verifier) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Date", v.cfg.Now().UTC().Format(http.TimeFormat))
	var p problem.Problem
	switch {
	case errors.Is(err, ErrStoreUnavailable):
		w.Header().Set("Retry-After", "1")
		problem.Write(w, probDown)
		return
	case errors.Is(err, ErrBodyTooLarge):
		problem.Write(w, probTooBig)
		return
	case errors.Is(err, ErrMalformed):
		p = probBad
	case errors.Is(err, ErrMissingSignature):
		p = probMissing
	case errors.Is(err, ErrProfile):
		p = probProfile
	case errors.Is(err, ErrExpired), errors.Is(err, ErrFuture), errors.Is(err, ErrStale),
		errors.Is(err, ErrReplay), errors.Is(err, ErrReplayFloor):
		p = probStale
	default:
		p = probInvalid
	}
	if as := v.acceptSignature(r); as != "" {
		w.Header().Set("Accept-Signature", as)
	}
	problem.Write(w, p)
}
