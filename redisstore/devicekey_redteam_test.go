package redisstore

import (
	"context"
	"testing"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

// TestDeviceKeyRotateOutOfARevokedKeyRefused: the phone is reported lost
// and its key revoked, while the thief's rotation request, signed by the
// old key and verified a moment before, is still on its way to Rotate
// (or the application rotates a key ID it never checked). Rotate must not
// turn a revoked or unknown key into a fresh valid one: it is refused,
// and the new ID is left unusable. A retry of a rotation that completed
// still succeeds.
func TestDeviceKeyRotateOutOfARevokedKeyRefused(t *testing.T) {
	s := newDeviceKeyStore(t, redistest.Shared(t).Addr())
	ctx := context.Background()
	v1, v2 := newECKey(t), newECKey(t)
	require.NoError(t, s.Put(ctx, "lost.v1", AlgECDSAP256SHA256, &v1.PublicKey))
	require.NoError(t, s.Revoke(ctx, "lost.v1")) // the support desk

	err := s.Rotate(ctx, "lost.v1", "lost.v2", AlgECDSAP256SHA256, &v2.PublicKey)
	require.ErrorIs(t, err, ErrNotEnrolled)
	k, _, err := s.Get(ctx, "lost.v2")
	require.NoError(t, err)
	require.Nil(t, k.PublicKey, "the thief's new key is not valid")
	require.True(t, k.Revoked)
	require.ErrorIs(t, s.Rotate(ctx, "lost.v1", "lost.v2", AlgECDSAP256SHA256, &v2.PublicKey), ErrKeyExists, "nor on a retry")

	// A key ID that never held a key rotates into nothing either.
	require.ErrorIs(t, s.Rotate(ctx, "never.v1", "never.v2", AlgECDSAP256SHA256, &v2.PublicKey), ErrNotEnrolled)
	k, _, err = s.Get(ctx, "never.v2")
	require.NoError(t, err)
	require.Nil(t, k.PublicKey)

	// A completed rotation, retried (its answer was lost), still succeeds;
	// a revocation of the old ID after it does not touch the new key.
	require.NoError(t, s.Put(ctx, "ok.v1", AlgECDSAP256SHA256, &v1.PublicKey))
	require.NoError(t, s.Rotate(ctx, "ok.v1", "ok.v2", AlgECDSAP256SHA256, &v2.PublicKey))
	require.NoError(t, s.Rotate(ctx, "ok.v1", "ok.v2", AlgECDSAP256SHA256, &v2.PublicKey))
	require.NoError(t, s.Revoke(ctx, "ok.v1"))
	require.NoError(t, s.Rotate(ctx, "ok.v1", "ok.v2", AlgECDSAP256SHA256, &v2.PublicKey))
	k, _, err = s.Get(ctx, "ok.v2")
	require.NoError(t, err)
	require.True(t, v2.PublicKey.Equal(k.PublicKey))
	// But the rotated-out ID does not rotate into a third key.
	v3 := newECKey(t)
	require.ErrorIs(t, s.Rotate(ctx, "ok.v1", "ok.v3", AlgECDSAP256SHA256, &v3.PublicKey), ErrNotEnrolled)
}
