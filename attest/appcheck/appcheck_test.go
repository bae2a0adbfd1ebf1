package appcheck

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/stretchr/testify/require"
)

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

func newAppCheck(t *testing.T, is *appCheckIssuer, clock *time.Time) *Verifier {
	t.Helper()
	c, err := New(Config{
		ProjectNumber: "123456789", AppIDs: []string{"1:123456789:android:abc"},
		JWKSURL: is.srv.URL, HTTPClient: is.srv.Client(),
		Now: func() time.Time { return *clock }, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAppCheck(t *testing.T) {
	is := newAppCheckIssuer(t)
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	ctx := context.Background()
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{name: "valid", tok: is.mint(t, "k1", jwa.RS256, "JWT", nil)},
		{name: "wrong_issuer", tok: is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"iss": "https://firebaseappcheck.googleapis.com/999"}), want: ErrToken},
		{name: "wrong_audience", tok: is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"aud": []string{"projects/999"}}), want: ErrToken},
		{name: "expired", tok: is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"exp": synthNow.Add(-time.Hour).Unix(), "iat": synthNow.Add(-2 * time.Hour).Unix()}), want: ErrToken},
		{name: "other_app", tok: is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"sub": "1:123456789:ios:evil"}), want: ErrToken},
		{name: "typ_not_jwt", tok: is.mint(t, "k1", jwa.RS256, "at+jwt", nil), want: ErrToken},
		{name: "hs256", tok: is.mint(t, "k1", jwa.HS256, "JWT", nil), want: ErrToken},
		{name: "garbage", tok: "x.y.z", want: ErrToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Verify(ctx, tt.tok)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "1:123456789:android:abc", got.AppID)
		})
	}
}

func TestAppCheckKeyRotationAndOutage(t *testing.T) {
	is := newAppCheckIssuer(t)
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	ctx := context.Background()
	_, err := c.Verify(ctx, is.mint(t, "k1", jwa.RS256, "JWT", nil))
	require.NoError(t, err)

	is.addKey(t, "k2")
	clock = clock.Add(2 * time.Minute)
	_, err = c.Verify(ctx, is.mint(t, "k2", jwa.RS256, "JWT", map[string]any{"iat": clock.Unix(), "exp": clock.Add(time.Hour).Unix()}))
	require.NoError(t, err, "an unknown kid refreshes the set")

	is.addKey(t, "k3")
	k3 := is.mint(t, "k3", jwa.RS256, "JWT", map[string]any{"iat": clock.Unix(), "exp": clock.Add(time.Hour).Unix()})
	_, err = c.Verify(ctx, k3)
	require.ErrorIs(t, err, ErrVendor, "refreshes are spaced: a valid token with a new kid waits for the next one, as an outage, not as an invalid token")
	ue, ok := errors.AsType[*UnavailableError](err)
	require.True(t, ok)
	require.Equal(t, time.Minute, ue.RetryAfter, "the next refresh is MinRefresh after the last")
	clock = clock.Add(ue.RetryAfter)
	_, err = c.Verify(ctx, k3)
	require.NoError(t, err, "at Retry-After the set is refreshed")

	is.mu.Lock()
	is.down = true
	is.mu.Unlock()
	other := newAppCheck(t, is, &clock)
	_, err = other.Verify(ctx, is.mint(t, "k1", jwa.RS256, "JWT", nil))
	require.ErrorIs(t, err, ErrVendor, "no key set at all: the vendor is down")
}

// TestNegativeConfigNamesField: a negative duration is an error naming
// its field, never a silent default.
func TestNegativeConfigNamesField(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative_min_refresh", func(c *Config) { c.MinRefresh = -time.Second }, "appcheck.Config.MinRefresh must not be negative (got -1s)"},
		{"negative_max_wait", func(c *Config) { c.MaxWait = -time.Millisecond }, "appcheck.Config.MaxWait must not be negative (got -1ms)"},
		{"negative_fetch_timeout", func(c *Config) { c.FetchTimeout = -time.Second }, "appcheck.Config.FetchTimeout must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{ProjectNumber: "123456789"}
			tt.mod(&cfg)
			_, err := New(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
