// Package issuer stands in for an authorization server in the framework
// examples and tests: an Ed25519 key, its key set, and access tokens signed
// with it. In production the verifier reads the issuer's JWKS URL instead.
package issuer

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const (
	// URL is the issuer's iss value.
	URL = "https://login.example.com/"
	// Audience is the API's aud value.
	Audience = "https://api.example.com"
	keyID    = "example"
)

// Issuer signs access tokens with a fresh key.
type Issuer struct {
	priv ed25519.PrivateKey
	set  jwk.Set
}

// New returns an Issuer with a fresh Ed25519 key.
func New() (*Issuer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, err
	}
	if err := k.Set(jwk.KeyIDKey, keyID); err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(k); err != nil {
		return nil, err
	}
	return &Issuer{priv: priv, set: set}, nil
}

// Verifier returns an auth.Verifier that trusts the issuer's key set, with
// clock now (nil: time.Now). The caller closes it.
func (is *Issuer) Verifier(now func() time.Time, logger *slog.Logger) (*auth.Verifier, error) {
	return auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: URL, Audience: []string{Audience}, Keys: is.set}},
		Now:     now,
		Logger:  logger,
	})
}

// Token returns an access token for subject user-1 with scope, issued at
// now and valid for ten minutes.
func (is *Issuer) Token(scope string, now time.Time) (string, error) {
	payload, err := json.Marshal(map[string]any{
		"iss": URL, "aud": Audience, "sub": "user-1", "scope": scope,
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set("typ", "at+jwt"); err != nil {
		return "", err
	}
	if err := hdr.Set("kid", keyID); err != nil {
		return "", err
	}
	b, err := jws.Sign(payload, jws.WithKey(jwa.EdDSA, is.priv, jws.WithProtectedHeaders(hdr)))
	return string(b), err
}
