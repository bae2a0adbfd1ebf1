package signing

import (
	"context"
	"sync"
	"time"

	"github.com/apiguard/apiguard/internal/replay"
	lru "github.com/hashicorp/golang-lru/v2/simplelru"
)

// ReplayStore keeps what the replay defence needs: single-use nonces and,
// per key, the newest created time accepted. Implementations must be safe
// for concurrent use; redisstore provides one for several instances. An
// error other than [ErrReplayFloor] is an outage of the store: the request
// is rejected with 503 (fail closed).
type ReplayStore interface {
	// UseNonce records nonce for keyID as used until exp. It returns true
	// when it was not used before; false when it was; and an error matching
	// [ErrReplayFloor] when created is too old for the store to know.
	UseNonce(ctx context.Context, keyID, nonce string, created, exp time.Time) (bool, error)
	// Advance checks created against keyID's high-water mark, the newest
	// created accepted so far: it returns false when created is older
	// than the mark minus slack, and otherwise raises the mark to created
	// (if newer) and returns true. The mark is kept for at least ttl.
	Advance(ctx context.Context, keyID string, created time.Time, slack, ttl time.Duration) (bool, error)
}

// MemoryReplayStore is the bounded in-memory [ReplayStore]. It holds at
// most its size of nonces and of keys' high-water marks, evicting the
// oldest (nonces a block at a time, at most a sixteenth of the size, so
// that recording one allocates nothing; about 57 bytes a nonce). An
// evicted nonce must not become usable again, so the store
// keeps a floor: the newest created time of a nonce evicted before its
// expiry, and at start the second the store was made in (a restart
// forgets every nonce). Signatures created at or below the floor are refused with
// [ErrReplayFloor] and logged as event=replay_floor. It is safe for
// concurrent use by multiple goroutines.
type MemoryReplayStore struct {
	nonces *replay.Cache
	window time.Duration

	mu    sync.Mutex
	marks *lru.LRU[string, *int64] // keyID -> created, unix nanoseconds (updated in place: one lookup a call)
}

// NewMemoryReplayStore returns a store of at most size nonces and size
// high-water marks, for signatures valid for window (the created window
// of the verifier, plus its clock skew), reading time from now.
func NewMemoryReplayStore(size int, window time.Duration, now func() time.Time) *MemoryReplayStore {
	if size <= 0 {
		size = 100_000
	}
	if now == nil {
		now = time.Now
	}
	marks, _ := lru.NewLRU[string, *int64](size, nil)
	// Nonces expire at created + window, so a floor on expiry is a floor
	// on created. created has whole seconds: everything created in a
	// second before the one the store starts in is refused.
	start := now().Truncate(time.Second).Add(-time.Nanosecond)
	return &MemoryReplayStore{nonces: replay.New(size, start.Add(window), now), window: window, marks: marks}
}

// UseNonce implements [ReplayStore].
func (s *MemoryReplayStore) UseNonce(_ context.Context, keyID, nonce string, created, exp time.Time) (bool, error) {
	// The expiry recorded is created + window whatever exp says, so that
	// the floor, which is kept on expiry, orders entries by created.
	switch s.nonces.UseScoped(keyID, nonce, time.Unix(0, created.UnixNano()+int64(s.window))) { // created.Add(s.window), without its monotonic bookkeeping
	case replay.Fresh:
		return true, nil
	case replay.BelowFloor, replay.Expired:
		return false, ErrReplayFloor
	}
	return false, nil
}

// Advance implements [ReplayStore].
func (s *MemoryReplayStore) Advance(_ context.Context, keyID string, created time.Time, slack, _ time.Duration) (bool, error) {
	c := created.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if mark, ok := s.marks.Get(keyID); ok {
		switch {
		case c < *mark-int64(slack):
			return false, nil
		case c > *mark:
			*mark = c
		}
		return true, nil
	}
	mark := new(int64) // once per key
	*mark = c
	s.marks.Add(keyID, mark)
	return true, nil
}

// Len returns the number of nonces held.
func (s *MemoryReplayStore) Len() int { return s.nonces.Len() }
