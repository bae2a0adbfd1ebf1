package attest

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// HistoryStore keeps each subject's last observation (where and when it
// was seen, which keys it used), with standard-library types only so that
// redisstore can implement it. Implementations must be safe for concurrent
// use.
type HistoryStore interface {
	// Swap stores record as subject's observation for ttl and returns the
	// previous one (nil when there was none), atomically.
	Swap(ctx context.Context, subject string, record []byte, ttl time.Duration) (previous []byte, err error)
}

// MemoryHistoryStore is the bounded in-memory [HistoryStore]; when full it
// forgets the least recently seen subject. It is safe for concurrent use by
// multiple goroutines.
type MemoryHistoryStore struct {
	mu  sync.Mutex
	now func() time.Time
	m   *simplelru.LRU[string, historyEntry]
}

type historyEntry struct {
	record []byte
	exp    time.Time
}

// NewMemoryHistoryStore returns a store of at most size subjects (Default
// when size <= 0: 100000) on the clock now (nil: time.Now).
func NewMemoryHistoryStore(size int, now func() time.Time) *MemoryHistoryStore {
	if size <= 0 {
		size = 100_000
	}
	if now == nil {
		now = time.Now
	}
	l, _ := simplelru.NewLRU[string, historyEntry](size, nil)
	return &MemoryHistoryStore{now: now, m: l}
}

// Swap implements [HistoryStore].
func (s *MemoryHistoryStore) Swap(_ context.Context, subject string, record []byte, ttl time.Duration) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var prev []byte
	if e, ok := s.m.Get(subject); ok && now.Before(e.exp) {
		prev = e.record
	}
	s.m.Add(subject, historyEntry{record: append([]byte(nil), record...), exp: now.Add(ttl)})
	return prev, nil
}

// Len returns the number of subjects held.
func (s *MemoryHistoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Len()
}
