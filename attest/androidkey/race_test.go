package androidkey

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConcurrentReplayExactlyOnce: one chain sent by 32 goroutines at
// once is accepted exactly once; the others are replays.
func TestConcurrentReplayExactlyOnce(t *testing.T) {
	e := newTestEnv(t, nil)
	chain := e.attest(t, goodKey("c-1"))
	const n = 32
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := e.v.Verify(context.Background(), chain, []byte("c-1"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok, replays := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrReplay):
			replays++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 1, ok)
	require.Equal(t, n-1, replays)
}
