package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Algorithms (RFC 9421 §6.2 registry names).
const (
	// AlgHMACSHA256 is HMAC with SHA-256 over a shared per-device secret.
	AlgHMACSHA256 = "hmac-sha256"
	// AlgECDSAP256SHA256 is ECDSA over P-256 with SHA-256, for keys kept in
	// the Secure Enclave or Android Keystore. The signature is r || s, 32
	// bytes each (RFC 9421 §3.3.4), not the ASN.1 DER that Java's
	// Signature and Go's ecdsa.SignASN1 produce. s and n-s both verify:
	// RFC 9421 asks for no low-S form and devices make either; a
	// malleated signature gains nothing, as the nonce and created it
	// covers are single use whatever its bytes.
	AlgECDSAP256SHA256 = "ecdsa-p256-sha256"
	// AlgEd25519 is EdDSA over Ed25519 (RFC 9421 §3.3.6, RFC 8032).
	AlgEd25519 = "ed25519"
)

// Key is one device's signing key, plain data. Its Algorithm alone
// decides how a signature is verified, and it holds that algorithm's
// material only: a key with the other kind too (a public key on an
// hmac-sha256 key, a secret on a public-key one) or of another type
// refuses every signature with [ErrAlgorithm], so a public key's bytes
// never serve as an HMAC secret. A signature whose alg parameter names
// another algorithm is refused the same way.
type Key struct {
	// ID is the keyid the device signs with.
	ID string
	// Algorithm is AlgHMACSHA256, AlgECDSAP256SHA256 or AlgEd25519.
	Algorithm string
	// Secret is the HMAC secret (hmac-sha256 only), at least 32 bytes.
	Secret []byte
	// PublicKey is the device's public key, for ecdsa-p256-sha256 an
	// *ecdsa.PublicKey on P-256, for ed25519 an ed25519.PublicKey (as
	// androidkey's Key.PublicKey, or x509.ParsePKIXPublicKey, give them).
	PublicKey crypto.PublicKey
	// Revoked rejects every signature by this key, with ErrRevokedKey.
	Revoked bool
}

// KeyStore finds keys by ID. Key returns an error matching
// [ErrUnknownKey] for an unknown key; any other error is treated as an
// outage of the store (503). Implementations must be safe for concurrent
// use.
type KeyStore interface {
	Key(ctx context.Context, keyID string) (Key, error)
}

// KeyStoreFunc adapts a function to [KeyStore].
type KeyStoreFunc func(ctx context.Context, keyID string) (Key, error)

// Key implements [KeyStore].
func (f KeyStoreFunc) Key(ctx context.Context, keyID string) (Key, error) { return f(ctx, keyID) }

// StaticKeys returns a KeyStore of hmac-sha256 secrets by key ID. The map
// is copied. Every secret must be at least 32 bytes: [New] refuses a
// Config whose Keys holds a shorter one, and naming its key ID.
func StaticKeys(secrets map[string][]byte) KeyStore {
	return staticKeys(maps.Clone(secrets))
}

type staticKeys map[string][]byte

func (m staticKeys) Key(_ context.Context, id string) (Key, error) {
	s, ok := m[id]
	if !ok {
		return Key{}, ErrUnknownKey
	}
	return Key{ID: id, Algorithm: AlgHMACSHA256, Secret: s}, nil
}

// check is what New asks of a key store it can check.
func (m staticKeys) check() error {
	for _, id := range slices.Sorted(maps.Keys(m)) {
		if n := len(m[id]); n < minSecretLen {
			return fmt.Errorf("signing: Config.Keys: the StaticKeys secret of key %q is %d bytes; an hmac-sha256 secret must be at least %d (32 bytes from crypto/rand)", id, n, minSecretLen)
		}
	}
	return nil
}

// minSecretLen is the shortest hmac-sha256 secret or master secret
// accepted: the output size of SHA-256 (RFC 2104 §3).
const minSecretLen = 32

// maxKeyIDLength bounds key IDs that DerivedKeys derives for.
const maxKeyIDLength = 128

// DerivedKeys returns a KeyStore whose hmac-sha256 secret for key ID id is
// HKDF-SHA256(master, salt, info = id) (RFC 5869), 32 bytes: the server
// keeps one master secret, and each device gets its own secret at
// enrolment. A versioned key ID ("device-42.v2") rotates a device's
// secret. Every well-formed key ID has a secret, so revocation needs
// [WithRevocation]. master must be at least 32 bytes: [New] refuses a
// Config whose Keys has a shorter one, and Key fails on every key ID.
func DerivedKeys(master []byte, salt []byte) KeyStore {
	return &derivedKeys{master: bytes.Clone(master), salt: bytes.Clone(salt)}
}

type derivedKeys struct{ master, salt []byte }

func (d *derivedKeys) Key(_ context.Context, id string) (Key, error) {
	if err := d.check(); err != nil {
		return Key{}, err
	}
	if !validKeyID(id) {
		return Key{}, ErrUnknownKey
	}
	secret, err := DeriveSecret(d.master, d.salt, id)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: id, Algorithm: AlgHMACSHA256, Secret: secret}, nil
}

func (d *derivedKeys) check() error {
	if n := len(d.master); n < minSecretLen {
		return fmt.Errorf("signing: Config.Keys: the DerivedKeys master secret is %d bytes; it must be at least %d (32 bytes from crypto/rand, kept in the secret store)", n, minSecretLen)
	}
	return nil
}

// DeriveSecret returns HKDF-SHA256(master, salt, info = keyID), 32 bytes:
// the secret a device with keyID signs with under [DerivedKeys]. The
// enrolment service calls it to hand the device its secret.
func DeriveSecret(master, salt []byte, keyID string) ([]byte, error) {
	return derive(master, salt, keyID, 32)
}

// derive is HKDF-SHA256 (RFC 5869) from the standard library.
func derive(ikm, salt []byte, info string, n int) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, ikm, salt, info, n)
	if err != nil {
		return nil, fmt.Errorf("signing: derive secret: %w", err)
	}
	return k, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':' || c == '~') {
			return false
		}
	}
	return true
}

// WithRevocation wraps ks so that keys for which revoked reports true are
// returned with Revoked set. An error from revoked is a store outage.
func WithRevocation(ks KeyStore, revoked func(ctx context.Context, keyID string) (bool, error)) KeyStore {
	return KeyStoreFunc(func(ctx context.Context, id string) (Key, error) {
		k, err := ks.Key(ctx, id)
		if err != nil {
			return k, err
		}
		r, err := revoked(ctx, id)
		if err != nil {
			return Key{}, fmt.Errorf("signing: revocation check: %w", err)
		}
		k.Revoked = k.Revoked || r
		return k, nil
	})
}

var errNoSecret = errors.New("signing: hmac-sha256 key has a secret shorter than 32 bytes")
