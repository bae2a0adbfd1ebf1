package redisstore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Device-key algorithms (RFC 9421 §6.2 registry names), the only ones a
// DeviceKeyStore holds: public keys, never a shared secret.
const (
	// AlgECDSAP256SHA256 is an ECDSA P-256 key (Secure Enclave, Android
	// Keystore): signing.AlgECDSAP256SHA256.
	AlgECDSAP256SHA256 = "ecdsa-p256-sha256" // gitleaks:allow -- an algorithm name
	// AlgEd25519 is an Ed25519 key: signing.AlgEd25519. (gitleaks:allow)
	AlgEd25519 = "ed25519"
)

// ErrKeyExists is the error of [DeviceKeyStore.Put] for a key ID that
// already holds another key or has been revoked. Key IDs are never
// reused: a second enrolment cannot replace a device's key, and a revoked
// ID stays revoked.
var ErrKeyExists = errors.New("redisstore: device key ID already taken")

// ErrNotEnrolled is the error of [DeviceKeyStore.Rotate] whose old key ID
// holds no key or was revoked (other than by this same rotation): a
// revoked key is never rotated into a valid one.
var ErrNotEnrolled = errors.New("redisstore: device key ID not enrolled, or revoked")

// DeviceKey is an enrolled device's public key, plain data.
type DeviceKey struct {
	// Algorithm is AlgECDSAP256SHA256 or AlgEd25519; empty when revoked.
	Algorithm string
	// PublicKey is an *ecdsa.PublicKey on P-256 or an ed25519.PublicKey;
	// nil when revoked.
	PublicKey crypto.PublicKey
	// Revoked is true once [DeviceKeyStore.Revoke] was called for the ID.
	Revoked bool
}

// DeviceKeyStore keeps enrolled device public keys in Redis, for
// signing's KeyStore, which the application adapts in a few lines (see
// the example). Each key ID is one hash under the "dk" purpose holding
// the algorithm, the key as SPKI DER (x509.MarshalPKIXPublicKey) and, once
// revoked, a revoked flag (and, when [DeviceKeyStore.Rotate] revoked it,
// the new key ID); no secret is ever stored.
//
// Revocation is immediate on every instance: Get reads Redis on every
// call, and nothing is cached, so a key revoked by one instance is
// refused by all from the next lookup on. That costs one round trip
// (HMGET) per verified request; a cache would have to ask Redis whether
// the key was revoked on every hit anyway. A store that cannot answer
// fails the lookup with [ErrUnavailable] (signing answers 503): it never
// answers "valid" without Redis.
//
// Every call touches one key, so the store is Redis Cluster safe; it is
// safe for concurrent use. Keys do not expire: a revoked ID stays as a
// tombstone of about a hundred bytes.
type DeviceKeyStore struct {
	rdb  redis.UniversalClient
	opts Options
}

// NewDeviceKeyStore returns a DeviceKeyStore on rdb. It panics if rdb is
// nil.
func NewDeviceKeyStore(rdb redis.UniversalClient, opts Options) *DeviceKeyStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	opts.defaults()
	return &DeviceKeyStore{rdb: rdb, opts: opts}
}

func (s *DeviceKeyStore) key(id string) string { return s.opts.key(purposeDeviceKey, id) }

// putScript enrols ARGV[1] (alg) and ARGV[2] (SPKI DER) unless the key
// exists: it returns 1 when enrolled or already enrolled with exactly
// this key (a retried enrolment), 0 when the ID holds another key or is
// revoked.
var putScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  local v = redis.call('HMGET', KEYS[1], 'alg', 'spki', 'revoked')
  if v[3] == false and v[1] == ARGV[1] and v[2] == ARGV[2] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'alg', ARGV[1], 'spki', ARGV[2])
return 1
`)

// Put enrols pub under keyID with algorithm alg: AlgECDSAP256SHA256 with
// an *ecdsa.PublicKey on P-256, or AlgEd25519 with an ed25519.PublicKey.
// Any other pairing, an HMAC secret among them, is an error, and so is an
// empty keyID. Putting the same key again is a no-op, so an enrolment can
// be retried; an ID that holds another key or was revoked is
// [ErrKeyExists].
func (s *DeviceKeyStore) Put(ctx context.Context, keyID, alg string, pub crypto.PublicKey) error {
	if keyID == "" {
		return errors.New("redisstore: DeviceKeyStore.Put: empty key ID")
	}
	if err := checkDeviceKey(alg, pub); err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("redisstore: DeviceKeyStore.Put: %w", err)
	}
	ok, err := call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return putScript.Run(ctx, s.rdb, []string{s.key(keyID)}, alg, der).Int()
	})
	if err != nil {
		return err
	}
	if ok != 1 {
		return ErrKeyExists
	}
	return nil
}

// Get returns the key enrolled or revoked under keyID; found is false
// when there is none. A revoked ID is returned as DeviceKey{Revoked:
// true}, whatever else its record holds. A stored record that does not
// parse is an error wrapping [ErrUnavailable], never a key.
func (s *DeviceKeyStore) Get(ctx context.Context, keyID string) (k DeviceKey, found bool, err error) {
	v, err := call(ctx, &s.opts, func(ctx context.Context) ([]any, error) {
		return s.rdb.HMGet(ctx, s.key(keyID), "alg", "spki", "revoked").Result()
	})
	if err != nil {
		return DeviceKey{}, false, err
	}
	if _, revoked := v[2].(string); revoked {
		return DeviceKey{Revoked: true}, true, nil
	}
	alg, hasAlg := v[0].(string)
	der, hasDER := v[1].(string)
	switch {
	case !hasAlg && !hasDER:
		return DeviceKey{}, false, nil
	case !hasAlg || !hasDER:
		return DeviceKey{}, false, fmt.Errorf("%w: malformed device key record", ErrUnavailable)
	}
	pub, err := x509.ParsePKIXPublicKey([]byte(der))
	if err == nil {
		err = checkDeviceKey(alg, pub)
	}
	if err != nil {
		return DeviceKey{}, false, fmt.Errorf("%w: malformed device key record: %v", ErrUnavailable, err)
	}
	return DeviceKey{Algorithm: alg, PublicKey: pub}, true, nil
}

// Revoke revokes keyID at once for every instance: its next lookup
// anywhere returns it with Revoked set. It is one HSET, idempotent, and
// revoking an ID with no key yet leaves a revoked tombstone, so that an
// enrolment racing the revocation cannot bring the ID back.
func (s *DeviceKeyStore) Revoke(ctx context.Context, keyID string) error {
	if keyID == "" {
		return errors.New("redisstore: DeviceKeyStore.Revoke: empty key ID")
	}
	return s.opts.do(ctx, func(ctx context.Context) error {
		return s.rdb.HSet(ctx, s.key(keyID), "revoked", "1").Err()
	})
}

// rotateOutScript revokes KEYS[1] as rotated to ARGV[1]: it returns 1
// when the key was valid (now revoked, noting ARGV[1]) or was already
// rotated to ARGV[1] (a retry), 0 when it holds no key or was revoked
// otherwise.
var rotateOutScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'alg', 'revoked', 'rotated')
if v[2] ~= false then
  if v[3] == ARGV[1] then return 1 end
  return 0
end
if v[1] == false then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1', 'rotated', ARGV[1])
return 1
`)

// Rotate replaces the device key oldID with pub under newID: Put of the
// new key, then the old one revoked if it is still valid. The two are
// separate calls (two keys, which may live on different Cluster nodes),
// in the order that never locks a device out: when Rotate fails, the old
// key may still be valid beside the new one, and calling Rotate again
// with the same arguments completes it. An oldID that holds no key, or
// that was revoked (a lost phone, even while its rotation was on its
// way), is [ErrNotEnrolled], and newID is revoked: a revoked key never
// rotates into a valid one.
func (s *DeviceKeyStore) Rotate(ctx context.Context, oldID, newID, alg string, pub crypto.PublicKey) error {
	if oldID == newID {
		return errors.New("redisstore: DeviceKeyStore.Rotate: the new key ID must differ from the old")
	}
	if err := s.Put(ctx, newID, alg, pub); err != nil {
		return err
	}
	ok, err := call(ctx, &s.opts, func(ctx context.Context) (int, error) {
		return rotateOutScript.Run(ctx, s.rdb, []string{s.key(oldID)}, newID).Int()
	})
	if err != nil {
		return err
	}
	if ok != 1 {
		if err := s.Revoke(ctx, newID); err != nil {
			return fmt.Errorf("%w (and the new key ID could not be revoked: %w)", ErrNotEnrolled, err)
		}
		return ErrNotEnrolled
	}
	return nil
}

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready].
func (s *DeviceKeyStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }

// checkDeviceKey reports whether pub is a public key of algorithm alg.
func checkDeviceKey(alg string, pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if alg == AlgECDSAP256SHA256 && k != nil && k.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PublicKey:
		if alg == AlgEd25519 && len(k) == ed25519.PublicKeySize {
			return nil
		}
	}
	return fmt.Errorf("redisstore: a %T is not a %q device public key (only %s on P-256 and %s public keys are stored)", pub, alg, AlgECDSAP256SHA256, AlgEd25519)
}
