package auth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// TestDPoPFutureIatFloodsFloor is future_created_floods_floor for DPoP:
// one token holder sends ReplayCacheSize proofs, and ten times that, with
// its own key, dated ahead, while another holder's proofs, all with the
// server's unmoving clock as iat, keep passing, before, during and after
// the flood. The flood raises only its own key's floor: a replay of its
// own first proof is still refused.
func TestDPoPFutureIatFloodsFloor(t *testing.T) {
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	victimKey := newSigner(t, jwa.ES256, "victim")
	attackerKey := newSigner(t, jwa.ES256, "attacker")
	for _, tt := range []struct {
		name  string
		times int
	}{
		{"cache_size", 1},
		{"ten_times_cache_size", 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const size = 64
			clk := testkit.NewClock(t0)
			v, _ := newTestVerifier(t, clk, func(c *Config) {
				c.DPoP, c.DPoPURL, c.ReplayCacheSize = DPoPRequired, apiBase, size
			}, issuerKey)
			victimTok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, victimKey)}, "sub": "victim"})
			attackerTok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, attackerKey)}, "sub": "attacker"})
			send := func(k *signer, tok, jti string, iat time.Time) int {
				r := dpopRequest("GET", "/orders", tok, proof(t, k, "GET", apiBase+"/orders", tok, iat, map[string]any{"jti": jti}))
				rec, _, _ := call(v.Handler, r)
				return rec.Code
			}
			now := clk.Now()
			ahead := now.Add(5 * time.Second) // within any iat bound ahead
			require.Equal(t, 204, send(attackerKey, attackerTok, "a-first", ahead))
			require.Equal(t, 204, send(victimKey, victimTok, "v-before", now))
			for i := range tt.times * size {
				send(attackerKey, attackerTok, fmt.Sprint("a-", i), ahead)
				if i%16 == 0 {
					require.Equal(t, 204, send(victimKey, victimTok, fmt.Sprint("v-", i), now), "victim proof %d refused during the flood", i)
				}
			}
			require.Equal(t, 204, send(victimKey, victimTok, "v-after", now), "victim proof refused after the flood")
			require.Equal(t, 401, send(victimKey, victimTok, "v-before", now), "a replay of the victim's is still refused")
			require.Equal(t, 401, send(attackerKey, attackerTok, "a-first", ahead), "a replay of the flood's first proof is still refused")
		})
	}
}

// TestMemoryReplayStoreScopes: ids recorded per proof key are apart from
// those of other keys and from ids given to Use.
func TestMemoryReplayStoreScopes(t *testing.T) {
	clk := testkit.NewClock(t0)
	s := NewMemoryReplayStore(64, clk.Now)
	clk.Advance(time.Minute)
	exp := clk.Now().Add(time.Minute)
	require.True(t, s.useScoped("jkt-1", "jti", exp))
	require.False(t, s.useScoped("jkt-1", "jti", exp), "replay under the same key")
	require.True(t, s.useScoped("jkt-2", "jti", exp), "the same jti under another key")
	ok, err := s.Use(context.Background(), "jti", exp)
	require.NoError(t, err)
	require.True(t, ok, "an id without a key is apart")
	d := &dpopChecker{store: s}
	ok, err = d.useJTI(context.Background(), "jkt-1", "jti", exp)
	require.NoError(t, err)
	require.False(t, ok, "the Verifier's path is the scoped one")
	other := &dpopChecker{store: recordingStore{}}
	_, err = other.useJTI(context.Background(), "jkt-1", "a-raw-jti", exp)
	require.NoError(t, err)
}

// recordingStore is a ReplayStore that checks the ids it is given hold
// no raw jti.
type recordingStore struct{}

func (recordingStore) Use(_ context.Context, id string, _ time.Time) (bool, error) {
	if len(id) != len("dpop:")+64 || id[:5] != "dpop:" {
		return false, fmt.Errorf("unexpected id %q", id)
	}
	return true, nil
}
