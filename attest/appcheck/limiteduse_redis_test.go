package appcheck

import (
	"context"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestLimitedUseTokenReplayedAcrossInstancesOnRedis: two instances on
// one Redis, through redisstore.ReplayStore (which satisfies ReplayStore
// structurally): a limited-use token accepted by one is refused by the
// other. A test import only: appcheck itself does not import redisstore.
func TestLimitedUseTokenReplayedAcrossInstancesOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	is := newAppCheckIssuer(t)
	clock := time.Now().Truncate(time.Second) // Redis expires keys on its own, real, clock
	var store ReplayStore = redisstore.NewReplayStore(rdb, redisstore.Options{}).WithNamespace("appcheck")
	a := newLimited(t, is, &clock, func(c *Config) { c.Replay = store })
	b := newLimited(t, is, &clock, func(c *Config) { c.Replay = store })
	tok := is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"jti": "j-redis",
		"iat": clock.Unix(), "exp": clock.Add(5 * time.Minute).Unix()})
	ctx := context.Background()
	_, err := a.VerifyLimitedUse(ctx, tok)
	require.NoError(t, err)
	_, err = b.VerifyLimitedUse(ctx, tok)
	require.ErrorIs(t, err, ErrTokenReplayed)
	_, err = a.VerifyLimitedUse(ctx, tok)
	require.ErrorIs(t, err, ErrTokenReplayed)

	srv.Stop()
	tok2 := is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"jti": "j-redis-2",
		"iat": clock.Unix(), "exp": clock.Add(5 * time.Minute).Unix()})
	_, err = a.VerifyLimitedUse(ctx, tok2)
	require.ErrorIs(t, err, ErrStore, "Redis down: single use cannot be proved, the token is refused")
}
