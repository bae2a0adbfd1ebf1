package signing

import (
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
	secret []byte // a copy, compared in constant time
	mac    hash.Hash
}

func newMACCache() *macCache { return &macCache{seed: maphash.MakeSeed()} }

// sum appends the HMAC-SHA256 of msg under secret to out.
func (c *macCache) sum(keyID string, secret, msg, out []byte) []byte {
	s := &c.slots[maphash.String(c.seed, keyID)%macSlots]
	if !s.mu.TryLock() { // another request is using it: do not wait
		m := hmac.New(sha256.New, secret)
		m.Write(msg)
		return m.Sum(out)
	}
	defer s.mu.Unlock()
	if s.mac != nil && s.keyID == keyID && hmac.Equal(s.secret, secret) {
		s.mac.Reset()
	} else {
		clear(s.secret) // the slot's previous key
		s.keyID, s.secret = keyID, append([]byte(nil), secret...)
		s.mac = hmac.New(sha256.New, s.secret)
	}
	s.mac.Write(msg)
	return s.mac.Sum(out)
}
