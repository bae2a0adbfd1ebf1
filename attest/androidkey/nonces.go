package androidkey

import (
	"context"
	"time"

	"github.com/apiguard/apiguard/internal/replay"
)

// memoryNonces is the bounded in-memory NonceStore, with the eviction
// floor of internal/replay: a challenge evicted before its expiry is
// never accepted again.
type memoryNonces struct{ c *replay.Cache }

func newMemoryNonces(size int, now func() time.Time) *memoryNonces {
	return &memoryNonces{c: replay.New(size, now(), now)}
}

func (m *memoryNonces) Use(_ context.Context, id string, exp time.Time) (bool, error) {
	return m.c.Use(id, exp) == replay.Fresh, nil
}
