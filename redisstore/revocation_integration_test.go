package redisstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/revoke"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

var _ revoke.Store = (*redisstore.RevocationStore)(nil)

const revIssuer = "https://idp.example/"

// revInstance is one API instance: its own Redis client, RevocationStore,
// revoke.List and auth.Verifier.
type revInstance struct {
	list *revoke.List
	v    *auth.Verifier
}

type revIssuerKey struct {
	priv *ecdsa.PrivateKey
	set  jwk.Set
}

func newRevIssuerKey(t *testing.T) *revIssuerKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub, err := jwk.FromRaw(&k.PublicKey)
	require.NoError(t, err)
	require.NoError(t, pub.Set(jwk.KeyIDKey, "k1"))
	set := jwk.NewSet()
	require.NoError(t, set.AddKey(pub))
	return &revIssuerKey{priv: k, set: set}
}

func (k *revIssuerKey) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{"iss": revIssuer, "aud": "api", "sub": "u", "iat": now.Add(-time.Second).Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for n, v := range claims {
		c[n] = v
	}
	return sign(t, k.priv, map[string]any{"typ": "at+jwt", "kid": "k1"}, c)
}

func newRevInstance(t *testing.T, addr string, key *revIssuerKey, maxEntries int) *revInstance {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := redisstore.NewRevocationStore(rdb, redisstore.Options{Timeout: testTimeout}, maxEntries)
	list, err := revoke.New(revoke.Config{Store: store, MaxEntries: maxEntries, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = list.Close() })
	v, err := auth.New(auth.Config{
		Issuers:     []auth.Issuer{{Issuer: revIssuer, Audience: []string{"api"}, Keys: key.set}},
		Revocations: list, Logger: quiet,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	waitReady(t, list)
	return &revInstance{list: list, v: v}
}

func waitReady(t *testing.T, l *revoke.List) {
	t.Helper()
	require.Eventually(t, func() bool { return l.Ready(context.Background()) == nil }, 15*time.Second, 5*time.Millisecond, "the list read the durable set")
}

// waitRefused spins until inst refuses tok (its verified-token cache
// holds it) and reports whether it did within the deadline.
func waitRefused(inst *revInstance, tok string, deadline time.Time) bool {
	for {
		_, err := inst.v.VerifyToken(context.Background(), tok)
		if err != nil {
			return errors.Is(err, auth.ErrRevoked)
		}
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
}

// TestRevocationReachesEveryInstance: four instances, each with its own
// Redis connection; a revocation made on one is refused by all four,
// tokens they had verified and cached included. The time from Revoke
// returning to the last instance refusing is measured and logged (no
// timing assert).
func TestRevocationReachesEveryInstance(t *testing.T) {
	srv := redistest.Shared(t)
	key := newRevIssuerKey(t)
	insts := make([]*revInstance, 4)
	for i := range insts {
		insts[i] = newRevInstance(t, srv.Addr(), key, 0)
	}
	const n = 200
	lat := make([]time.Duration, 0, n)  // from Revoke returning
	full := make([]time.Duration, 0, n) // from Revoke being called
	for i := range n {
		var rev revoke.Revocation
		var tok string
		switch i % 3 {
		case 0:
			tok = key.token(t, map[string]any{"sub": fmt.Sprint("user-", i)})
			rev = revoke.Revocation{Issuer: revIssuer, Subject: fmt.Sprint("user-", i)}
		case 1:
			tok = key.token(t, map[string]any{"sid": fmt.Sprint("sess-", i)})
			rev = revoke.Revocation{Issuer: revIssuer, SessionID: fmt.Sprint("sess-", i)}
		default:
			tok = key.token(t, map[string]any{"jti": fmt.Sprint("tok-", i)})
			rev = revoke.Revocation{Issuer: revIssuer, TokenID: fmt.Sprint("tok-", i)}
		}
		for _, in := range insts {
			_, err := in.v.VerifyToken(t.Context(), tok)
			require.NoError(t, err, "accepted, and cached, before the revocation")
		}
		called := time.Now()
		require.NoError(t, insts[i%4].list.Revoke(t.Context(), rev))
		returned := time.Now()
		deadline := returned.Add(10 * time.Second)
		for j, in := range insts {
			require.True(t, waitRefused(in, tok, deadline), "instance %d still accepts revocation %d", j, i)
		}
		end := time.Now()
		lat = append(lat, end.Sub(returned))
		full = append(full, end.Sub(called))
	}
	slices.Sort(lat)
	slices.Sort(full)
	t.Logf("last of 4 instances refusing, %d revocations, from Revoke returning: p50 %s, p99 %s, max %s; from Revoke called: p50 %s, p99 %s, max %s",
		n, lat[n/2], lat[n*99/100], lat[n-1], full[n/2], full[n*99/100], full[n-1])
	for j, in := range insts {
		require.Equal(t, n, in.list.Stats().Entries, "instance %d", j)
	}
}

// TestRestartMissingPubSubMessageStillRefuses: an instance that was not
// running when a revocation was published reads it from the durable set
// before it reports ready.
func TestRestartMissingPubSubMessageStillRefuses(t *testing.T) {
	srv := redistest.Shared(t)
	key := newRevIssuerKey(t)
	a := newRevInstance(t, srv.Addr(), key, 0)
	tok := key.token(t, map[string]any{"sub": "stolen-phone"})
	require.NoError(t, a.list.Revoke(t.Context(), revoke.Revocation{Issuer: revIssuer, Subject: "stolen-phone"}))
	b := newRevInstance(t, srv.Addr(), key, 0) // started after the message
	_, err := b.v.VerifyToken(t.Context(), tok)
	require.ErrorIs(t, err, auth.ErrRevoked)
	require.Equal(t, uint64(1), b.list.Stats().Syncs)
}

// TestRevocationStoreOutage: with Redis down, every instance keeps
// refusing what it holds and reports not ready, Revoke holds the
// revocation locally and returns ErrStore; when Redis returns, the
// instances resubscribe and a retried revocation reaches all.
func TestRevocationStoreOutage(t *testing.T) {
	srv := redistest.Start(t)
	key := newRevIssuerKey(t)
	a := newRevInstance(t, srv.Addr(), key, 0)
	b := newRevInstance(t, srv.Addr(), key, 0)
	tok1 := key.token(t, map[string]any{"jti": "t1"})
	tok2 := key.token(t, map[string]any{"jti": "t2"})
	require.NoError(t, a.list.Revoke(t.Context(), revoke.Revocation{Issuer: revIssuer, TokenID: "t1"}))
	require.True(t, waitRefused(b, tok1, time.Now().Add(10*time.Second)))
	_, err := b.v.VerifyToken(t.Context(), tok2)
	require.NoError(t, err)

	srv.Stop()
	for _, in := range []*revInstance{a, b} {
		require.Eventually(t, func() bool { return errors.Is(in.list.Ready(t.Context()), revoke.ErrNotSynced) }, 15*time.Second, 10*time.Millisecond)
		_, err := in.v.VerifyToken(t.Context(), tok1)
		require.ErrorIs(t, err, auth.ErrRevoked, "the local copy keeps refusing")
	}
	err = a.list.Revoke(t.Context(), revoke.Revocation{Issuer: revIssuer, TokenID: "t2"})
	require.ErrorIs(t, err, revoke.ErrStore)
	require.ErrorIs(t, err, redisstore.ErrUnavailable)
	_, err = a.v.VerifyToken(t.Context(), tok2)
	require.ErrorIs(t, err, auth.ErrRevoked, "held on the instance that made it")
	_, err = b.v.VerifyToken(t.Context(), tok2)
	require.NoError(t, err, "not shared while Redis is down")

	srv.Restart()
	waitReady(t, a.list)
	waitReady(t, b.list)
	// The caller retries the revocation that returned ErrStore. The
	// store's breaker may still be open for a moment.
	require.Eventually(t, func() bool {
		return a.list.Revoke(t.Context(), revoke.Revocation{Issuer: revIssuer, TokenID: "t2"}) == nil
	}, 15*time.Second, 50*time.Millisecond)
	require.True(t, waitRefused(b, tok2, time.Now().Add(10*time.Second)))
}

// TestRevocationStoreBounded: the durable set holds at most its maximum
// of unexpired revocations; the next is refused, none dropped.
func TestRevocationStoreBounded(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	clk := testkit.NewClock(time.Now())
	store := redisstore.NewRevocationStore(rdb, redisstore.Options{Timeout: testTimeout, Now: clk.Now, InsecureTrustCallerClock: true}, 20)
	exp := clk.Now().Add(time.Minute)
	for i := range 20 {
		require.NoError(t, store.Publish(t.Context(), fmt.Appendf(nil, "rec-%d", i), exp))
	}
	require.NoError(t, store.Publish(t.Context(), []byte("rec-3"), exp.Add(time.Minute)), "an update of a held record is not a new one")
	for i := range 100 {
		require.ErrorIs(t, store.Publish(t.Context(), fmt.Appendf(nil, "flood-%d", i), exp), redisstore.ErrRevocationsFull)
	}
	n, err := rdb.DBSize(t.Context()).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "one key: %v", keys(t, rdb))
	clk.Advance(3 * time.Minute) // every record has expired: they make room
	require.NoError(t, store.Publish(t.Context(), []byte("after"), clk.Now().Add(time.Minute)))
	card, err := rdb.ZCard(t.Context(), keys(t, rdb)[0]).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), card)
}

func keys(t *testing.T, rdb redis.UniversalClient) []string {
	t.Helper()
	k, err := rdb.Keys(t.Context(), "*").Result()
	require.NoError(t, err)
	return k
}
