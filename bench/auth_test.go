package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	jwtmiddleware "github.com/auth0/go-jwt-middleware/v2"
	"github.com/auth0/go-jwt-middleware/v2/validator"
	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const (
	benchIssuer   = "https://login.example.com/"
	benchAudience = "https://api.example.com"
	poolSize      = 512 // distinct tokens cycled through for cold runs
)

// tokenPool holds distinct valid tokens signed by one key.
type tokenPool struct {
	alg    jwa.SignatureAlgorithm
	priv   crypto.Signer
	pub    crypto.PublicKey
	tokens []string
}

func newTokenPool(b *testing.B, alg jwa.SignatureAlgorithm) *tokenPool {
	b.Helper()
	var priv crypto.Signer
	switch alg {
	case jwa.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		priv = k
	case jwa.RS256:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			b.Fatal(err)
		}
		priv = k
	}
	p := &tokenPool{alg: alg, priv: priv, pub: priv.Public()}
	now := time.Now()
	for i := range poolSize {
		hdr := jws.NewHeaders()
		_ = hdr.Set("typ", "at+jwt")
		_ = hdr.Set("kid", "k1")
		payload, _ := json.Marshal(map[string]any{
			"iss": benchIssuer, "aud": benchAudience, "sub": fmt.Sprintf("user-%d", i),
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "orders:read", "client_id": "app",
		})
		tok, err := jws.Sign(payload, jws.WithKey(alg, priv, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			b.Fatal(err)
		}
		p.tokens = append(p.tokens, string(tok))
	}
	return p
}

func (p *tokenPool) apiguard(b *testing.B, cacheSize int) *auth.Verifier {
	b.Helper()
	k, err := jwk.FromRaw(p.pub)
	if err != nil {
		b.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(k)
	v, err := auth.New(auth.Config{
		Issuers:        []auth.Issuer{{Issuer: benchIssuer, Audience: []string{benchAudience}, Keys: set, Algorithms: []jwa.SignatureAlgorithm{p.alg}}},
		TokenCacheSize: cacheSize,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	return v
}

func (p *tokenPool) auth0(b *testing.B) http.Handler {
	b.Helper()
	val, err := validator.New(func(context.Context) (any, error) { return p.pub, nil },
		validator.SignatureAlgorithm(p.alg.String()), benchIssuer, []string{benchAudience})
	if err != nil {
		b.Fatal(err)
	}
	return jwtmiddleware.New(val.ValidateToken).CheckJWT(bare)
}

func (p *tokenPool) golangJWT() func(string) error {
	parser := jwt.NewParser(jwt.WithValidMethods([]string{p.alg.String()}), jwt.WithIssuer(benchIssuer),
		jwt.WithAudience(benchAudience), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	keyFunc := func(*jwt.Token) (any, error) { return p.pub, nil }
	return func(tok string) error {
		_, err := parser.Parse(tok, keyFunc)
		return err
	}
}

// floor verifies the signature alone with the standard library: what no
// verifier can skip.
func (p *tokenPool) floor() func(string) error {
	return func(tok string) error {
		i := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
		if err != nil {
			return err
		}
		digest := sha256.Sum256([]byte(tok[:i]))
		switch k := p.pub.(type) {
		case *ecdsa.PublicKey:
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			if !ecdsa.Verify(k, digest[:], r, s) {
				return fmt.Errorf("bad signature")
			}
		case *rsa.PublicKey:
			return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig)
		}
		return nil
	}
}

func runFunc(b *testing.B, tokens []string, f func(string) error) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := f(tokens[i%len(tokens)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func runHandler(b *testing.B, tokens []string, h http.Handler) {
	b.ReportAllocs()
	reqs := make([]*http.Request, len(tokens))
	for i, t := range tokens {
		reqs[i] = httptest.NewRequest("GET", "/orders", nil)
		reqs[i].Header.Set("Authorization", "Bearer "+t)
	}
	w := &discardWriter{h: make(http.Header, 4)}
	i := 0
	for b.Loop() {
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, reqs[i%len(reqs)])
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
		i++
	}
}

// BenchmarkAuth verifies ES256 and RS256 access tokens: the raw signature
// check as the floor, golang-jwt/jwt v5's parser, auth0/go-jwt-middleware
// v2, and apiguard's verifier and middleware, cold (a token not seen
// before: cache off, tokens cycled) and warm (verified-token cache hit).
func BenchmarkAuth(b *testing.B) {
	for _, alg := range []jwa.SignatureAlgorithm{jwa.ES256, jwa.RS256} {
		p := newTokenPool(b, alg)
		cold := p.apiguard(b, -1)
		warm := p.apiguard(b, 10_000)
		one := p.tokens[:1]
		b.Run(alg.String()+"/cold/floor_stdlib_verify", func(b *testing.B) { runFunc(b, p.tokens, p.floor()) })
		b.Run(alg.String()+"/cold/golang-jwt", func(b *testing.B) { runFunc(b, p.tokens, p.golangJWT()) })
		b.Run(alg.String()+"/cold/apiguard_VerifyToken", func(b *testing.B) {
			runFunc(b, p.tokens, func(t string) error { _, err := cold.VerifyToken(context.Background(), t); return err })
		})
		b.Run(alg.String()+"/cold/auth0_middleware", func(b *testing.B) { runHandler(b, p.tokens, p.auth0(b)) })
		b.Run(alg.String()+"/cold/apiguard_middleware", func(b *testing.B) { runHandler(b, p.tokens, cold.Handler(bare)) })
		b.Run(alg.String()+"/warm/apiguard_VerifyToken", func(b *testing.B) {
			runFunc(b, one, func(t string) error { _, err := warm.VerifyToken(context.Background(), t); return err })
		})
		b.Run(alg.String()+"/warm/apiguard_middleware", func(b *testing.B) { runHandler(b, one, warm.Handler(bare)) })
	}
}
