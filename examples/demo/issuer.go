package main

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// issuer is a tiny in-process authorization server: PKCE authorization
// codes, short-lived ES256 access tokens (DPoP-bound when the client sends
// a proof key), and a JWKS endpoint. It stands in for the identity
// provider a real deployment has.
type issuer struct {
	url      string
	audience string
	key      *ecdsa.PrivateKey
	pub      jwk.Key

	mu    sync.Mutex
	codes map[string]grant // code -> what its redemption needs
}

// grant is what an authorization code was issued for.
type grant struct {
	challenge string // the PKCE challenge
	subject   string // the account that signed in
}

// demoSubject is the account a sign-in without login_hint is for, and
// the subject of the tokens the demo mints itself (-serve's curl lines).
const demoSubject = "user-42"

// newIssuer signs with k: random per process, or derived from the shared
// secret so that every instance mints and verifies the same tokens.
func newIssuer(url, audience string, k *ecdsa.PrivateKey) (*issuer, error) {
	pub, err := jwk.FromRaw(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	_ = pub.Set(jwk.KeyIDKey, "demo-2026")
	_ = pub.Set(jwk.KeyUsageKey, "sig")
	return &issuer{url: url, audience: audience, key: k, pub: pub, codes: map[string]grant{}}, nil
}

func (is *issuer) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		set := jwk.NewSet()
		_ = set.AddKey(is.pub)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "max-age=300")
		_ = json.NewEncoder(w).Encode(set)
	})
	// The user signs in; the app sent the PKCE challenge and gets a code.
	// The stand-in authenticates nobody: the account that signs in is the
	// one login_hint names (OpenID Connect Core §3.1.2.1), user-42 when
	// there is none. The scripted client names an account of its own for
	// each run, so that runs on one Redis never meet each other's risk
	// history or per-user limits. A real server signs the user in here.
	mux.HandleFunc("POST /oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		subject := r.FormValue("login_hint")
		if subject == "" {
			subject = demoSubject
		}
		if r.FormValue("code_challenge_method") != "S256" || r.FormValue("code_challenge") == "" || !validSubject(subject) {
			oauthError(w, "invalid_request")
			return
		}
		code, err := auth.NewPKCEVerifier() // any random string does for a code
		if err != nil {
			oauthError(w, "server_error")
			return
		}
		is.mu.Lock()
		is.codes[code] = grant{challenge: r.FormValue("code_challenge"), subject: subject}
		is.mu.Unlock()
		writeJSON(w, map[string]string{"code": code})
	})
	// The app redeems the code with its PKCE verifier; with a DPoP header
	// the token is bound to the proof's key (RFC 9449 §5).
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		code := r.FormValue("code")
		is.mu.Lock()
		g, ok := is.codes[code]
		delete(is.codes, code) // single use
		is.mu.Unlock()
		if !ok || auth.VerifyPKCE(r.FormValue("code_verifier"), g.challenge, "S256") != nil {
			oauthError(w, "invalid_grant")
			return
		}
		claims := map[string]any{"sub": g.subject, "scope": "orders:read profile payments", "acr": "urn:demo:mfa", "auth_time": time.Now().Unix()}
		if proof := r.Header.Get("DPoP"); proof != "" {
			jkt, err := proofKeyThumbprint(proof)
			if err != nil {
				oauthError(w, "invalid_dpop_proof")
				return
			}
			claims["cnf"] = map[string]any{"jkt": jkt}
		}
		tok, err := is.mint(claims, time.Now(), 5*time.Minute)
		if err != nil {
			oauthError(w, "server_error")
			return
		}
		writeJSON(w, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 300})
	})
}

// mint signs an access token; extra claims override the defaults.
func (is *issuer) mint(extra map[string]any, iat time.Time, lifetime time.Duration) (string, error) {
	claims := map[string]any{
		"iss": is.url, "aud": is.audience, "sub": demoSubject, "client_id": "shop-ios",
		"iat": iat.Unix(), "exp": iat.Add(lifetime).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set("typ", "at+jwt")
	_ = hdr.Set("kid", "demo-2026")
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, is.key, jws.WithProtectedHeaders(hdr)))
	return string(out), err
}

// proofKeyThumbprint checks that a DPoP proof is signed by the key in its
// header and returns that key's thumbprint. (A real authorization server
// checks all of RFC 9449 §4.3 here too; the demo keeps to the binding.)
func proofKeyThumbprint(proof string) (string, error) {
	msg, err := jws.Parse([]byte(proof))
	if err != nil || len(msg.Signatures()) != 1 {
		return "", errors.New("malformed proof")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	key := hdr.JWK()
	if key == nil || hdr.Type() != "dpop+jwt" {
		return "", errors.New("not a DPoP proof")
	}
	if _, err := jws.Verify([]byte(proof), jws.WithKey(hdr.Algorithm(), key)); err != nil {
		return "", err
	}
	return auth.Thumbprint(key)
}

// validSubject reports whether s is 1 to 64 characters of A-Z, a-z,
// 0-9, '.', '_' and '-': what the demo takes as an account name.
func validSubject(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func oauthError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
