package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/stretchr/testify/require"
)

const (
	testIssuer   = "https://issuer.example.com/"
	testAudience = "https://api.example.com"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testClock is a settable clock.
type testClock = testkit.Clock

// signer is one private key with its public JWK. It signs each distinct
// header and payload once, and hands out the same JWS when asked again:
// signing dominates the suite's time under the race detector, and floods
// sign the same content many times.
type signer struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv any
	pub  jwk.Key

	mu     sync.Mutex
	signed map[string]string // by header and payload JSON
}

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
)

func sharedRSA(t testing.TB) *rsa.PrivateKey {
	keysOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func newSigner(t testing.TB, alg jwa.SignatureAlgorithm, kid string) *signer {
	t.Helper()
	var priv, pubRaw any
	switch alg {
	case jwa.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		priv, pubRaw = k, &k.PublicKey
	case jwa.RS256, jwa.PS256:
		k := sharedRSA(t)
		priv, pubRaw = k, &k.PublicKey
	case jwa.EdDSA:
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		priv, pubRaw = k, pub
	default:
		t.Fatalf("no signer for %s", alg)
	}
	pub, err := jwk.FromRaw(pubRaw)
	require.NoError(t, err)
	require.NoError(t, pub.Set(jwk.KeyIDKey, kid))
	return &signer{kid: kid, alg: alg, priv: priv, pub: pub}
}

// sign makes a compact JWS with the given protected header members.
func (s *signer) sign(t testing.TB, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	h := jws.NewHeaders()
	for k, v := range hdr {
		require.NoError(t, h.Set(k, v))
	}
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	hdrJSON, err := json.Marshal(h)
	require.NoError(t, err)
	key := string(hdrJSON) + "\x00" + string(payload)
	s.mu.Lock()
	tok, ok := s.signed[key]
	s.mu.Unlock()
	if ok {
		return tok
	}
	out, err := jws.Sign(payload, jws.WithKey(s.alg, s.priv, jws.WithProtectedHeaders(h)))
	require.NoError(t, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signed == nil {
		s.signed = map[string]string{}
	}
	if len(s.signed) < 10_000 {
		s.signed[key] = string(out)
	}
	return string(out)
}

// token makes an access token: typ at+jwt, kid, and claims over the
// defaults (iss, aud, sub, iat, exp of 10 minutes).
func (s *signer) token(t testing.TB, override map[string]any) string {
	t.Helper()
	claims := map[string]any{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "user-1",
		"client_id": "mobile-app",
		"iat":       t0.Unix(),
		"exp":       t0.Add(10 * time.Minute).Unix(),
		"jti":       "tok-1",
		"scope":     "orders:read profile",
	}
	for k, v := range override {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return s.sign(t, map[string]any{"typ": "at+jwt", "kid": s.kid}, claims)
}

func jwkSet(t testing.TB, signers ...*signer) jwk.Set {
	t.Helper()
	set := jwk.NewSet()
	for _, s := range signers {
		require.NoError(t, set.AddKey(s.pub))
	}
	return set
}

// logSink collects log output from concurrent writers.
type logSink struct{ testkit.LogSink }

func (l *logSink) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestVerifier builds a Verifier over static keys with a fixed clock.
func newTestVerifier(t testing.TB, clk *testClock, mod func(*Config), signers ...*signer) (*Verifier, *logSink) {
	t.Helper()
	logs := &logSink{}
	cfg := Config{
		Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: jwkSet(t, signers...)}},
		Now:     clk.Now,
		Logger:  logs.logger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	logs.Reset() // New's warning that the test logger counts no events
	return v, logs
}

// call sends one request through h and returns the recorder and whether
// the final handler ran.
func call(h func(http.Handler) http.Handler, req *http.Request) (*httptest.ResponseRecorder, bool, *Claims) {
	reached := false
	var claims *Claims
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		claims, _ = ClaimsFrom(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	rec := httptest.NewRecorder()
	h(next).ServeHTTP(rec, req)
	return rec, reached, claims
}

func bearer(token string) *http.Request {
	r := httptest.NewRequest("GET", "https://api.example.com/orders/7?x=1", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b64.EncodeToString(b)
}

var _ = context.Background
var _ = strings.Repeat
