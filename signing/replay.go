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
// most its size of nonces, and of keys' high-water marks (the least
// recently used mark goes first). It is safe for concurrent use by
// multiple goroutines.
//
// Nonces are kept per key ID, and no key's traffic costs another key:
//
//   - While the store has room, every nonce is kept until its signature
//     expires. When it is full, an expired nonce goes first, then one
//     that its key's floor (below) already covers; else the key holding
//     the most nonces, if it holds more than its share (size/64, and at
//     least 64), gives up its oldest; only when no key holds more than
//     its share does the oldest nonce of the store go. One key, however
//     many signatures it sends and however far ahead it dates them (up to
//     Config.FutureSkew), never pushes out the nonces of a key that holds
//     fewer.
//   - A nonce evicted before its expiry must not become usable again: it
//     raises a floor for its own key only, to its created time. That key's
//     signatures created at or before the floor are refused with
//     [ErrReplayFloor] (event=replay_floor), a 401 that tells the client
//     to sign again; other keys are unaffected. A key's floor is dropped
//     once it is older than Window.
//   - Overflow: at most size/16 keys (at least 16) have a floor at once.
//     When another key needs one, the lowest is folded into the store's
//     global floor, which refuses every key's signatures created at or
//     before it. The global floor is never above the lowest of more live
//     floors than that: lifting it takes that many distinct keys, each
//     with its own nonces evicted, never one key.
//   - At start the global floor is the second the store was made in: a
//     restart forgets every nonce, so signatures created before it are
//     refused with [ErrReplayFloor]. A client that signed just before the
//     restart is refused once, and is accepted when it signs again; a
//     client whose clock runs behind by less than Window is refused until
//     its clock passes the start, or at once accepted if it corrects its
//     clock from the 401's Date. Use a shared store (redisstore) where
//     that matters.
//
// Memory: about 75 bytes a nonce when keys send many each, up to about
// 140 when every nonce comes from a key of its own, allocated as it is
// used (see internal/replay); plus the marks.
type MemoryReplayStore struct {
	nonces *replay.Cache
	window time.Duration

	mu    sync.Mutex
	marks *lru.LRU[string, *int64] // keyID -> created, unix nanoseconds (updated in place: one lookup a call)
}

// NewMemoryReplayStore returns a store of at most size nonces (Default
// when size <= 0: 100000) and size high-water marks, for signatures valid
// for window (the verifier's Config.Window), reading time from now (nil:
// time.Now).
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
	switch s.nonces.UseScoped(keyID, nonce, created.Add(s.window)) {
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
