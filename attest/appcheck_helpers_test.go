package attest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appcheck"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/stretchr/testify/require"
)

// The App Check issuer of the appcheck package's tests: a JWKS server
// that can be taken down or held, and a minter of tokens.

type appCheckIssuer struct {
	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey
	srv     *httptest.Server
	down    bool
	hold    chan struct{} // when set, each answer waits for it to close
	fetches atomic.Int64
}

func newAppCheckIssuer(t *testing.T) *appCheckIssuer {
	t.Helper()
	is := &appCheckIssuer{keys: map[string]*rsa.PrivateKey{}}
	is.addKey(t, "k1")
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		hold := is.hold
		is.mu.Unlock()
		if hold != nil {
			<-hold
		}
		is.mu.Lock()
		defer is.mu.Unlock()
		if is.down {
			w.WriteHeader(503)
			return
		}
		set := jwk.NewSet()
		for kid, k := range is.keys {
			pub, _ := jwk.FromRaw(&k.PublicKey)
			_ = pub.Set(jwk.KeyIDKey, kid)
			_ = pub.Set(jwk.AlgorithmKey, jwa.RS256)
			_ = set.AddKey(pub)
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *appCheckIssuer) addKey(t *testing.T, kid string) {
	t.Helper()
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys[kid] = rsaTestKey(t, len(is.keys))
}

// rsaTestKeys are generated once per test binary: a 2048-bit RSA key
// costs up to a second under the race detector, and each issuer needs
// only distinct keys, not fresh ones.
var (
	rsaTestKeysMu sync.Mutex
	rsaTestKeys   []*rsa.PrivateKey
)

// rsaTestKey returns the i-th shared test key.
func rsaTestKey(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	rsaTestKeysMu.Lock()
	defer rsaTestKeysMu.Unlock()
	for len(rsaTestKeys) <= i {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		rsaTestKeys = append(rsaTestKeys, k)
	}
	return rsaTestKeys[i]
}

func (is *appCheckIssuer) mint(t *testing.T, kid string, alg jwa.SignatureAlgorithm, typ string, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	base := map[string]any{
		"iss": "https://firebaseappcheck.googleapis.com/123456789", "aud": []string{"projects/123456789", "projects/shop-prod"},
		"sub": "1:123456789:android:abc", "iat": synthNow.Unix(), "exp": synthNow.Add(time.Hour).Unix(),
	}
	for k, v := range claims {
		base[k] = v
	}
	for k, v := range base {
		require.NoError(t, tok.Set(k, v))
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set("kid", kid)
	_ = hdr.Set("typ", typ)
	is.mu.Lock()
	key := any(is.keys[kid])
	is.mu.Unlock()
	if alg == jwa.HS256 {
		key = []byte("0123456789abcdef0123456789abcdef")
	}
	b, err := jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	require.NoError(t, err)
	return string(b)
}

func newAppCheck(t *testing.T, is *appCheckIssuer, clock *time.Time) *appcheck.Verifier {
	t.Helper()
	c, err := appcheck.New(appcheck.Config{
		ProjectNumber: "123456789", AppIDs: []string{"1:123456789:android:abc"},
		JWKSURL: is.srv.URL, HTTPClient: is.srv.Client(),
		Now: func() time.Time { return *clock }, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestAppCheckRetryAfterMatchesNextFetch: on a route that fails closed,
// the 503's Retry-After is the time until the next fetch of the key set,
// and a request sent then triggers it.
func TestAppCheckRetryAfterMatchesNextFetch(t *testing.T) {
	is := newAppCheckIssuer(t)
	is.down = true
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	v, err := New(Config{AppCheck: c, Outage: OutageFailClosed, Subject: func(*http.Request) (string, error) { return "", nil },
		Now: func() time.Time { return clock }, Logger: nopLogger()})
	require.NoError(t, err)
	h := v.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	call := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set(appcheck.Header, is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"iat": clock.Unix(), "exp": clock.Add(time.Hour).Unix()}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	rec := call()
	require.Equal(t, 503, rec.Code)
	secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, secs, 48)
	require.LessOrEqual(t, secs, 72)
	require.Equal(t, int64(1), is.fetches.Load())
	clock = clock.Add(time.Duration(secs-1) * time.Second)
	require.Equal(t, 503, call().Code)
	require.Equal(t, int64(1), is.fetches.Load(), "no fetch before Retry-After")
	is.mu.Lock()
	is.down = false
	is.mu.Unlock()
	clock = clock.Add(time.Second)
	require.Equal(t, 200, call().Code, "at Retry-After the server fetches, and serves")
	require.Equal(t, int64(2), is.fetches.Load())
}
