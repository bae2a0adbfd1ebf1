package provider

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/apiguard/apiguard/internal/problem"
)

// Device-key enrolment, shared by the vendor packages' EnrolHandlers.
var (
	// ErrKeyTaken: the key ID already holds another device key, or was
	// revoked (an Enrol function's error matching it is a 409).
	ErrKeyTaken = errors.New("attest: device key ID already enrolled")
	// ErrEnrolRequest: the enrolment body is not the JSON object the
	// handler reads, or its key ID is not 1 to 128 bytes of [A-Za-z0-9+/=_.-].
	ErrEnrolRequest = errors.New("attest: enrolment request malformed")
)

// AlgECDSAP256SHA256 is the algorithm of every enrolled device key
// (signing.AlgECDSAP256SHA256).
const AlgECDSAP256SHA256 = "ecdsa-p256-sha256"

// DefaultMaxEnrolBody is the default cap on an enrolment body.
const DefaultMaxEnrolBody = 64 << 10

// Problems of enrolment.
var (
	ProbKeyTaken   = problem.Problem{Type: problem.TypeBase + "device-key-taken", Title: "Device key ID taken", Status: http.StatusConflict, Detail: "This key ID is already enrolled or was revoked; enrol under a new key ID."}
	ProbBadEnrolRq = problem.Problem{Type: problem.TypeBase + "invalid-enrolment", Title: "Invalid enrolment request", Status: http.StatusBadRequest, Detail: "The enrolment request is not the expected JSON object."}
)

// ReadEnrolBody decodes r's JSON body into v, at most maxBody bytes:
// ErrBodyTooLarge, or ErrEnrolRequest for anything but one JSON object
// of known fields. A non-POST is ErrEnrolRequest too.
func ReadEnrolBody(r *http.Request, maxBody int64, v any) error {
	if r.Method != http.MethodPost {
		return fmt.Errorf("%w: method %s", ErrEnrolRequest, r.Method)
	}
	b, err := ReadBody(r, maxBody)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return ErrEnrolRequest
	}
	return nil
}

// ValidKeyID reports whether id is 1 to 128 bytes of the base64 and
// base64url alphabets, '.' and '-' (App Attest key IDs are standard
// base64).
func ValidKeyID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '+' || c == '/' || c == '=' || c == '_' || c == '.' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// IsP256 reports whether pub is an ECDSA public key on P-256.
func IsP256(pub crypto.PublicKey) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	return ok && k.Curve == elliptic.P256()
}

// Enrol calls enrol: an error matching ErrKeyTaken stays one, any other
// is an outage of the application's key store, wrapped in ErrStore.
func Enrol(ctx context.Context, enrol func(context.Context, string, crypto.PublicKey, []string) error, keyID string, pub crypto.PublicKey, signals []string) error {
	err := enrol(ctx, keyID, pub, signals)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrKeyTaken):
		return err
	default:
		return fmt.Errorf("%w: device key store: %w", ErrStore, err)
	}
}

// WriteEnrolled answers 201 {"key_id": keyID, "algorithm": "ecdsa-p256-sha256"}.
func WriteEnrolled(w http.ResponseWriter, keyID string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]string{"key_id": keyID, "algorithm": AlgECDSAP256SHA256})
}
