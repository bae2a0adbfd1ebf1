package redisstore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sync"
)

// Purposes: the tag that names what a key holds, the part of a key's name
// that stays readable. A tag is lower-case letters, digits and '-' (never
// ':'), so the tag ends at the first ':' and keys of different purposes
// cannot collide whatever their digests.
const (
	purposeReplay    = "replay"  // ReplayStore.Use: single-use ids (DPoP proof jti)
	purposeNonce     = "nonce"   // ReplayStore.UseNonce: signing nonces, per key ID
	purposeMark      = "mark"    // ReplayStore.Advance: high-water mark of created, per key ID
	purposeBucket    = "rl"      // LimitStore: GCRA buckets
	purposeAttestKey = "aa-key"  // AttestStore: enrolled App Attest keys and counters
	purposeChallenge = "aa-ch"   // AttestStore: issued challenges
	purposeHistory   = "aa-hist" // AttestStore: subjects' risk history
	purposeInFlight  = "cc"      // ConcurrencyStore: requests in flight
	purposeDeviceKey = "dk"      // DeviceKeyStore: enrolled device public keys

	purposeIntrospection     = "intro"      // IntrospectionCache: introspection results
	purposeIntrospectionLock = "intro-lock" // IntrospectionCache: one caller per token
	purposeRevoke            = "rv"         // RevocationStore: the durable set of revocations, and its channel
)

// keyHashes pools the digests of one Options value (SHA-256 or its
// HMAC), reset before each use.
type keyHashes struct{ pool sync.Pool }

func newKeyHashes(secret []byte) *keyHashes {
	h := &keyHashes{}
	if len(secret) > 0 {
		secret = append([]byte(nil), secret...)
		h.pool.New = func() any { return hmac.New(sha256.New, secret) }
	} else {
		h.pool.New = func() any { return sha256.New() }
	}
	return h
}

// key returns the Redis key of purpose (one of the purpose constants) for
// the identifying parts, as
//
//	Prefix + purpose + ":" + hex(digest)
//
// where digest is SHA-256, or HMAC-SHA-256 under Options.KeySecret, of the
// purpose and every part, each preceded by its length (a uvarint): the
// encoding is unambiguous, so ("ab", "c") and ("a", "bc") differ, and so
// do ("a") and ("a", ""). No part ever appears in the key in the clear:
// subjects, tokens, jti values, nonces, challenges and device or key IDs
// stay out of key names (and out of MONITOR, SLOWLOG and replicas' key
// lists), and a client-chosen value of any length makes a key of fixed
// length. Namespaces (a verifier, an issuer, a limiter and its rule) are
// leading parts: key(purposeBucket, limiter, rule, kind, value).
//
// Without a KeySecret, whoever reads the key names can confirm a guess
// (hash "user-42" and look for the key); with one, they cannot. It panics
// if purpose is not a valid tag: a programming error that every test of
// the calling store finds.
func (o *Options) key(purpose string, parts ...string) string {
	if !validPurpose(purpose) {
		panic("redisstore: invalid key purpose " + purpose)
	}
	h := o.hashes.pool.Get().(hash.Hash)
	h.Reset()
	var n [binary.MaxVarintLen64]byte
	write := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	write(purpose)
	for _, p := range parts {
		write(p)
	}
	var sum [sha256.Size]byte
	b := make([]byte, 0, len(o.Prefix)+len(purpose)+1+hex.EncodedLen(sha256.Size))
	b = append(b, o.Prefix...)
	b = append(b, purpose...)
	b = append(b, ':')
	b = hex.AppendEncode(b, h.Sum(sum[:0]))
	o.hashes.pool.Put(h)
	return string(b)
}

func validPurpose(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
