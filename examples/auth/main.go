// Command auth shows the auth package alone: an API whose routes need an
// access token and scopes, over a key set it prints tokens for.
//
//	go run ./examples/auth
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/internal/serve"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const (
	issuerURL = "https://login.example.com/"
	audience  = "https://api.example.com"
)

// keys stands in for the authorization server: in production the
// Verifier reads its JWKS URL instead.
type keys struct {
	priv ed25519.PrivateKey
	set  jwk.Set
}

func newKeys() (*keys, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, err
	}
	_ = k.Set(jwk.KeyIDKey, "example")
	set := jwk.NewSet()
	_ = set.AddKey(k)
	return &keys{priv: priv, set: set}, nil
}

// token signs an access token with scope.
func (k *keys) token(scope string, now time.Time) (string, error) {
	payload, _ := json.Marshal(map[string]any{
		"iss": issuerURL, "aud": audience, "sub": "user-1", "scope": scope,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	hdr := jws.NewHeaders()
	_ = hdr.Set("typ", "at+jwt")
	_ = hdr.Set("kid", "example")
	b, err := jws.Sign(payload, jws.WithKey(jwa.EdDSA, k.priv, jws.WithProtectedHeaders(hdr)))
	return string(b), err
}

func newHandler(k *keys, logger *slog.Logger) (http.Handler, *auth.Verifier, error) {
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: issuerURL, Audience: []string{audience}, Keys: k.set}},
		Logger:  logger,
	})
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orders", v.Require("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := auth.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "orders of %s\n", c.Subject)
	})))
	mux.Handle("POST /orders", v.Require("orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	return mux, v, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	k, err := newKeys()
	if err != nil {
		log.Fatal(err)
	}
	h, v, err := newHandler(k, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	tok, err := k.token("orders:read", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve.Run(*addr, h,
		"curl -i -H 'Authorization: Bearer "+tok+"' %s/orders",
		"curl -i -X POST -H 'Authorization: Bearer "+tok+"' %s/orders   # 403 insufficient_scope"))
}
