package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// replayUses returns the two ways an id is recorded (a signing nonce and
// a DPoP jti), each with the Redis key it is recorded under.
func replayUses(s *ReplayStore, exp time.Time) []struct {
	name string
	use  func() (bool, error)
	key  string
} {
	ctx := context.Background()
	return []struct {
		name string
		use  func() (bool, error)
		key  string
	}{
		{"nonce", func() (bool, error) { return s.UseNonce(ctx, "device-a", "n", exp, exp) }, s.opts.key(purposeNonce, s.ns, "device-a", "n")},
		{"jti", func() (bool, error) { return s.Use(ctx, "jti", exp) }, s.opts.key(purposeReplay, s.ns, "jti")},
	}
}

// requireOutlives requires the key to expire, on the Redis server's
// clock, no sooner than exp plus skew.
func requireOutlives(t *testing.T, c redis.UniversalClient, key string, exp time.Time, skew time.Duration, msg string) {
	t.Helper()
	at, err := c.Do(context.Background(), "PEXPIRETIME", key).Int64()
	require.NoError(t, err)
	require.Positive(t, at, "the key exists and expires")
	require.False(t, time.UnixMilli(at).Before(exp.Add(skew)), "%s: the key expires at %v, before the id's expiry %v plus %v", msg, time.UnixMilli(at), exp, skew)
}

// TestNonceTTLTruncated (nonce_ttl_truncated): the key of a nonce must
// not expire in Redis before the nonce does. The client truncated a TTL
// to whole milliseconds, so a TTL of 1.9 ms was sent as 1 ms: the nonce
// was free again up to a millisecond before its signature expired, and
// a capture replayed in that last millisecond was accepted. The expiry
// is now absolute on the server's clock, rounded up.
func TestNonceTTLTruncated(t *testing.T) {
	srv := redistest.Shared(t)
	c := newClient(t, srv.Addr())
	for _, frac := range []time.Duration{1900 * time.Microsecond, 1, 999 * time.Microsecond, 1001} {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		exp := time.Now().Add(time.Minute).Truncate(time.Millisecond).Add(frac)
		s := NewReplayStore(c, Options{})
		for _, u := range replayUses(s, exp) {
			ok, err := u.use()
			require.NoError(t, err)
			require.True(t, ok, u.name)
			requireOutlives(t, c, u.key, exp, s.opts.MaxClockSkew, u.name)
		}
	}
}

// TestRedTeamClockAheadShortensNonce (clock_ahead_shortens_nonce): an
// instance whose clock ran d ahead stored nonces and jti values with a
// TTL of exp minus its own now, so their keys expired d early, and an
// instance with a correct clock then accepted a replay in that gap. The
// key's expiry is absolute on the Redis server's clock, whichever
// instance stored it, and outlives the id by MaxClockSkew, so that an
// instance whose clock lags by up to that much still finds it.
func TestRedTeamClockAheadShortensNonce(t *testing.T) {
	srv := redistest.Shared(t)
	c := newClient(t, srv.Addr())
	for _, ahead := range []time.Duration{30 * time.Second, 59 * time.Second, 500 * time.Millisecond} {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		fast := NewReplayStore(c, Options{Now: func() time.Time { return time.Now().Add(ahead) }})
		honest := NewReplayStore(newClient(t, srv.Addr()), Options{})
		exp := time.Now().Add(time.Minute)
		for i, u := range replayUses(fast, exp) {
			ok, err := u.use()
			require.NoError(t, err)
			require.True(t, ok, u.name)
			requireOutlives(t, c, u.key, exp, time.Second, "clock_ahead_shortens_nonce")
			ok, err = replayUses(honest, exp)[i].use()
			require.NoError(t, err)
			require.False(t, ok, "%s: a replay on the honest instance", u.name)
		}
	}
}

// TestReplayExpiredOnServerClock: an instance whose clock lags the
// server's by more than MaxClockSkew asks to record an id whose expiry
// (with the margin) has passed on the server's clock. Redis would take an
// expiry in the past and drop the key at once; the store answers "used",
// never "fresh" for an id it did not record.
func TestReplayExpiredOnServerClock(t *testing.T) {
	srv := redistest.Shared(t)
	c := newClient(t, srv.Addr())
	slow := NewReplayStore(c, Options{Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	exp := time.Now().Add(-10 * time.Second)
	for _, u := range replayUses(slow, exp) {
		for range 2 {
			ok, err := u.use()
			require.NoError(t, err)
			require.False(t, ok, "%s: fresh without being recorded", u.name)
		}
	}
}
