package auth

import (
	"log/slog"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// BenchmarkCachedToken compares VerifyToken on a token seen before: an
// introspected opaque token (its cached answer) and an ES256 JWT (the
// verified-token cache), with the same Verifier settings.
func BenchmarkCachedToken(b *testing.B) {
	s := newSigner(b, jwa.ES256, "k1")
	b.Run("jwt", func(b *testing.B) {
		v := benchVerifier(b, s, false, 10_000)
		tok := benchTokens(b, s, 1)[0]
		if _, err := v.VerifyToken(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.VerifyToken(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwt_beside_introspection", func(b *testing.B) {
		// The routing cost a JWT pays when an issuer introspects.
		v, err := New(Config{
			Issuers: []Issuer{
				{Issuer: testIssuer, Audience: []string{testAudience}, Keys: jwkSet(b, s), Algorithms: []jwa.SignatureAlgorithm{jwa.ES256}},
				{Issuer: "https://opaque.example.com/", Audience: []string{testAudience}, Introspection: &Introspection{
					URL: "https://opaque.example.com/introspect", ClientID: introClient, ClientSecret: introSecret,
				}},
			},
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = v.Close() })
		tok := benchTokens(b, s, 1)[0]
		if _, err := v.VerifyToken(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.VerifyToken(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("introspected", func(b *testing.B) {
		srv := newIntroServer(b)
		tok := "2YotnFZFEjr1zCsicMWpAA-opaque-access-token-of-43"
		srv.answer(tok, map[string]any{"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
		v, err := New(Config{
			Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Introspection: &Introspection{
				URL: srv.URL, ClientID: introClient, ClientSecret: introSecret,
			}}},
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = v.Close() })
		if _, err := v.VerifyToken(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.VerifyToken(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
		}
		if n := srv.calls.Load(); n != 1 {
			b.Fatalf("%d calls, want 1", n)
		}
	})
}
