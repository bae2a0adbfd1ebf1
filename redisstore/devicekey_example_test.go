package redisstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/signing"
	"github.com/redis/go-redis/v9"
)

// Enrolled device keys verify signed requests on every instance, and a
// lost phone is revoked in one call. The application adapts the store to
// signing.KeyStore in a few lines: the packages meet only here.
func ExampleNewDeviceKeyStore() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{exampleRedis}, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	store := redisstore.NewDeviceKeyStore(rdb, redisstore.Options{Prefix: "example:dk:", Timeout: testTimeout})
	keys := signing.KeyStoreFunc(func(ctx context.Context, id string) (signing.Key, error) {
		k, found, err := store.Get(ctx, id)
		if err != nil {
			return signing.Key{}, err // 503
		}
		if !found {
			return signing.Key{}, signing.ErrUnknownKey
		}
		return signing.Key{ID: id, Algorithm: k.Algorithm, PublicKey: k.PublicKey, Revoked: k.Revoked}, nil
	})
	v, err := signing.New(signing.Config{Keys: keys, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	api := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	// Enrolment: the attested device public key (here a fresh one).
	phone, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ctx := context.Background()
	if err := store.Put(ctx, "phone-42", redisstore.AlgECDSAP256SHA256, &phone.PublicKey); err != nil {
		panic(err)
	}
	// A second enrolment cannot take the ID over.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	err = store.Put(ctx, "phone-42", redisstore.AlgECDSAP256SHA256, &other.PublicKey)
	fmt.Println("takeover:", errors.Is(err, redisstore.ErrKeyExists))

	signer, _ := signing.NewKeySigner("phone-42", phone)
	send := func() int {
		r := httptest.NewRequest("GET", "https://api.example.com/v1/orders", nil)
		if err := signer.Sign(r); err != nil {
			panic(err)
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, r)
		return rec.Code
	}
	fmt.Println("enrolled:", send())
	if err := store.Revoke(ctx, "phone-42"); err != nil { // the phone is lost
		panic(err)
	}
	fmt.Println("revoked:", send())
	// Output:
	// takeover: true
	// enrolled: 200
	// revoked: 401
}
