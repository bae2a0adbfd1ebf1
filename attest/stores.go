package attest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// KeyStore keeps attested App Attest keys and their counters, with
// standard-library types only (redisstore implements it for several
// instances). Implementations must be safe for concurrent use.
type KeyStore interface {
	// Enroll stores the record of a newly attested key with counter 0. It
	// returns false when keyID is already enrolled.
	Enroll(ctx context.Context, keyID string, record []byte) (bool, error)
	// Lookup returns a key's record and counter; found is false for an
	// unknown key.
	Lookup(ctx context.Context, keyID string) (record []byte, counter uint32, found bool, err error)
	// AdvanceCounter sets the counter of keyID from from to to, atomically:
	// it returns false when the stored counter is not from.
	AdvanceCounter(ctx context.Context, keyID string, from, to uint32) (bool, error)
}

// ChallengeStore keeps issued challenges until they are used once or
// expire. Implementations must be safe for concurrent use.
type ChallengeStore interface {
	// Put records challenge, bound to binding (a key ID, a session, or
	// ""), until exp.
	Put(ctx context.Context, challenge, binding string, exp time.Time) error
	// Take removes challenge and returns its binding; ok is false when it
	// is unknown, used or expired.
	Take(ctx context.Context, challenge string) (binding string, ok bool, err error)
}

// scope returns the prefix of the store ids of one namespace: a digest of
// the purpose and the namespace, of fixed length (so that ids stay
// unambiguous whatever follows) and holding neither in the clear.
func scope(purpose, namespace string) string {
	sum := sha256.Sum256([]byte(purpose + "\x00" + namespace))
	return hex.EncodeToString(sum[:16]) + ":"
}

// MemoryKeyStore is the bounded in-memory [KeyStore]. When full it
// forgets the least recently used key, whose app must then attest again.
// It is safe for concurrent use by multiple goroutines.
type MemoryKeyStore struct {
	mu   sync.Mutex
	keys *simplelru.LRU[string, *keyEntry]
}

type keyEntry struct {
	record  []byte
	counter uint32
}

// NewMemoryKeyStore returns a store of at most size keys (Default when
// size <= 0: 100000).
func NewMemoryKeyStore(size int) *MemoryKeyStore {
	if size <= 0 {
		size = 100_000
	}
	l, _ := simplelru.NewLRU[string, *keyEntry](size, nil)
	return &MemoryKeyStore{keys: l}
}

// Enroll implements [KeyStore].
func (s *MemoryKeyStore) Enroll(_ context.Context, keyID string, record []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys.Contains(keyID) {
		return false, nil
	}
	s.keys.Add(keyID, &keyEntry{record: append([]byte(nil), record...)})
	return true, nil
}

// Lookup implements [KeyStore].
func (s *MemoryKeyStore) Lookup(_ context.Context, keyID string) ([]byte, uint32, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys.Get(keyID)
	if !ok {
		return nil, 0, false, nil
	}
	return e.record, e.counter, true, nil
}

// AdvanceCounter implements [KeyStore].
func (s *MemoryKeyStore) AdvanceCounter(_ context.Context, keyID string, from, to uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys.Peek(keyID)
	if !ok || e.counter != from {
		return false, nil
	}
	e.counter = to
	return true, nil
}

// Len returns the number of keys held.
func (s *MemoryKeyStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys.Len()
}

// MemoryChallengeStore is the bounded in-memory [ChallengeStore]. When
// full it drops the oldest challenges, whose clients must ask again. It is
// safe for concurrent use by multiple goroutines.
type MemoryChallengeStore struct {
	mu  sync.Mutex
	now func() time.Time
	m   *simplelru.LRU[string, challengeEntry]
}

type challengeEntry struct {
	binding string
	exp     time.Time
}

// NewMemoryChallengeStore returns a store of at most size challenges
// (Default when size <= 0: 100000) on the clock now (nil: time.Now).
func NewMemoryChallengeStore(size int, now func() time.Time) *MemoryChallengeStore {
	if size <= 0 {
		size = 100_000
	}
	if now == nil {
		now = time.Now
	}
	l, _ := simplelru.NewLRU[string, challengeEntry](size, nil)
	return &MemoryChallengeStore{now: now, m: l}
}

// Put implements [ChallengeStore].
func (s *MemoryChallengeStore) Put(_ context.Context, challenge, binding string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.Add(challenge, challengeEntry{binding: binding, exp: exp})
	return nil
}

// Take implements [ChallengeStore].
func (s *MemoryChallengeStore) Take(_ context.Context, challenge string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m.Peek(challenge)
	if !ok {
		return "", false, nil
	}
	s.m.Remove(challenge)
	if !s.now().Before(e.exp) {
		return "", false, nil
	}
	return e.binding, true, nil
}

// Len returns the number of challenges held.
func (s *MemoryChallengeStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Len()
}
