package auth

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// fakeRevocations revokes by jti, and counts the questions.
type fakeRevocations struct {
	mu    sync.Mutex
	jtis  map[string]bool
	asked int
	got   [5]string
	iat   time.Time
}

func (f *fakeRevocations) Revoked(iss, sub, sid, jti, clientID string, issuedAt time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	f.got = [5]string{iss, sub, sid, jti, clientID}
	f.iat = issuedAt
	return f.jtis[jti]
}

func (f *fakeRevocations) revoke(jti string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jtis[jti] = true
}

// TestRevokedTokenServedFromCache: a token verified and cached, then
// revoked, is refused on the next request (401 invalid_token, reason
// "revoked"), although the cache still holds it; other tokens pass.
func TestRevokedTokenServedFromCache(t *testing.T) {
	clk := testkit.NewClock(t0.Add(time.Minute))
	s := newSigner(t, jwa.ES256, "k1")
	revs := &fakeRevocations{jtis: map[string]bool{}}
	v, logs := newTestVerifier(t, clk, func(c *Config) { c.Revocations = revs }, s)
	tok := s.token(t, map[string]any{"sid": "sess-9"})

	rec, reached, _ := call(v.Handler, bearer(tok))
	require.Equal(t, http.StatusNoContent, rec.Code)
	require.True(t, reached)
	require.Equal(t, [5]string{testIssuer, "user-1", "sess-9", "tok-1", "mobile-app"}, revs.got, "every claim revocation keys on is passed")
	require.True(t, revs.iat.Equal(t0))
	_, reached, _ = call(v.Handler, bearer(tok))
	require.True(t, reached, "served from the cache")
	require.Equal(t, 2, revs.asked, "the cache hit is checked too")
	require.Equal(t, 1, v.cache.Len())

	revs.revoke("tok-1")
	rec, reached, _ = call(v.Handler, bearer(tok))
	require.False(t, reached)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`)
	require.Contains(t, logs.String(), `"reason":"revoked"`)
	_, err := v.VerifyToken(t.Context(), tok)
	require.ErrorIs(t, err, ErrRevoked)

	other := s.token(t, map[string]any{"jti": "tok-2"})
	rec, reached, _ = call(v.Handler, bearer(other))
	require.True(t, reached, "an unrevoked token still passes")
	require.Equal(t, http.StatusNoContent, rec.Code)
}

// TestRevokedTokenNeverCached: a token revoked before its first use is
// refused and not cached.
func TestRevokedTokenNeverCached(t *testing.T) {
	clk := testkit.NewClock(t0.Add(time.Minute))
	s := newSigner(t, jwa.ES256, "k1")
	revs := &fakeRevocations{jtis: map[string]bool{"tok-1": true}}
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.Revocations = revs }, s)
	_, err := v.VerifyToken(t.Context(), s.token(t, nil))
	require.ErrorIs(t, err, ErrRevoked)
	require.Equal(t, 0, v.cache.Len())
}

// TestRevokedOpaqueTokenServedFromIntrospectionCache: an opaque token
// whose introspection answer is cached, then revoked (its jti, or its
// session), is refused on the next request without a call to the
// endpoint: revocation does not wait for the cached answer to expire.
func TestRevokedOpaqueTokenServedFromIntrospectionCache(t *testing.T) {
	clk := testkit.NewClock(t0)
	srv := newIntroServer(t)
	revs := &fakeRevocations{jtis: map[string]bool{}}
	v, logs := newIntroVerifier(t, clk, srv, func(c *Config) { c.Revocations = revs })
	srv.answer("opaque-token-1", map[string]any{"jti": "j-1", "sid": "sess-4"})

	rec, reached, _ := call(v.Handler, bearer("opaque-token-1"))
	require.True(t, reached, rec.Body.String()+logs.String())
	require.Equal(t, [5]string{testIssuer, "user-1", "sess-4", "j-1", "mobile-app"}, revs.got, "every claim revocation keys on is passed")
	_, reached, _ = call(v.Handler, bearer("opaque-token-1"))
	require.True(t, reached, "served from the introspection cache")
	require.EqualValues(t, 1, srv.calls.Load())

	revs.revoke("j-1")
	rec, reached, _ = call(v.Handler, bearer("opaque-token-1"))
	require.False(t, reached)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`)
	require.Contains(t, logs.String(), `"reason":"revoked"`)
	require.EqualValues(t, 1, srv.calls.Load(), "refused from the cached answer, no new call")
}
