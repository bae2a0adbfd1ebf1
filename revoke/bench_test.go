package revoke_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/revoke"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// BenchmarkCacheHitWithRevocations measures auth's verified-token cache
// hit without a revocation list, with an empty one, and with one holding
// 10,000 revocations of other tokens: the price of asking on every
// request.
func BenchmarkCacheHitWithRevocations(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := jwk.FromRaw(&k.PublicKey)
	_ = pub.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": "https://idp.example/", "aud": "api", "sub": "user-1", "sid": "sess-1", "jti": "tok-1", "client_id": "app", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	h := jws.NewHeaders()
	_ = h.Set("typ", "at+jwt")
	_ = h.Set("kid", "k1")
	tok, err := jws.Sign(claims, jws.WithKey(jwa.ES256, k, jws.WithProtectedHeaders(h)))
	if err != nil {
		b.Fatal(err)
	}
	full, _ := revoke.New(revoke.Config{})
	for i := range 10_000 {
		_ = full.Revoke(b.Context(), revoke.Revocation{Issuer: "https://idp.example/", Subject: fmt.Sprint("other-", i)})
	}
	empty, _ := revoke.New(revoke.Config{})
	for _, bc := range []struct {
		name string
		revs interface {
			Revoked(iss, sub, sid, jti, clientID string, issuedAt time.Time) bool
		}
	}{{"none", nil}, {"empty_list", empty}, {"list_10000", full}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := auth.Config{Issuers: []auth.Issuer{{Issuer: "https://idp.example/", Audience: []string{"api"}, Keys: set}}, Logger: slog.New(slog.DiscardHandler)}
			if bc.revs != nil {
				cfg.Revocations = bc.revs
			}
			v, err := auth.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			if _, err := v.VerifyToken(b.Context(), string(tok)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyToken(b.Context(), string(tok)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
