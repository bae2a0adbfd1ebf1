package redisstore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func sign(t *testing.T, key *ecdsa.PrivateKey, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	h := jws.NewHeaders()
	for k, v := range hdr {
		require.NoError(t, h.Set(k, v))
	}
	b, err := json.Marshal(claims)
	require.NoError(t, err)
	out, err := jws.Sign(b, jws.WithKey(jwa.ES256, key, jws.WithProtectedHeaders(h)))
	require.NoError(t, err)
	return string(out)
}

// TestDPoPReplayAcrossVerifiers: two API instances share Redis; a proof
// used on one is refused on the other, and a Redis outage is a 503.
func TestDPoPReplayAcrossVerifiers(t *testing.T) {
	srv := redistest.Start(t)
	issuer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	device, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub, err := jwk.FromRaw(&issuer.PublicKey)
	require.NoError(t, err)
	require.NoError(t, pub.Set(jwk.KeyIDKey, "k1"))
	set := jwk.NewSet()
	require.NoError(t, set.AddKey(pub))
	devPub, err := jwk.FromRaw(&device.PublicKey)
	require.NoError(t, err)
	jkt, err := auth.Thumbprint(devPub)
	require.NoError(t, err)

	newInstance := func() *auth.Verifier {
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()}, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DialTimeout: testTimeout})
		t.Cleanup(func() { _ = rdb.Close() })
		v, err := auth.New(auth.Config{
			Issuers:     []auth.Issuer{{Issuer: "https://idp.example/", Audience: []string{"api"}, Keys: set}},
			DPoP:        auth.DPoPRequired,
			DPoPURL:     "https://api.example.com",
			ReplayStore: redisstore.NewReplayStore(rdb, redisstore.Options{Timeout: testTimeout}),
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = v.Close() })
		return v
	}
	a, b := newInstance(), newInstance()

	now := time.Now()
	token := sign(t, issuer, map[string]any{"typ": "at+jwt", "kid": "k1"}, map[string]any{
		"iss": "https://idp.example/", "aud": "api", "sub": "u", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"cnf": map[string]any{"jkt": jkt},
	})
	request := func(jti string) *http.Request {
		p := sign(t, device, map[string]any{"typ": "dpop+jwt", "jwk": devPub}, map[string]any{
			"jti": jti, "htm": "GET", "htu": "https://api.example.com/orders", "iat": time.Now().Unix(), "ath": auth.AccessTokenHash(token),
		})
		r := httptest.NewRequest("GET", "https://api.example.com/orders", nil)
		r.Header.Set("Authorization", "DPoP "+token)
		r.Header.Set("DPoP", p)
		return r
	}
	serve := func(v *auth.Verifier, r *http.Request) (int, bool) {
		reached := false
		rec := httptest.NewRecorder()
		v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })).ServeHTTP(rec, r)
		return rec.Code, reached
	}

	r1 := request("proof-1")
	code, reached := serve(a, r1)
	require.Equal(t, 200, code)
	require.True(t, reached)
	replay := r1.Clone(r1.Context())
	code, reached = serve(b, replay)
	require.Equal(t, 401, code, "replay across two verifiers sharing Redis")
	require.False(t, reached)

	srv.Stop()
	rec := httptest.NewRecorder()
	a.Handler(http.NotFoundHandler()).ServeHTTP(rec, request("proof-2"))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "store outage fails closed with 503")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
}
