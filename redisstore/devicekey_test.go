package redisstore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"sync"
	"testing"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func newDeviceKeyStore(t *testing.T, addr string) *DeviceKeyStore {
	t.Helper()
	return NewDeviceKeyStore(newClient(t, addr), Options{Timeout: testTimeout})
}

func TestDeviceKeyPutGet(t *testing.T) {
	s := newDeviceKeyStore(t, redistest.Shared(t).Addr())
	ctx := context.Background()
	ec := newECKey(t)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	require.NoError(t, s.Put(ctx, "ec-1", AlgECDSAP256SHA256, &ec.PublicKey))
	require.NoError(t, s.Put(ctx, "ed-1", AlgEd25519, edPub))

	k, found, err := s.Get(ctx, "ec-1")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, AlgECDSAP256SHA256, k.Algorithm)
	require.True(t, ec.PublicKey.Equal(k.PublicKey))
	require.False(t, k.Revoked)

	k, found, err = s.Get(ctx, "ed-1")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, DeviceKey{Algorithm: AlgEd25519, PublicKey: edPub}, k)

	_, found, err = s.Get(ctx, "unknown")
	require.NoError(t, err)
	require.False(t, found)
	require.NoError(t, s.Ready(ctx))
}

// TestDeviceKeyStoreRefusesSecretsAndMismatchedKeys: only P-256 and
// Ed25519 public keys under their own algorithm are stored; an HMAC
// secret never reaches Redis.
func TestDeviceKeyStoreRefusesSecretsAndMismatchedKeys(t *testing.T) {
	srv := redistest.Shared(t)
	s := newDeviceKeyStore(t, srv.Addr())
	ctx := context.Background()
	ec := newECKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	secret := []byte("0123456789abcdef0123456789abcdef")
	for name, c := range map[string]struct {
		alg string
		pub crypto.PublicKey
	}{
		"hmac_secret":          {"hmac-sha256", secret},
		"hmac_secret_as_ecdsa": {AlgECDSAP256SHA256, secret},
		"ecdsa_under_ed25519":  {AlgEd25519, &ec.PublicKey},
		"ed25519_under_ecdsa":  {AlgECDSAP256SHA256, edPub},
		"p384_key":             {AlgECDSAP256SHA256, &p384.PublicKey},
		"rsa_key":              {AlgECDSAP256SHA256, &rsaKey.PublicKey},
		"private_key":          {AlgECDSAP256SHA256, ec},
		"nil_ecdsa":            {AlgECDSAP256SHA256, (*ecdsa.PublicKey)(nil)},
		"short_ed25519":        {AlgEd25519, edPub[:16]},
	} {
		err := s.Put(ctx, "k-"+name, c.alg, c.pub)
		require.Error(t, err, name)
		require.NotContains(t, err.Error(), string(secret), name)
	}
	require.Error(t, s.Put(ctx, "", AlgECDSAP256SHA256, &ec.PublicKey), "empty key ID")
	n, err := srv.Do("DBSIZE")
	require.NoError(t, err)
	require.Equal(t, ":0", n, "nothing stored")
}

// TestDeviceKeyReenrolmentCannotReplaceKey: a second enrolment under a
// device's key ID (an attacker enrolling their key under the victim's
// ID) is refused, and the first key stays; the same key again is a
// retried enrolment and succeeds.
func TestDeviceKeyReenrolmentCannotReplaceKey(t *testing.T) {
	s := newDeviceKeyStore(t, redistest.Shared(t).Addr())
	ctx := context.Background()
	victim, attacker := newECKey(t), newECKey(t)
	require.NoError(t, s.Put(ctx, "device-7", AlgECDSAP256SHA256, &victim.PublicKey))
	require.ErrorIs(t, s.Put(ctx, "device-7", AlgECDSAP256SHA256, &attacker.PublicKey), ErrKeyExists)
	require.NoError(t, s.Put(ctx, "device-7", AlgECDSAP256SHA256, &victim.PublicKey), "retry")
	k, _, err := s.Get(ctx, "device-7")
	require.NoError(t, err)
	require.True(t, victim.PublicKey.Equal(k.PublicKey))
}

// TestRevokedKeyRefusedByOtherInstanceAtOnce: a key revoked through one
// instance is revoked on the next lookup by another (no cache), and
// cannot be enrolled again, not even with the same key.
func TestRevokedKeyRefusedByOtherInstanceAtOnce(t *testing.T) {
	srv := redistest.Shared(t)
	a, b := newDeviceKeyStore(t, srv.Addr()), newDeviceKeyStore(t, srv.Addr())
	ctx := context.Background()
	ec := newECKey(t)
	require.NoError(t, a.Put(ctx, "lost-phone", AlgECDSAP256SHA256, &ec.PublicKey))
	k, _, err := b.Get(ctx, "lost-phone")
	require.NoError(t, err)
	require.False(t, k.Revoked)

	require.NoError(t, a.Revoke(ctx, "lost-phone"))
	k, found, err := b.Get(ctx, "lost-phone")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, DeviceKey{Revoked: true}, k)
	require.ErrorIs(t, b.Put(ctx, "lost-phone", AlgECDSAP256SHA256, &ec.PublicKey), ErrKeyExists, "revocation is final")
	require.NoError(t, b.Revoke(ctx, "lost-phone"), "idempotent")
}

// TestRevokeBeforeEnrolmentWins: an enrolment that arrives after the
// revocation of its ID (the two raced) cannot bring it back.
func TestRevokeBeforeEnrolmentWins(t *testing.T) {
	s := newDeviceKeyStore(t, redistest.Shared(t).Addr())
	ctx := context.Background()
	require.NoError(t, s.Revoke(ctx, "device-9"))
	require.ErrorIs(t, s.Put(ctx, "device-9", AlgECDSAP256SHA256, &newECKey(t).PublicKey), ErrKeyExists)
	k, found, err := s.Get(ctx, "device-9")
	require.NoError(t, err)
	require.True(t, found)
	require.True(t, k.Revoked)
}

func TestDeviceKeyRotate(t *testing.T) {
	s := newDeviceKeyStore(t, redistest.Shared(t).Addr())
	ctx := context.Background()
	v1, v2 := newECKey(t), newECKey(t)
	require.NoError(t, s.Put(ctx, "device-1.v1", AlgECDSAP256SHA256, &v1.PublicKey))
	require.NoError(t, s.Rotate(ctx, "device-1.v1", "device-1.v2", AlgECDSAP256SHA256, &v2.PublicKey))
	require.NoError(t, s.Rotate(ctx, "device-1.v1", "device-1.v2", AlgECDSAP256SHA256, &v2.PublicKey), "a retry completes or repeats it")

	old, _, err := s.Get(ctx, "device-1.v1")
	require.NoError(t, err)
	require.True(t, old.Revoked)
	cur, _, err := s.Get(ctx, "device-1.v2")
	require.NoError(t, err)
	require.False(t, cur.Revoked)
	require.True(t, v2.PublicKey.Equal(cur.PublicKey))

	require.Error(t, s.Rotate(ctx, "device-1.v2", "device-1.v2", AlgECDSAP256SHA256, &v2.PublicKey), "same ID")
	require.ErrorIs(t, s.Rotate(ctx, "device-1.v2", "device-1.v1", AlgECDSAP256SHA256, &v2.PublicKey), ErrKeyExists, "back to a revoked ID")
	cur, _, err = s.Get(ctx, "device-1.v2")
	require.NoError(t, err)
	require.False(t, cur.Revoked, "a refused rotation leaves the current key valid")
}

// TestDeviceKeyMalformedRecordRefused: a record that Redis holds but that
// is not a device key (tampered, or written by something else) is an
// error, never a key.
func TestDeviceKeyMalformedRecordRefused(t *testing.T) {
	srv := redistest.Shared(t)
	s := newDeviceKeyStore(t, srv.Addr())
	ctx := context.Background()
	ec := newECKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	p384DER, err := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	require.NoError(t, err)
	for name, fields := range map[string][]string{
		"garbage_der":     {"alg", AlgECDSAP256SHA256, "spki", "not DER"},
		"truncated_der":   {"alg", AlgECDSAP256SHA256, "spki", string(ecDER[:len(ecDER)-1])},
		"p384_der":        {"alg", AlgECDSAP256SHA256, "spki", string(p384DER)},
		"alg_mismatch":    {"alg", AlgEd25519, "spki", string(ecDER)},
		"hmac_alg":        {"alg", "hmac-sha256", "spki", "0123456789abcdef0123456789abcdef"},
		"alg_without_key": {"alg", AlgECDSAP256SHA256},
		"key_without_alg": {"spki", string(ecDER)},
	} {
		_, err := srv.Do(append([]string{"HSET", s.key("bad-" + name)}, fields...)...)
		require.NoError(t, err)
		k, found, err := s.Get(ctx, "bad-"+name)
		require.ErrorIs(t, err, ErrUnavailable, name)
		require.False(t, found, name)
		require.Nil(t, k.PublicKey, name)
		require.False(t, strings.Contains(err.Error(), "0123456789abcdef"), name)
	}
}

// TestDeviceKeyStoreDown: every call of a store whose Redis is gone
// fails with ErrUnavailable (signing answers 503), never "unknown" or a
// key.
func TestDeviceKeyStoreDown(t *testing.T) {
	srv := redistest.Start(t)
	s := NewDeviceKeyStore(newClient(t, srv.Addr()), Options{Timeout: testTimeout, Breaker: NewBreaker(BreakerConfig{})})
	ctx := context.Background()
	ec := newECKey(t)
	require.NoError(t, s.Put(ctx, "device-1", AlgECDSAP256SHA256, &ec.PublicKey))
	srv.Stop()
	_, found, err := s.Get(ctx, "device-1")
	require.ErrorIs(t, err, ErrUnavailable)
	require.False(t, found)
	require.ErrorIs(t, s.Put(ctx, "device-2", AlgECDSAP256SHA256, &ec.PublicKey), ErrUnavailable)
	require.ErrorIs(t, s.Revoke(ctx, "device-1"), ErrUnavailable)
	require.ErrorIs(t, s.Rotate(ctx, "device-1", "device-2", AlgECDSAP256SHA256, &ec.PublicKey), ErrUnavailable)
	require.ErrorIs(t, s.Ready(ctx), ErrUnavailable)
}

// TestDeviceKeyConcurrentEnrolmentOneWinner: 32 enrolments race for one
// key ID with different keys: exactly one wins, and the stored key is
// the winner's.
func TestDeviceKeyConcurrentEnrolmentOneWinner(t *testing.T) {
	srv := redistest.Shared(t)
	s := newDeviceKeyStore(t, srv.Addr())
	const n = 32
	keys := make([]*ecdsa.PrivateKey, n)
	for i := range keys {
		keys[i] = newECKey(t)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(context.Background(), "contested", AlgECDSAP256SHA256, &keys[i].PublicKey)
		})
	}
	close(start)
	wg.Wait()
	winner, refused := -1, 0
	for i, err := range errs {
		switch {
		case err == nil:
			require.Equal(t, -1, winner, "a second winner")
			winner = i
		default:
			require.ErrorIs(t, err, ErrKeyExists)
			refused++
		}
	}
	require.Equal(t, n-1, refused)
	k, _, err := s.Get(context.Background(), "contested")
	require.NoError(t, err)
	require.True(t, keys[winner].PublicKey.Equal(k.PublicKey))
}

// TestDeviceKeyRevocationSeenByEveryLookupAfter: 64 goroutines on 4
// instances look a key up while it is revoked; every lookup that starts
// after Revoke returned sees it revoked (exact count), none errs.
func TestDeviceKeyRevocationSeenByEveryLookupAfter(t *testing.T) {
	srv := redistest.Shared(t)
	stores := make([]*DeviceKeyStore, 4)
	for i := range stores {
		stores[i] = newDeviceKeyStore(t, srv.Addr())
	}
	ctx := context.Background()
	require.NoError(t, stores[0].Put(ctx, "device-x", AlgECDSAP256SHA256, &newECKey(t).PublicKey))
	const g, perG = 64, 20
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		afterRevoked, errs int
		after              = make(chan struct{})
		half               = make(chan struct{}, g)
	)
	for i := range g {
		wg.Go(func() {
			s := stores[i%len(stores)]
			for j := range perG {
				if j == perG/2 {
					half <- struct{}{}
					<-after
				}
				k, _, err := s.Get(ctx, "device-x")
				mu.Lock()
				switch {
				case err != nil:
					errs++
				case j >= perG/2 && k.Revoked:
					afterRevoked++
				}
				mu.Unlock()
			}
		})
	}
	for range g {
		<-half
	}
	require.NoError(t, stores[1].Revoke(ctx, "device-x"))
	close(after)
	wg.Wait()
	require.Zero(t, errs)
	require.Equal(t, g*perG/2, afterRevoked)
}

// TestDeviceKeyCluster: enrolment, rotation across two key IDs (two
// slots, two calls) and revocation on a three-node Cluster, seen by a
// second client.
func TestDeviceKeyCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	c := redistest.SharedCluster(t)
	opts := Options{Prefix: "dk-cluster:" + t.Name() + ":", Timeout: testTimeout}
	a := NewDeviceKeyStore(clusterClient(t, c), opts)
	b := NewDeviceKeyStore(clusterClient(t, c), opts)
	ctx := context.Background()
	v1, v2 := newECKey(t), newECKey(t)
	for i := range 8 { // IDs spread over the slots
		id := "device-" + string(rune('a'+i))
		require.NoError(t, a.Put(ctx, id+".v1", AlgECDSAP256SHA256, &v1.PublicKey))
		require.NoError(t, a.Rotate(ctx, id+".v1", id+".v2", AlgECDSAP256SHA256, &v2.PublicKey))
		old, _, err := b.Get(ctx, id+".v1")
		require.NoError(t, err)
		require.True(t, old.Revoked)
		cur, found, err := b.Get(ctx, id+".v2")
		require.NoError(t, err)
		require.True(t, found)
		require.True(t, v2.PublicKey.Equal(cur.PublicKey))
		require.NoError(t, b.Revoke(ctx, id+".v2"))
		cur, _, err = a.Get(ctx, id+".v2")
		require.NoError(t, err)
		require.True(t, cur.Revoked)
	}
}

// BenchmarkDeviceKeyGet is one lookup: an HMGET round trip and the
// parse of a P-256 SPKI.
func BenchmarkDeviceKeyGet(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = rdb.Close() })
	s := NewDeviceKeyStore(rdb, Options{Timeout: testTimeout})
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "device-1", AlgECDSAP256SHA256, &k.PublicKey); err != nil {
		b.Fatal(err)
	}
	b.Run("Get", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := s.Get(ctx, "device-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("HMGet_only", func(b *testing.B) {
		key := s.key("device-1")
		for b.Loop() {
			if err := rdb.HMGet(ctx, key, "alg", "spki", "revoked").Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
