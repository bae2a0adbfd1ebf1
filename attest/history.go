package attest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// MaxHistoryKeys is how many attested keys a subject's history holds: the
// most recently used. Config.MaxKeysPerSubject must be below it.
const MaxHistoryKeys = 16

// HistoryStore keeps each subject's history, with standard-library types
// only so that redisstore can implement it: the last located observation
// (where and when), and the attested keys the subject used. Each method is
// one atomic step, so that concurrent requests of one subject never lose
// each other's updates. Implementations must be safe for concurrent use.
type HistoryStore interface {
	// Swap stores record as subject's last located observation for ttl
	// and returns the previous one (nil when there was none), atomically.
	Swap(ctx context.Context, subject string, record []byte, ttl time.Duration) (previous []byte, err error)
	// AddKey records that subject used keyID at at, forgets the keys it
	// has not used within ttl before at, keeps the MaxHistoryKeys most
	// recently used, and returns how many keys it then holds, atomically:
	// of n concurrent calls with distinct keys on a fresh subject, the
	// counts returned are 1, 2, … n (up to MaxHistoryKeys), each once.
	AddKey(ctx context.Context, subject, keyID string, at time.Time, ttl time.Duration) (keys int, err error)
}

// memoryHistoryStore is the bounded in-memory HistoryStore, the default;
// when full it forgets the least recently seen subject.
type memoryHistoryStore struct {
	mu  sync.Mutex
	now func() time.Time
	m   *simplelru.LRU[string, *historyEntry]
}

type historyEntry struct {
	record []byte
	exp    time.Time
	keys   []keyUse // at most MaxHistoryKeys
}

type keyUse struct {
	id string
	at time.Time
}

// newMemoryHistoryStore returns a store of at most size subjects (100000
// when size <= 0) on the clock now (nil: time.Now).
func newMemoryHistoryStore(size int, now func() time.Time) *memoryHistoryStore {
	if size <= 0 {
		size = 100_000
	}
	if now == nil {
		now = time.Now
	}
	l, _ := simplelru.NewLRU[string, *historyEntry](size, nil)
	return &memoryHistoryStore{now: now, m: l}
}

func (s *memoryHistoryStore) Swap(_ context.Context, subject string, record []byte, ttl time.Duration) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e, ok := s.m.Get(subject)
	if !ok {
		e = &historyEntry{}
		s.m.Add(subject, e)
	}
	var prev []byte
	if e.record != nil && now.Before(e.exp) {
		prev = e.record
	}
	e.record, e.exp = append([]byte(nil), record...), now.Add(ttl)
	return prev, nil
}

func (s *memoryHistoryStore) AddKey(_ context.Context, subject, keyID string, at time.Time, ttl time.Duration) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m.Get(subject)
	if !ok {
		e = &historyEntry{}
		s.m.Add(subject, e)
	}
	cutoff := at.Add(-ttl)
	kept := e.keys[:0]
	found := false
	for _, k := range e.keys {
		if k.id == keyID {
			k.at, found = maxTime(k.at, at), true
		}
		if k.at.After(cutoff) {
			kept = append(kept, k)
		}
	}
	if !found && at.After(cutoff) {
		kept = append(kept, keyUse{id: keyID, at: at})
	}
	for len(kept) > MaxHistoryKeys { // drop the least recently used, the oldest entry on a tie
		oldest := 0
		for i, k := range kept {
			if k.at.Before(kept[oldest].at) {
				oldest = i
			}
		}
		kept = slices.Delete(kept, oldest, oldest+1)
	}
	e.keys = kept
	return len(kept), nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (s *memoryHistoryStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Len()
}
