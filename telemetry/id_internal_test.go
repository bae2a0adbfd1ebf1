package telemetry

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBatchedRand(t *testing.T) {
	var r batchedRand
	seen := make(map[[16]byte]bool)
	// Enough reads to refill the batch several times.
	for range 3 * randBatch / 16 {
		var b [16]byte
		n, err := r.Read(b[:])
		require.NoError(t, err)
		require.Equal(t, 16, n)
		require.NotEqual(t, [16]byte{}, b, "never hands out zeroed (used) bytes")
		require.False(t, seen[b], "never hands out the same bytes twice")
		seen[b] = true
	}
	big := make([]byte, randBatch)
	n, err := r.Read(big)
	require.NoError(t, err)
	require.Equal(t, randBatch, n)
	require.False(t, bytes.Equal(big[:64], make([]byte, 64)), "a large read is filled too")
}
