package androidkey

import (
	"context"
	"log/slog"
	"testing"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestRefusalLogged: a refusal is logged as attestation_failed with the
// sentinel's reason, and the log holds neither the challenge nor the
// chain.
func TestRefusalLogged(t *testing.T) {
	var sink testkit.LogSink
	e := newTestEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&sink, nil)) })
	k := goodKey("secret-challenge-4711")
	k.Unlocked = true
	_, err := e.v.Verify(context.Background(), e.attest(t, k), []byte("secret-challenge-4711"))
	require.ErrorIs(t, err, ErrBootState)
	out := sink.String()
	require.Contains(t, out, `"event":"attestation_failed"`)
	require.Contains(t, out, `"reason":"boot_state"`)
	require.Contains(t, out, `"provider":"android_key"`)
	require.NotContains(t, out, "secret-challenge")
}
