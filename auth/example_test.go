package auth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// The issuer's key; in production the Verifier fetches its public half
// from the JWKS URL.
var issuerKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mint signs an access token the way an authorization server does.
func mint(claims map[string]any) string {
	hdr := jws.NewHeaders()
	_ = hdr.Set("typ", "at+jwt")
	_ = hdr.Set("kid", "2026-03")
	base := map[string]any{
		"iss": "https://login.example.com/", "aud": "https://api.example.com", "sub": "user-42",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "scope": "orders:read",
	}
	for k, v := range claims {
		base[k] = v
	}
	payload, _ := json.Marshal(base)
	tok, err := jws.Sign(payload, jws.WithKey(jwa.EdDSA, issuerKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		panic(err)
	}
	return string(tok)
}

func newVerifier() *auth.Verifier {
	pub, _ := jwk.FromRaw(issuerKey.Public())
	_ = pub.Set(jwk.KeyIDKey, "2026-03")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{
			Issuer:   "https://login.example.com/",
			Audience: []string{"https://api.example.com"},
			Keys:     set, // or JWKSURL: "https://login.example.com/.well-known/jwks.json"
		}},
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	return v
}

func get(h http.Handler, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/orders", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func ExampleNew() {
	v := newVerifier()
	defer v.Close()
	orders := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := auth.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "orders of %s", claims.Subject)
	}))

	rec := get(orders, mint(nil))
	fmt.Println(rec.Code, rec.Body.String())
	rec = get(orders, "")
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 200 orders of user-42
	// 401 Bearer
}

// An attacker strips the signature and sets alg to none. The token is
// refused with the same answer as any other invalid token.
func ExampleVerifier_Handler_algNone() {
	v := newVerifier()
	defer v.Close()
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("never reached")
	}))
	enc := base64.RawURLEncoding.EncodeToString
	forged := enc([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." +
		enc([]byte(`{"iss":"https://login.example.com/","aud":"https://api.example.com","sub":"admin","iat":1772366400,"exp":1772366700}`)) + ".AA"
	rec := get(h, forged)
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	fmt.Print(rec.Body.String())
	// Output:
	// 401 Bearer error="invalid_token"
	// {"detail":"The access token is invalid.","status":401,"title":"Invalid token","type":"urn:apiguard:problem:invalid-token"}
}

// A token that lives for a month is refused even with a valid signature:
// MaxTokenLifetime defaults to one hour.
func ExampleVerifier_VerifyToken_longLived() {
	v := newVerifier()
	defer v.Close()
	_, err := v.VerifyToken(context.Background(), mint(map[string]any{"exp": now.Add(30 * 24 * time.Hour).Unix()}))
	fmt.Println(err)
	// Output: auth: token lifetime too long: exp - iat is 720h0m0s, over Config.MaxTokenLifetime (1h0m0s)
}

func ExampleVerifier_Require() {
	v := newVerifier()
	defer v.Close()
	h := v.Require("orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rec := get(h, mint(nil)) // the token grants orders:read only
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output: 403 Bearer error="insufficient_scope", scope="orders:write"
}

func ExampleVerifier_RequireWith() {
	v := newVerifier()
	defer v.Close()
	payout := v.RequireWith(auth.Requirement{ACRValues: []string{"urn:example:mfa"}, MaxAge: 5 * time.Minute})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "paid") }))

	weak := mint(map[string]any{"acr": "urn:example:pwd", "auth_time": now.Add(-time.Hour).Unix()})
	rec := get(payout, weak)
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))

	strong := mint(map[string]any{"acr": "urn:example:mfa", "auth_time": now.Add(-time.Minute).Unix()})
	rec = get(payout, strong)
	fmt.Println(rec.Code, rec.Body.String())
	// Output:
	// 401 Bearer error="insufficient_user_authentication", acr_values="urn:example:mfa", max_age="300"
	// 200 paid
}

func ExamplePKCEChallengeS256() {
	// RFC 7636 Appendix B.
	verifier := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	challenge := auth.PKCEChallengeS256(verifier)
	fmt.Println(challenge)
	fmt.Println(auth.VerifyPKCE(verifier, challenge, "S256"))
	fmt.Println(auth.VerifyPKCE(verifier, verifier, "plain"))
	// Output:
	// E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM
	// <nil>
	// auth: PKCE method must be S256
}

func ExampleClaimsFrom() {
	v := newVerifier()
	defer v.Close()
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := auth.ClaimsFrom(r.Context())
		fmt.Println(ok, c.Subject, c.Scopes, c.HasScope("orders:read"))
	}))
	get(h, mint(nil))
	// Output: true user-42 [orders:read] true
}

// idp stands in for the authorization server's JWKS endpoint, without a
// network: it answers status, with the issuer's key set when 200.
type idp int

func (status idp) RoundTrip(r *http.Request) (*http.Response, error) {
	pub, _ := jwk.FromRaw(issuerKey.Public())
	_ = pub.Set(jwk.KeyIDKey, "2026-03")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	body, _ := json.Marshal(set)
	if status != http.StatusOK {
		body = nil
	}
	return &http.Response{StatusCode: int(status), Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

func remoteVerifier(status idp) *auth.Verifier {
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{
			Issuer:   "https://login.example.com/",
			Audience: []string{"https://api.example.com"},
			JWKSURL:  "https://login.example.com/.well-known/jwks.json",
		}},
		HTTPClient: &http.Client{Transport: status},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	return v
}

// Wait for the issuer's keys at start-up, before taking traffic.
func ExampleVerifier_WaitReady() {
	v := remoteVerifier(http.StatusOK)
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitReady(ctx); err != nil {
		fmt.Println("not ready:", err) // in main: log.Fatal(err)
		return
	}
	_, loaded, lastErr := v.KeySetAge()
	fmt.Println("ready", loaded, lastErr)
	// Output: ready true <nil>
}

// A JWKS URL that answers 404: Ready names the issuer and the cause, for
// a readiness probe, and KeySetAge feeds the gauges.
func ExampleVerifier_Ready() {
	v := remoteVerifier(http.StatusNotFound)
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a probe's timeout
	defer cancel()
	fmt.Println(v.Ready(ctx))
	_, loaded, lastErr := v.KeySetAge()
	fmt.Println(loaded, lastErr)
	// Output:
	// auth: signing keys unavailable: key set of https://login.example.com/ not loaded: GET https://login.example.com/.well-known/jwks.json returned 404
	// false auth: key set of https://login.example.com/: GET https://login.example.com/.well-known/jwks.json returned 404
}

// metadataIdP stands in for an authorization server without a network:
// its OpenID Connect discovery document says issuer is iss, and its JWKS
// holds the issuer's key.
type metadataIdP struct{ iss string }

func (m metadataIdP) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	switch r.URL.String() {
	case "https://login.example.com/.well-known/openid-configuration":
		body, _ = json.Marshal(map[string]string{
			"issuer": m.iss, "jwks_uri": "https://login.example.com/keys", "token_endpoint": "https://login.example.com/token",
		})
	case "https://login.example.com/keys":
		return idp(http.StatusOK).RoundTrip(r)
	default:
		return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

func ExampleDiscover() {
	client := &http.Client{Transport: metadataIdP{iss: "https://login.example.com/"}}
	m, err := auth.Discover(context.Background(), client, "https://login.example.com/")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.URL)
	fmt.Println(m.JWKSURI, m.TokenEndpoint)
	// Output:
	// https://login.example.com/.well-known/openid-configuration
	// https://login.example.com/keys https://login.example.com/token
}

// An issuer configured with its URL only: the Verifier discovers its
// jwks_uri, then fetches the keys, on the key-fetch schedule.
func ExampleIssuer_discovery() {
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{
			Issuer:   "https://login.example.com/",
			Audience: []string{"https://api.example.com"},
		}},
		HTTPClient: &http.Client{Transport: metadataIdP{iss: "https://login.example.com/"}},
		Now:        func() time.Time { return now },
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println(v.WaitReady(ctx))
	c, err := v.VerifyToken(ctx, mint(nil))
	fmt.Println(c.Subject, err)
	// Output:
	// <nil>
	// user-42 <nil>
}

// The discovery document names another issuer (a mix-up, or an attacker
// serving their own document): refused, and its keys never fetched.
// Tokens get 503 while Ready says why.
func ExampleIssuer_discoveryIssuerMismatch() {
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{
			Issuer:   "https://login.example.com/",
			Audience: []string{"https://api.example.com"},
		}},
		HTTPClient: &http.Client{Transport: metadataIdP{iss: "https://attacker.example/"}},
		Now:        func() time.Time { return now },
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(v.Ready(ctx))
	// Output:
	// auth: signing keys unavailable: key set of https://login.example.com/ not loaded: discovery document https://login.example.com/.well-known/openid-configuration: issuer mismatch: the document is for "https://attacker.example/", configured issuer is "https://login.example.com/"
}

// The RFC 9728 document for an API at https://api.example.com/v1, and
// the resource_metadata parameter that points clients to it from every
// challenge.
func ExampleVerifier_MetadataHandler() {
	pub, _ := jwk.FromRaw(issuerKey.Public())
	_ = pub.Set(jwk.KeyIDKey, "2026-03")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	v, err := auth.New(auth.Config{
		Issuers:          []auth.Issuer{{Issuer: "https://login.example.com/", Audience: []string{"https://api.example.com/v1"}, Keys: set}},
		Resource:         "https://api.example.com/v1",
		ResourceMetadata: auth.ResourceMetadata{Scopes: []string{"orders:read", "orders:write"}},
		DPoP:             auth.DPoPAllowed,
		DPoPURL:          "https://api.example.com/v1",
		DPoPAlgorithms:   []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA},
		Now:              func() time.Time { return now },
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	mux := http.NewServeMux()
	u, _ := url.Parse(v.MetadataURL())
	mux.Handle("GET "+u.Path, v.MetadataHandler())
	mux.Handle("/v1/orders", v.Handler(http.NotFoundHandler()))

	fmt.Println(v.MetadataURL())
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", u.Path, nil))
	var doc bytes.Buffer
	_ = json.Indent(&doc, rec.Body.Bytes(), "", "  ")
	fmt.Println(doc.String())
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/orders", nil))
	fmt.Println(rec.Code, rec.Header().Values("WWW-Authenticate"))
	// Output:
	// https://api.example.com/.well-known/oauth-protected-resource/v1
	// {
	//   "resource": "https://api.example.com/v1",
	//   "authorization_servers": [
	//     "https://login.example.com/"
	//   ],
	//   "scopes_supported": [
	//     "orders:read",
	//     "orders:write"
	//   ],
	//   "bearer_methods_supported": [
	//     "header"
	//   ],
	//   "dpop_signing_alg_values_supported": [
	//     "ES256",
	//     "EdDSA"
	//   ],
	//   "dpop_bound_access_tokens_required": false
	// }
	// 401 [Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/v1" DPoP resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/v1", algs="ES256 EdDSA"]
}

// An issuer whose access tokens are opaque: the Verifier asks its
// introspection endpoint (RFC 7662), here a stand-in for the identity
// provider's, and caches the answer by the token's hash. A revoked token
// is inactive at the endpoint, and refused like any invalid token.
func ExampleIntrospection() {
	var calls atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if id, secret, _ := r.BasicAuth(); id != "orders-api" || secret != "from-the-secret-store" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		answer := map[string]any{"active": false}
		if r.PostFormValue("token") == "2YotnFZFEjr1zCsicMWpAA" {
			answer = map[string]any{"active": true, "iss": "https://login.example.com/", "aud": "https://api.example.com",
				"sub": "user-42", "scope": "orders:read", "exp": now.Add(10 * time.Minute).Unix()}
		}
		_ = json.NewEncoder(w).Encode(answer)
	}))
	defer idp.Close()

	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{
			Issuer:   "https://login.example.com/",
			Audience: []string{"https://api.example.com"},
			Introspection: &auth.Introspection{
				URL:          idp.URL + "/introspect", // https in production
				ClientID:     "orders-api",
				ClientSecret: "from-the-secret-store",
				// Cache: redisstore.NewIntrospectionCache(rdb, opts), so that
				// all instances make one call per token.
			},
		}},
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	orders := v.Require("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := auth.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "orders of %s", claims.Subject)
	}))
	for _, token := range []string{"2YotnFZFEjr1zCsicMWpAA", "2YotnFZFEjr1zCsicMWpAA", "revoked-token"} {
		if rec := get(orders, token); rec.Code == http.StatusOK {
			fmt.Println(rec.Code, rec.Body.String())
		} else {
			fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	fmt.Println("calls:", calls.Load()) // the second request was answered from the cache
	// Output:
	// 200 orders of user-42
	// 200 orders of user-42
	// 401 Bearer error="invalid_token"
	// calls: 2
}
