package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

func (c *cli) dpop(args []string) int {
	fs := newFlags("dpop", "-key FILE -url URL [flags]", `
Make an RFC 9449 DPoP proof (typ dpop+jwt, the public key in the jwk
header) for one request, and print it. A proof is single use and lives
about a minute: make a new one per request. With an access token the
proof carries ath, the hash of that token, as a proof for a DPoP-bound
token must; -nonce carries a nonce the server asked for in its
DPoP-Nonce header.

Give the token with -token-file or -token-env (a variable's name): a
token in -token is on the command line, which other local users can
read (ps). The token is never printed.`)
	keyFile := fs.String("key", "", "the DPoP private key file (PEM; make one with token keygen). Required")
	method := fs.String("method", "GET", "the request's method (htm)")
	rawURL := fs.String("url", "", "the request's URL (htu; query and fragment are dropped). Required")
	nonce := fs.String("nonce", "", "the server's nonce (DPoP-Nonce)")
	tokenFile := fs.String("token-file", "", "file holding the access token the proof goes with (ath)")
	tokenEnv := fs.String("token-env", "", "environment variable holding the access token the proof goes with (ath)")
	token := fs.String("token", "", "the access token itself (ath); visible to local users in ps: prefer -token-file or -token-env")
	alg := fs.String("alg", "", "algorithm (default: from the key)")
	if ok, code := c.parse(fs, args, 0); !ok {
		return code
	}
	if *keyFile == "" || *rawURL == "" {
		return c.usageErr(fs, "-key and -url are required")
	}
	if n := countSet(*token, *tokenFile, *tokenEnv); n > 1 {
		return c.usageErr(fs, "-token, -token-file and -token-env exclude each other")
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return c.usageErr(fs, "-url must be an absolute URL")
	}
	u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = "", "", "", false
	if *tokenFile != "" || *tokenEnv != "" {
		if *token, err = c.readCredential("token", *tokenFile, *tokenEnv); err != nil {
			return c.fail(fs.path, err)
		}
	}
	key, err := readPrivateKey(*keyFile)
	if err != nil {
		return c.fail(fs.path, err)
	}
	a := jwa.SignatureAlgorithm(*alg)
	if a == "" {
		if a, err = algFor(key.Public()); err != nil {
			return c.fail(fs.path, err)
		}
	}
	pub, err := publicJWK(key.Public(), "", a)
	if err != nil {
		return c.fail(fs.path, err)
	}
	// The proof's jwk is the bare public key: no kid, alg or use.
	for _, name := range []string{"kid", "alg", "use"} {
		_ = pub.Remove(name)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return c.fail(fs.path, err)
	}
	claims := map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(jti),
		"htm": strings.ToUpper(*method),
		"htu": u.String(),
		"iat": time.Now().Unix(),
	}
	if *nonce != "" {
		claims["nonce"] = *nonce
	}
	if *token != "" {
		claims["ath"] = auth.AccessTokenHash(*token)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return c.fail(fs.path, err)
	}
	hdr := jws.NewHeaders()
	for name, v := range map[string]any{jws.TypeKey: "dpop+jwt", jws.JWKKey: pub} {
		if err := hdr.Set(name, v); err != nil {
			return c.fail(fs.path, err)
		}
	}
	proof, err := jws.Sign(payload, jws.WithKey(a, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return c.fail(fs.path, err)
	}
	fmt.Fprintf(c.stdout, "%s\n", proof)
	return exitOK
}

// countSet counts the non-empty flag values among vs.
func countSet(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}
