package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func (c *cli) tokenKeygen(args []string) int {
	fs := newFlags("token keygen", "-out FILE [flags]", `
Make a token signing key and print its public JWKS. The private key goes
to -out as PKCS #8 PEM with mode 0600 (an existing file is never
overwritten) and is never printed. The key ID is the key's RFC 7638
thumbprint unless -kid is set; token mint computes the same one.`)
	alg := fs.String("alg", "ES256", "algorithm: ES256, EdDSA or RS256")
	out := fs.String("out", "", "file for the private key (PEM, 0600). Required")
	jwksOut := fs.String("jwks", "", "also write the public JWKS to this file (default: stdout only)")
	kid := fs.String("kid", "", "key ID (default: the RFC 7638 thumbprint)")
	if ok, code := c.parse(fs, args, 0); !ok {
		return code
	}
	if *out == "" {
		return c.usageErr(fs, "-out is required")
	}
	var key crypto.Signer
	var err error
	switch jwa.SignatureAlgorithm(*alg) {
	case jwa.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.EdDSA:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case jwa.RS256:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return c.usageErr(fs, "-alg %q: want ES256, EdDSA or RS256", *alg)
	}
	if err != nil {
		return c.fail(fs.path, err)
	}
	pub, err := publicJWK(key.Public(), *kid, jwa.SignatureAlgorithm(*alg))
	if err != nil {
		return c.fail(fs.path, err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return c.fail(fs.path, err)
	}
	doc, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return c.fail(fs.path, err)
	}
	if err := writePrivateKey(*out, key); err != nil {
		return c.fail(fs.path, err)
	}
	if *jwksOut != "" {
		if err := os.WriteFile(*jwksOut, append(doc, '\n'), 0o644); err != nil { // #nosec G306 -- a public key set, meant to be served
			return c.fail(fs.path, err)
		}
	}
	fmt.Fprintf(c.stdout, "%s\n", doc)
	fmt.Fprintf(c.stderr, "private key (%s, kid %s) written to %s with mode 0600\n", *alg, pub.KeyID(), *out)
	return exitOK
}

func (c *cli) tokenMint(args []string) int {
	fs := newFlags("token mint", "-key FILE -iss URL -sub SUBJECT -aud AUDIENCE [flags]", `
Mint an RFC 9068 JWT access token (typ at+jwt) signed with the key in
-key, and print it. With -dpop-key it is bound to that DPoP key
(cnf.jkt, RFC 9449): call the API with "Authorization: DPoP <token>"
and a proof from "apiguard dpop".`)
	keyFile := fs.String("key", "", "signing key file (PEM, from token keygen). Required")
	alg := fs.String("alg", "", "algorithm (default: from the key: ES256, EdDSA, RS256)")
	kid := fs.String("kid", "", "key ID (default: the RFC 7638 thumbprint, as token keygen sets)")
	iss := fs.String("iss", "", "issuer (iss). Required")
	sub := fs.String("sub", "", "subject (sub). Required")
	aud := fs.String("aud", "", "audience (aud), comma-separated for several. Required")
	scope := fs.String("scope", "", "scopes, space-separated (scope)")
	clientID := fs.String("client-id", "apiguard-cli", "client_id (RFC 9068)")
	lifetime := fs.Duration("lifetime", 5*time.Minute, "lifetime: exp - iat (auth refuses tokens living longer than its MaxTokenLifetime, 1h by default)")
	dpopKey := fs.String("dpop-key", "", "DPoP key file (PEM, public or private): binds the token with cnf.jkt")
	acr := fs.String("acr", "", "authentication context class (acr), for step-up")
	authTime := fs.String("auth-time", "", `time of the user's authentication (auth_time): "now", Unix seconds, or RFC 3339`)
	if ok, code := c.parse(fs, args, 0); !ok {
		return code
	}
	switch {
	case *keyFile == "":
		return c.usageErr(fs, "-key is required")
	case *iss == "" || *sub == "" || *aud == "":
		return c.usageErr(fs, "-iss, -sub and -aud are required")
	case *lifetime <= 0:
		return c.usageErr(fs, "-lifetime must be positive")
	}
	now := time.Now()
	var at time.Time
	if *authTime != "" {
		var err error
		if at, err = parseTime(*authTime, now); err != nil {
			return c.usageErr(fs, "-auth-time: %v", err)
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
	pub, err := publicJWK(key.Public(), *kid, a)
	if err != nil {
		return c.fail(fs.path, err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return c.fail(fs.path, err)
	}
	b := jwt.NewBuilder().Issuer(*iss).Subject(*sub).Audience(splitList(*aud)).
		IssuedAt(now).Expiration(now.Add(*lifetime)).JwtID(base64.RawURLEncoding.EncodeToString(jti)).
		Claim("client_id", *clientID)
	if *scope != "" {
		b = b.Claim("scope", *scope)
	}
	if *acr != "" {
		b = b.Claim("acr", *acr)
	}
	if !at.IsZero() {
		b = b.Claim("auth_time", at.Unix())
	}
	if *dpopKey != "" {
		dk, err := readPublicKey(*dpopKey)
		if err != nil {
			return c.fail(fs.path, err)
		}
		jk, err := jwk.FromRaw(dk)
		if err != nil {
			return c.fail(fs.path, fmt.Errorf("%s: %w", *dpopKey, err))
		}
		tp, err := thumbprint(jk)
		if err != nil {
			return c.fail(fs.path, err)
		}
		b = b.Claim("cnf", map[string]string{"jkt": tp})
	}
	tok, err := b.Build()
	if err != nil {
		return c.fail(fs.path, err)
	}
	hdr := jws.NewHeaders()
	for name, v := range map[string]any{jws.TypeKey: "at+jwt", jws.KeyIDKey: pub.KeyID()} {
		if err := hdr.Set(name, v); err != nil {
			return c.fail(fs.path, err)
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(a, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return c.fail(fs.path, err)
	}
	fmt.Fprintf(c.stdout, "%s\n", signed)
	return exitOK
}

// parseTime reads "now", Unix seconds or RFC 3339.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New(`want "now", Unix seconds or RFC 3339`)
	}
	return t, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (c *cli) tokenServe(args []string) int {
	fs := newFlags("token serve", "(-jwks FILE | -key FILE) [flags]", `
Serve a JWKS at /.well-known/jwks.json on a loopback address and print
its URL, until interrupted: the JWKSURL of a local API's auth.Issuer
(auth accepts http only on loopback). Only public keys are served: a
private key named by -key is reduced to its public half.`)
	jwksFile := fs.String("jwks", "", "JWKS file to serve (from token keygen -jwks)")
	keyFile := fs.String("key", "", "or: a key file (PEM) whose public key to serve")
	addr := fs.String("addr", "127.0.0.1:0", `loopback address to listen on: a loopback IP, or "localhost" for 127.0.0.1 (else ::1), never resolved`)
	maxAge := fs.Duration("max-age", 5*time.Minute, "Cache-Control max-age of the answers")
	if ok, code := c.parse(fs, args, 0); !ok {
		return code
	}
	if (*jwksFile == "") == (*keyFile == "") {
		return c.usageErr(fs, "exactly one of -jwks and -key is required")
	}
	addrs, err := loopbackAddrs(*addr)
	if err != nil {
		return c.usageErr(fs, "-addr: %v", err)
	}
	set, err := servedSet(*jwksFile, *keyFile)
	if err != nil {
		return c.fail(fs.path, err)
	}
	doc, err := json.Marshal(set)
	if err != nil {
		return c.fail(fs.path, err)
	}
	var ln net.Listener
	for _, a := range addrs {
		if ln, err = net.Listen("tcp", a); err == nil {
			break
		}
	}
	if err != nil {
		return c.fail(fs.path, err)
	}
	if err := boundToLoopback(ln.Addr()); err != nil {
		_ = ln.Close()
		fmt.Fprintf(c.stderr, "apiguard %s: %v\n", fs.path, err)
		return exitUsage
	}
	cacheControl := fmt.Sprintf("public, max-age=%d", int(maxAge.Seconds()))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", cacheControl)
		_, _ = w.Write(doc)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(c.stdout, "http://%s/.well-known/jwks.json\n", ln.Addr())
	fmt.Fprintf(c.stderr, "serving %d key(s); interrupt (Ctrl-C) stops\n", set.Len())
	select {
	case <-c.ctx.Done():
		_ = srv.Close()
		<-done
		return exitOK
	case err := <-done:
		return c.fail(fs.path, err)
	}
}

// loopbackAddrs returns the literal addresses that token serve tries, in
// order, for -addr: the address itself when its host is a loopback IP;
// 127.0.0.1 then ::1 when it is "localhost", which is never resolved
// (/etc/hosts or a DNS search domain could map it off loopback). Any other
// host is an error.
func loopbackAddrs(addr string) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(host, "localhost") {
		return []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)}, nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s is not a loopback address", addr)
	}
	return []string{addr}, nil
}

// boundToLoopback reports an error unless addr, the address a listener
// is bound to, is a TCP loopback address: the last check before serving.
func boundToLoopback(addr net.Addr) error {
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("bound to %s, which is not a loopback address; closed", addr)
}

// servedSet reads the set to serve and keeps only public keys.
func servedSet(jwksFile, keyFile string) (jwk.Set, error) {
	if keyFile != "" {
		key, err := readPrivateKey(keyFile)
		if err != nil {
			return nil, err
		}
		a, err := algFor(key.Public())
		if err != nil {
			return nil, err
		}
		pub, err := publicJWK(key.Public(), "", a)
		if err != nil {
			return nil, err
		}
		set := jwk.NewSet()
		return set, set.AddKey(pub)
	}
	b, err := readFile(jwksFile)
	if err != nil {
		return nil, err
	}
	in, err := jwk.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", jwksFile, err)
	}
	for i := range in.Len() {
		if k, _ := in.Key(i); k != nil && k.KeyType() == jwa.OctetSeq {
			return nil, fmt.Errorf("%s: holds a symmetric key, which is never served", jwksFile)
		}
	}
	pub, err := jwk.PublicSetOf(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", jwksFile, err)
	}
	return pub, nil
}
