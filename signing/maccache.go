package signing

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"hash/maphash"
	"sync"
)

// macSlots is the number of keyed HMAC states a Verifier keeps (about
// 700 B each).
const macSlots = 1024

// macCache keeps keyed HMAC-SHA256 states, so that a device that sends
// many requests does not have its key expanded into the inner and outer
// pads (two SHA-256 blocks and five allocations) on every one: a state is
// reset and reused. It is direct-mapped: a key ID has one slot, a key ID
// that maps to a busy or differently keyed slot replaces it or is
// computed without the cache. A state is used only for the exact key ID
// and secret it was made from, so a rotated secret is never MACed with
// the old one.
type macCache struct {
	seed  maphash.Seed
	slots [macSlots]macSlot
}

type macSlot struct {
	mu     sync.Mutex
	keyID  string
	secret []byte // a copy
	mac    hash.Hash
	sum    []byte // the last MAC computed
}

func newMACCache() *macCache { return &macCache{seed: maphash.MakeSeed()} }

// equal reports whether sig is the HMAC-SHA256 of msg under secret,
// comparing in constant time.
func (c *macCache) equal(keyID string, secret, msg, sig []byte) bool {
	s := &c.slots[maphash.String(c.seed, keyID)%macSlots]
	if !s.mu.TryLock() { // another request is using it: do not wait
		m := hmac.New(sha256.New, secret)
		m.Write(msg)
		return hmac.Equal(m.Sum(nil), sig)
	}
	defer s.mu.Unlock()
	s.prepare(keyID, secret)
	s.mac.Write(msg)
	s.sum = s.mac.Sum(s.sum[:0]) // into the slot's buffer: nothing allocated
	return hmac.Equal(s.sum, sig)
}

// prepare readies s.mac for keyID and secret: reset when it was made from
// them, made anew otherwise. Requires s.mu held.
func (s *macSlot) prepare(keyID string, secret []byte) {
	// bytes.Equal, not a constant-time comparison: both sides are the
	// server's own secret for this key ID (the slot's copy and the key
	// store's current one), and no input of the client's is compared.
	if s.mac != nil && s.keyID == keyID && bytes.Equal(s.secret, secret) {
		s.mac.Reset()
		return
	}
	clear(s.secret) // the slot's previous key
	s.keyID, s.secret = keyID, append([]byte(nil), secret...)
	s.mac = hmac.New(sha256.New, s.secret)
}
