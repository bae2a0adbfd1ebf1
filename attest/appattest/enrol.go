package appattest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/apiguard/apiguard/attest/internal/provider"
)

// Enrolment errors.
var (
	// ErrDeviceKey: the device key is not the DER SubjectPublicKeyInfo of
	// an EC P-256 key, in its canonical encoding.
	ErrDeviceKey = errors.New("attest: device key not a P-256 public key")
	// ErrKeyTaken: the key ID is already enrolled or revoked; an
	// [Enrolment] Enrol function returns an error matching it (409).
	ErrKeyTaken = provider.ErrKeyTaken
	// ErrEnrolRequest: the enrolment request is not a POST of the JSON
	// object [Verifier.EnrolHandler] reads, or its key ID is invalid (400).
	ErrEnrolRequest = provider.ErrEnrolRequest
)

// EnrolClientDataVersion is the first line of [EnrolClientData]; it
// differs from [ClientDataVersion], so that an enrolment assertion never
// reads as a request's and the other way round.
const EnrolClientDataVersion = "apiguard-enrol-v1"

// EnrolClientData is the client data an app signs with
// generateAssertion to bind a Secure Enclave key to its App Attest key:
// three fields, separated by a line feed, none after the last:
//
//	apiguard-enrol-v1    EnrolClientDataVersion
//	3b7e…                lower-case hex SHA-256 of the device key's SubjectPublicKeyInfo DER
//	Zm9vYmFy…            the challenge, as issued for the App Attest key ID
//
// The SubjectPublicKeyInfo is the 26 bytes
// 3059301306072a8648ce3d020106082a8648ce3d030107034200 followed by the
// 65-byte uncompressed point that SecKeyCopyExternalRepresentation
// returns: 91 bytes, the same that device_key carries.
func EnrolClientData(deviceKeySPKI []byte, challenge string) []byte {
	sum := sha256.Sum256(deviceKeySPKI)
	return []byte(EnrolClientDataVersion + "\n" + hex.EncodeToString(sum[:]) + "\n" + challenge)
}

// Enrolment configures [Verifier.EnrolHandler].
type Enrolment struct {
	// Enrol stores the device key: pub is an *ecdsa.PublicKey on P-256,
	// for algorithm ecdsa-p256-sha256, under the App Attest key ID;
	// signals is nil. An error matching [ErrKeyTaken] is a 409; any other
	// is a key store outage, 503. Adapt redisstore.DeviceKeyStore.Put to
	// it, storing the key under the signed-in account (ctx is the
	// request's), and look it up for signing under the request's account
	// only: a key bound to no account lets a stolen access token be
	// signed with the thief's own enrolled key. Required.
	Enrol func(ctx context.Context, keyID string, pub crypto.PublicKey, signals []string) error
	// MaxBodyBytes caps the request body. Default: 64 KiB.
	MaxBodyBytes int64
}

// enrolBody is the body of an enrolment request.
type enrolBody struct {
	KeyID     string `json:"key_id"`
	DeviceKey string `json:"device_key"`
	Challenge string `json:"challenge"`
	Assertion string `json:"assertion"`
}

// EnrolHandler returns the device-key enrolment endpoint. App Attest
// keys sign only assertions, so a request signing key is a second key,
// made in the Secure Enclave, that the App Attest key vouches for. A
// POST body
//
//	{"key_id": "<App Attest key ID>", "device_key": "<standard base64 SPKI DER>",
//	 "challenge": "<from ChallengeHandler, for key_id>", "assertion": "<standard base64>"}
//
// carries an attested key's ID, the Secure Enclave P-256 public key, a
// challenge issued for that key ID by [Verifier.ChallengeHandler] and an
// assertion by the App Attest key over [EnrolClientData] of the device
// key and the challenge. The assertion is verified as by
// [Verifier.VerifyAssertion] (counter included), then the challenge is
// used once; a device key swapped after the assertion fails its
// signature. The key goes to Enrolment.Enrol under the App Attest key
// ID, and the answer is 201 {"key_id": "…", "algorithm":
// "ecdsa-p256-sha256"}. Rejections go to Config.ErrorHandler; keys and
// challenges are never logged. Put a rate limiter in front of it.
func (a *Verifier) EnrolHandler(e Enrolment) (http.Handler, error) {
	if e.Enrol == nil {
		return nil, errors.New("attest: appattest.Enrolment.Enrol is required")
	}
	if e.MaxBodyBytes < 0 || e.MaxBodyBytes > provider.MaxBodyLimit {
		return nil, errors.New("attest: appattest.Enrolment.MaxBodyBytes must be between 0 and 1 GiB")
	}
	if e.MaxBodyBytes == 0 {
		e.MaxBodyBytes = provider.DefaultMaxEnrolBody
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keyID, err := a.enrol(r, &e)
		if err != nil {
			a.cfg.ErrorHandler(w, r, err)
			return
		}
		provider.WriteEnrolled(w, keyID)
	}), nil
}

func (a *Verifier) enrol(r *http.Request, e *Enrolment) (string, error) {
	var body enrolBody
	if err := provider.ReadEnrolBody(r, e.MaxBodyBytes, &body); err != nil {
		return "", err
	}
	if !provider.ValidKeyID(body.KeyID) || body.Challenge == "" || body.DeviceKey == "" || body.Assertion == "" {
		return "", ErrEnrolRequest
	}
	spki, err1 := base64.StdEncoding.DecodeString(body.DeviceKey)
	assertion, err2 := base64.StdEncoding.DecodeString(body.Assertion)
	if err1 != nil || err2 != nil {
		return "", ErrEnrolRequest
	}
	ctx := r.Context()
	pub, err := deviceKey(spki)
	if err != nil {
		a.fail(ctx, "enrolment", err)
		return "", err
	}
	// The signature first, so that unauthenticated traffic never
	// consumes a challenge; one store deadline for both.
	sctx, cancel := a.storeContext(ctx)
	_, err = a.verifyAssertion(sctx, body.KeyID, assertion, EnrolClientData(spki, body.Challenge), nil)
	if err == nil {
		err = a.challeng.consume(sctx, body.Challenge, body.KeyID)
	}
	cancel()
	if err != nil {
		a.fail(ctx, "enrolment", err)
		return "", err
	}
	if err := provider.Enrol(ctx, e.Enrol, body.KeyID, pub, nil); err != nil {
		return "", err
	}
	return body.KeyID, nil
}

// deviceKey parses spki, which must be a P-256 key in its canonical DER.
func deviceKey(spki []byte) (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil || !provider.IsP256(pub) {
		return nil, ErrDeviceKey
	}
	if der, err := x509.MarshalPKIXPublicKey(pub); err != nil || !bytes.Equal(der, spki) {
		return nil, ErrDeviceKey
	}
	return pub, nil
}
