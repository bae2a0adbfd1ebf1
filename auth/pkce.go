package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
)

// PKCE errors (RFC 7636).
var (
	// ErrPKCEMethod: a method other than S256; "plain" is refused.
	ErrPKCEMethod = errors.New("auth: PKCE method must be S256")
	// ErrPKCEVerifier: the verifier is not 43 to 128 unreserved characters.
	ErrPKCEVerifier = errors.New("auth: malformed PKCE verifier")
	// ErrPKCEMismatch: the verifier does not match the challenge.
	ErrPKCEMismatch = errors.New("auth: PKCE verifier does not match the challenge")
)

// NewPKCEVerifier returns a new code verifier (RFC 7636 §4.1): 32 random
// bytes, base64url-encoded without padding, 43 characters of the
// unreserved set.
func NewPKCEVerifier() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// PKCEChallengeS256 returns the S256 code challenge of verifier:
// base64url(SHA-256(verifier)) without padding (RFC 7636 §4.2).
func PKCEChallengeS256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// VerifyPKCE checks a code verifier against the challenge stored with the
// authorization code. Only S256 is accepted; the comparison is constant
// time. It returns [ErrPKCEMethod], [ErrPKCEVerifier] or [ErrPKCEMismatch].
func VerifyPKCE(verifier, challenge, method string) error {
	if method != "S256" {
		return ErrPKCEMethod
	}
	if !validVerifier(verifier) {
		return ErrPKCEVerifier
	}
	got := PKCEChallengeS256(verifier)
	if subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) != 1 {
		return ErrPKCEMismatch
	}
	return nil
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 characters of
// [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
