package redisstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/signing"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// deviceKeys is the adapter an application writes between the two
// packages: signing's KeyStore over a DeviceKeyStore.
func deviceKeys(s *redisstore.DeviceKeyStore) signing.KeyStore {
	return signing.KeyStoreFunc(func(ctx context.Context, id string) (signing.Key, error) {
		k, found, err := s.Get(ctx, id)
		if err != nil {
			return signing.Key{}, err
		}
		if !found {
			return signing.Key{}, signing.ErrUnknownKey
		}
		return signing.Key{ID: id, Algorithm: k.Algorithm, PublicKey: k.PublicKey, Revoked: k.Revoked}, nil
	})
}

// TestLostPhoneRevokedEverywhere: two API instances verify requests
// signed with an enrolled ECDSA P-256 device key from one Redis; once the
// phone is reported lost and its key revoked through one instance, its
// next signed request is refused (401) by both, a key never enrolled is
// refused the same way, and a Redis outage is a 503, never an accept.
func TestLostPhoneRevokedEverywhere(t *testing.T) {
	srv := redistest.Start(t)
	newInstance := func() (*signing.Verifier, *redisstore.DeviceKeyStore) {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
		t.Cleanup(func() { _ = rdb.Close() })
		store := redisstore.NewDeviceKeyStore(rdb, redisstore.Options{Timeout: testTimeout})
		v, err := signing.New(signing.Config{Keys: deviceKeys(store), Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		return v, store
	}
	a, storeA := newInstance()
	b, _ := newInstance()

	phone, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.NoError(t, storeA.Put(context.Background(), "phone-1", redisstore.AlgECDSAP256SHA256, &phone.PublicKey))
	signer, err := signing.NewKeySigner("phone-1", phone)
	require.NoError(t, err)
	serve := func(v *signing.Verifier, s *signing.Signer) (int, bool) {
		r, err := http.NewRequest("POST", "https://api.example.com/v1/pay", strings.NewReader(`{"amount":1}`))
		require.NoError(t, err)
		require.NoError(t, s.Sign(r))
		sr := httptest.NewRequest(r.Method, r.URL.String(), strings.NewReader(`{"amount":1}`))
		sr.Header = r.Header.Clone()
		rec := httptest.NewRecorder()
		reached := false
		v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })).ServeHTTP(rec, sr)
		return rec.Code, reached
	}

	for _, v := range []*signing.Verifier{a, b} {
		code, reached := serve(v, signer)
		require.Equal(t, 200, code)
		require.True(t, reached)
	}

	require.NoError(t, storeA.Revoke(context.Background(), "phone-1"))
	for i, v := range []*signing.Verifier{a, b} {
		code, reached := serve(v, signer)
		require.Equal(t, 401, code, "instance %d", i)
		require.False(t, reached)
	}
	r, err := http.NewRequest("GET", "https://api.example.com/v1/orders", nil)
	require.NoError(t, err)
	require.NoError(t, signer.Sign(r))
	sr := httptest.NewRequest(r.Method, r.URL.String(), nil)
	sr.Header = r.Header
	_, err = b.Verify(sr)
	require.ErrorIs(t, err, signing.ErrRevokedKey)

	thief, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	unenrolled, err := signing.NewKeySigner("phone-2", thief)
	require.NoError(t, err)
	code, _ := serve(b, unenrolled)
	require.Equal(t, 401, code, "unknown key")

	srv.Stop()
	code, reached := serve(b, signer)
	require.Equal(t, http.StatusServiceUnavailable, code, "store down: fail closed")
	require.False(t, reached)
}
