package androidkey

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/problem"
)

// Enrolment errors.
var (
	// ErrDeviceKey: the attested key cannot be a device signing key: it
	// is not an EC P-256 key with purpose SIGN generated in the device.
	ErrDeviceKey = errors.New("attest: android key not a P-256 signing key")
	// ErrKeyTaken: the key ID is already enrolled or revoked; an
	// [Enrolment] Enrol function returns an error matching it (409).
	ErrKeyTaken = provider.ErrKeyTaken
	// ErrEnrolRequest: the enrolment request is not a POST of the JSON
	// object [Verifier.EnrolHandler] reads, or its key ID is invalid (400).
	ErrEnrolRequest = provider.ErrEnrolRequest
	// ErrBodyTooLarge: the enrolment body is over Enrolment.MaxBodyBytes.
	ErrBodyTooLarge = provider.ErrBodyTooLarge
)

// Enrolment configures [Verifier.EnrolHandler].
type Enrolment struct {
	// Challenge returns the challenge the application issued to this
	// client for enrolment (kept in its session, say), which the key was
	// generated with (setAttestationChallenge). Verify checks it and uses
	// it up; the application refuses challenges older than
	// Config.ChallengeTTL. An error matching [ErrStore] is a 503, any
	// other error or an empty challenge a 401. Required.
	Challenge func(r *http.Request) ([]byte, error)
	// Enrol stores the device key: pub is an *ecdsa.PublicKey on P-256,
	// for algorithm ecdsa-p256-sha256, signals the attested key's
	// (Key.Signals). An error matching [ErrKeyTaken] is a 409; any other
	// is a key store outage, 503. Adapt redisstore.DeviceKeyStore.Put to
	// it, storing the key under the signed-in account (ctx is the
	// request's), and look it up for signing under the request's account
	// only: a key bound to no account lets a stolen access token be
	// signed with the thief's own enrolled key. Required.
	Enrol func(ctx context.Context, keyID string, pub crypto.PublicKey, signals []string) error
	// MaxBodyBytes caps the request body. Default: 64 KiB.
	MaxBodyBytes int64
	// ErrorHandler writes rejections. Default: [Verifier.WriteError].
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
}

// enrolBody is the body of an enrolment request.
type enrolBody struct {
	KeyID string   `json:"key_id"`
	Chain []string `json:"chain"`
}

// EnrolHandler returns the device-key enrolment endpoint. A POST body
//
//	{"key_id": "…", "chain": ["<standard base64 DER>", …]}
//
// carries a key ID of the client's choosing (1 to 128 bytes of
// [A-Za-z0-9+/=_.-]; random, 128 bits or more, since an enrolled ID is
// never reused) and the Key Attestation chain of a key the app generated
// in Android Keystore with the challenge from Enrolment.Challenge. The
// chain is checked by [Verifier.Verify], then the attested key must be
// EC P-256 with purpose SIGN, generated in the device (not imported):
// [ErrDeviceKey] otherwise. The key is passed to Enrolment.Enrol and the
// answer is 201 {"key_id": "…", "algorithm": "ecdsa-p256-sha256"}.
// Rejections go to Enrolment.ErrorHandler; keys and challenges are
// never logged. Put a rate limiter in front of it.
func (v *Verifier) EnrolHandler(e Enrolment) (http.Handler, error) {
	if e.Challenge == nil || e.Enrol == nil {
		return nil, errors.New("attest: androidkey.Enrolment.Challenge and Enrol are required")
	}
	if e.MaxBodyBytes < 0 || e.MaxBodyBytes > provider.MaxBodyLimit {
		return nil, errors.New("attest: androidkey.Enrolment.MaxBodyBytes must be between 0 and 1 GiB")
	}
	if e.MaxBodyBytes == 0 {
		e.MaxBodyBytes = provider.DefaultMaxEnrolBody
	}
	if e.ErrorHandler == nil {
		e.ErrorHandler = v.WriteError
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keyID, err := v.enrol(r, &e)
		if err != nil {
			e.ErrorHandler(w, r, err)
			return
		}
		provider.WriteEnrolled(w, keyID)
	}), nil
}

func (v *Verifier) enrol(r *http.Request, e *Enrolment) (string, error) {
	var body enrolBody
	if err := provider.ReadEnrolBody(r, e.MaxBodyBytes, &body); err != nil {
		return "", err
	}
	if !provider.ValidKeyID(body.KeyID) || len(body.Chain) == 0 || len(body.Chain) > maxChain {
		return "", ErrEnrolRequest
	}
	chain := make([][]byte, len(body.Chain))
	for i, c := range body.Chain {
		der, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return "", ErrEnrolRequest
		}
		chain[i] = der
	}
	challenge, err := e.Challenge(r)
	switch {
	case errors.Is(err, ErrStore):
		return "", err
	case err != nil || len(challenge) == 0:
		return "", ErrChallenge
	}
	k, err := v.Verify(r.Context(), chain, challenge)
	if err != nil {
		return "", err
	}
	if err := deviceKey(k); err != nil {
		v.fail(r.Context(), err)
		return "", err
	}
	if err := provider.Enrol(r.Context(), e.Enrol, body.KeyID, k.PublicKey, slices.Clone(k.Signals)); err != nil {
		return "", err
	}
	return body.KeyID, nil
}

// Key Attestation values of a device signing key.
const (
	algorithmEC    = 3
	purposeSign    = 2
	originGenerate = 0
)

// deviceKey checks that k can be a device signing key.
func deviceKey(k *Key) error {
	switch {
	case k.Algorithm != algorithmEC || !provider.IsP256(k.PublicKey):
		return fmt.Errorf("%w: algorithm %d", ErrDeviceKey, k.Algorithm)
	case !slices.Contains(k.Purposes, purposeSign):
		return fmt.Errorf("%w: no SIGN purpose", ErrDeviceKey)
	case k.Origin != originGenerate:
		return fmt.Errorf("%w: origin %d, not generated in the device", ErrDeviceKey, k.Origin)
	}
	return nil
}

// WriteError is the default Enrolment.ErrorHandler. It answers with an
// RFC 9457 problem+json body: 400 for [ErrEnrolRequest], 413 for
// [ErrBodyTooLarge], 409 for [ErrKeyTaken], 503 with Retry-After for
// [ErrStore] and [ErrVendor] (the status list), and 401 for any other
// error (the detail never says which check failed).
func (v *Verifier) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrEnrolRequest):
		problem.Write(w, provider.ProbBadEnrolRq)
	case errors.Is(err, ErrBodyTooLarge):
		problem.Write(w, provider.ProbTooBig)
	case errors.Is(err, ErrKeyTaken):
		problem.Write(w, provider.ProbKeyTaken)
	case errors.Is(err, ErrStore), errors.Is(err, ErrVendor):
		w.Header().Set("Retry-After", provider.RetryAfterHeader(err))
		problem.Write(w, provider.ProbAttestDown)
	default:
		problem.Write(w, provider.ProbBadAttest)
	}
}
