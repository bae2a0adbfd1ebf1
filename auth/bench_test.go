package auth

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// benchTokens returns n distinct ES256 tokens valid for an hour from now.
func benchTokens(b *testing.B, s *signer, n int) []string {
	b.Helper()
	now := time.Now()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = s.token(b, map[string]any{"jti": fmt.Sprint(i), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	}
	return toks
}

func benchVerifier(b *testing.B, s *signer, remote bool, cacheSize int) *Verifier {
	b.Helper()
	is := Issuer{Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []jwa.SignatureAlgorithm{jwa.ES256}}
	if remote {
		srv := newJWKSServer(b, s)
		is.JWKSURL = srv.URL
	} else {
		is.Keys = jwkSet(b, s)
	}
	v, err := New(Config{Issuers: []Issuer{is}, TokenCacheSize: cacheSize, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	// Load the keys (remote) before the clock starts.
	if _, err := v.VerifyToken(b.Context(), benchTokens(b, s, 1)[0]); err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkVerifyToken measures VerifyToken on a token seen before (the
// verified-token cache hit, budget < 1 µs) and on new ES256 tokens (cache
// off), with static keys and with a remote JWKS.
func BenchmarkVerifyToken(b *testing.B) {
	s := newSigner(b, jwa.ES256, "k1")
	toks := benchTokens(b, s, 256)
	for _, remote := range []bool{false, true} {
		src := "static"
		if remote {
			src = "remote"
		}
		b.Run(src+"/cached", func(b *testing.B) {
			v := benchVerifier(b, s, remote, 10_000)
			if _, err := v.VerifyToken(b.Context(), toks[0]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyToken(b.Context(), toks[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(src+"/new_ES256", func(b *testing.B) {
			v := benchVerifier(b, s, remote, -1)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := v.VerifyToken(b.Context(), toks[i%len(toks)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
