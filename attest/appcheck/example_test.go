package appcheck_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/apiguard/apiguard/attest/appcheck"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// A token for another Firebase project is refused; one for this project
// passes. A stand-in key server plays App Check's JWKS.
func ExampleVerifier_Verify() {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pub, _ := jwk.FromRaw(&key.PublicKey)
		_ = pub.Set(jwk.KeyIDKey, "k1")
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer jwks.Close()
	ac, _ := appcheck.New(appcheck.Config{ProjectNumber: "123456789", JWKSURL: jwks.URL, HTTPClient: jwks.Client(),
		Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	defer ac.Close()
	mint := func(project string) string {
		tok, _ := jwt.NewBuilder().Issuer("https://firebaseappcheck.googleapis.com/" + project).
			Audience([]string{"projects/" + project}).Subject("1:" + project + ":ios:abc").Expiration(now.Add(time.Hour)).Build()
		hdr := jws.NewHeaders()
		_ = hdr.Set(jws.KeyIDKey, "k1")
		_ = hdr.Set(jws.TypeKey, "JWT")
		b, _ := jwt.Sign(tok, jwt.WithKey(jwa.RS256, key, jws.WithProtectedHeaders(hdr)))
		return string(b)
	}
	t, err := ac.Verify(context.Background(), mint("123456789"))
	fmt.Println(t.AppID, err)
	_, err = ac.Verify(context.Background(), mint("666")) // another project's app
	fmt.Println(errors.Is(err, appcheck.ErrToken))
	// Output:
	// 1:123456789:ios:abc <nil>
	// true
}

// At start-up, wait a bounded time for the first key set: here the key
// server is down, so the service learns it before taking traffic.
func ExampleVerifier_Ready() {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	ac, _ := appcheck.New(appcheck.Config{ProjectNumber: "123456789", JWKSURL: down.URL, HTTPClient: down.Client(),
		Logger: slog.New(slog.DiscardHandler)})
	defer ac.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := ac.Ready(ctx)
	_, loaded, lastErr := ac.KeySetAge()
	fmt.Println(errors.Is(err, appcheck.ErrVendor), loaded, lastErr)
	// Output:
	// true false fetch app check jwks: status 503
}

// A limited-use token replayed by an attacker who captured it is refused
// the second time: its jti is recorded until its expiry, here in the
// default in-memory store (give several instances one
// redisstore.ReplayStore as Config.Replay).
func ExampleVerifier_VerifyLimitedUse() {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pub, _ := jwk.FromRaw(&key.PublicKey)
		_ = pub.Set(jwk.KeyIDKey, "k1")
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer jwks.Close()
	ac, _ := appcheck.New(appcheck.Config{ProjectNumber: "123456789", JWKSURL: jwks.URL, HTTPClient: jwks.Client(),
		Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	defer ac.Close()
	tok, _ := jwt.NewBuilder().Issuer("https://firebaseappcheck.googleapis.com/123456789").
		Audience([]string{"projects/123456789"}).Subject("1:123456789:ios:abc").JwtID("7f3c9a").
		Expiration(now.Add(5 * time.Minute)).Build()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "k1")
	_ = hdr.Set(jws.TypeKey, "JWT")
	b, _ := jwt.Sign(tok, jwt.WithKey(jwa.RS256, key, jws.WithProtectedHeaders(hdr)))

	_, err := ac.VerifyLimitedUse(context.Background(), string(b))
	fmt.Println(err)
	_, err = ac.VerifyLimitedUse(context.Background(), string(b)) // replayed
	fmt.Println(errors.Is(err, appcheck.ErrTokenReplayed), errors.Is(err, appcheck.ErrToken))
	// Output:
	// <nil>
	// true true
}
