package auth

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// TestKidFlood sends a million tokens with distinct random kids at a
// verifier with a remote JWKS: at most one fetch per MinKeyRefresh, the
// bogus-kid memory stays at its bound, and a real token still verifies.
func TestKidFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.EdDSA, "real")
	srv := newJWKSServer(t, a)
	v, _ := newRemoteVerifier(t, clk, srv.URL, func(c *Config) { c.TokenCacheSize = 1000 })
	_, err := v.VerifyToken(t.Context(), a.token(t, nil))
	require.NoError(t, err)
	fetches := srv.fetches.Load()

	// Forged tokens differ only in kid; build them without signing each.
	valid := a.token(t, nil)
	_, rest, _ := cut(valid)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		hdr := b64json(t, map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": fmt.Sprintf("bogus-%d", i)})
		_, err := v.VerifyToken(t.Context(), hdr+"."+rest)
		if err == nil {
			t.Fatal("a bogus kid verified")
		}
		if i%250_000 == 0 {
			clk.Advance(2 * time.Minute) // a few refresh intervals pass during the flood
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap after a million bogus kids: %+d bytes", int64(after.HeapAlloc)-int64(before.HeapAlloc))
	require.LessOrEqual(t, srv.fetches.Load()-fetches, int32(4), "one fetch per interval at most")
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(16<<20))
	_, err = v.VerifyToken(t.Context(), a.token(t, map[string]any{"iat": clk.Now().Unix(), "exp": clk.Now().Add(time.Minute).Unix()}))
	require.NoError(t, err)
}

func cut(tok string) (string, string, bool) {
	for i := range len(tok) {
		if tok[i] == '.' {
			return tok[:i], tok[i+1:], true
		}
	}
	return tok, "", false
}

// TestTokenCacheFlood fills the verified-token cache with a million
// distinct tokens: it stays at TokenCacheSize, the heap stays bounded, and
// an evicted token is verified again in full rather than trusted.
// Signing and verifying a million tokens would take minutes, so 5,000
// real tokens go through VerifyToken and the rest are added the way
// VerifyToken adds them, keyed by the SHA-256 of the token.
func TestTokenCacheFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	const size = 1000
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.EdDSA, "k1")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.TokenCacheSize = size }, a)
	first := a.token(t, map[string]any{"jti": "first"})
	_, err := v.VerifyToken(t.Context(), first)
	require.NoError(t, err)
	var claims *Claims
	for i := range 5000 {
		claims, err = v.VerifyToken(t.Context(), a.token(t, map[string]any{"jti": fmt.Sprintf("t-%d", i)}))
		require.NoError(t, err)
	}
	require.Equal(t, size, v.cache.Len())

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		cp := *claims
		v.cache.Add(sha256.Sum256(fmt.Appendf(nil, "token-%d", i)), cachedToken{claims: &cp, ik: v.issuers[testIssuer], gen: 1})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(t, size, v.cache.Len(), "the cache holds TokenCacheSize tokens, whatever the flood")
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after a million tokens: %+d bytes for %d cached", grew, size)
	require.Less(t, grew, int64(4<<20), "a million tokens through a 1,000-entry cache keep the heap within 4 MiB")

	// The first token was evicted long ago: it verifies again (signature
	// and all), and a tampered copy of it does not.
	key := sha256.Sum256([]byte(first))
	_, cached := v.cache.Peek(key)
	require.False(t, cached)
	_, err = v.VerifyToken(t.Context(), first)
	require.NoError(t, err)
	_, err = v.VerifyToken(t.Context(), tamperSignature(first))
	require.ErrorIs(t, err, ErrSignature)
}

// tamperSignature changes one character inside the signature part of a
// compact JWS, always to a different one (replacing the last characters
// with fixed ones left the token unchanged whenever it already ended in
// them: one run in 256 for a random signature).
func tamperSignature(tok string) string {
	i := len(tok) - 10 // well inside the signature, clear of its last, partial character
	c := byte('A')
	if tok[i] == c {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
