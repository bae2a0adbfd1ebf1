package appattest

import (
	"context"
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

// memoryKeyStore is the bounded in-memory KeyStore, the default. When
// full it forgets the least recently used key, whose app must then attest
// again.
type memoryKeyStore struct {
	mu   sync.Mutex
	keys *simplelru.LRU[string, *keyEntry]
}

type keyEntry struct {
	record  []byte
	counter uint32
}

// newMemoryKeyStore returns a store of at most size keys (100000 when
// size <= 0).
func newMemoryKeyStore(size int) *memoryKeyStore {
	if size <= 0 {
		size = 100_000
	}
	l, _ := simplelru.NewLRU[string, *keyEntry](size, nil)
	return &memoryKeyStore{keys: l}
}

func (s *memoryKeyStore) Enroll(_ context.Context, keyID string, record []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys.Contains(keyID) {
		return false, nil
	}
	s.keys.Add(keyID, &keyEntry{record: append([]byte(nil), record...)})
	return true, nil
}

func (s *memoryKeyStore) Lookup(_ context.Context, keyID string) ([]byte, uint32, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys.Get(keyID)
	if !ok {
		return nil, 0, false, nil
	}
	return e.record, e.counter, true, nil
}

func (s *memoryKeyStore) AdvanceCounter(_ context.Context, keyID string, from, to uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys.Peek(keyID)
	if !ok || e.counter != from {
		return false, nil
	}
	e.counter = to
	return true, nil
}

func (s *memoryKeyStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys.Len()
}

// memoryChallengeStore is the bounded in-memory ChallengeStore, the
// default. When full it drops the oldest challenges, whose clients must
// ask again.
type memoryChallengeStore struct {
	mu  sync.Mutex
	now func() time.Time
	m   *simplelru.LRU[string, challengeEntry]
}

type challengeEntry struct {
	binding string
	exp     time.Time
}

// newMemoryChallengeStore returns a store of at most size challenges
// (100000 when size <= 0) on the clock now (nil: time.Now).
func newMemoryChallengeStore(size int, now func() time.Time) *memoryChallengeStore {
	if size <= 0 {
		size = 100_000
	}
	if now == nil {
		now = time.Now
	}
	l, _ := simplelru.NewLRU[string, challengeEntry](size, nil)
	return &memoryChallengeStore{now: now, m: l}
}

func (s *memoryChallengeStore) Put(_ context.Context, challenge, binding string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.Add(challenge, challengeEntry{binding: binding, exp: exp})
	return nil
}

func (s *memoryChallengeStore) Take(_ context.Context, challenge string) (string, bool, error) {
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

func (s *memoryChallengeStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Len()
}
