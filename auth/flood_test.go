package auth

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// TestKidFlood sends tokens with distinct kids, issued before the last
// fetch, at a verifier with a remote JWKS: at most one fetch per
// MinKeyRefresh, no memory kept per bogus kid, and a real token still
// verifies. By default the flood is 20,000 tokens, enough to show a leak
// of 24 bytes per kid (keeping the kid's text alone takes more);
// APIGUARD_SOAK=1 sends a million, for a bound of 16 bytes.
func TestKidFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	n, perKid := 20_000, int64(24)
	if os.Getenv("APIGUARD_SOAK") != "" {
		n, perKid = 1_000_000, 16
	}
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.EdDSA, "real")
	srv := newJWKSServer(t, a)
	v, _ := newRemoteVerifier(t, clk, srv.URL, func(c *Config) { c.TokenCacheSize = 1000 })
	_, err := v.VerifyToken(t.Context(), a.token(t, nil))
	require.NoError(t, err)
	fetches := srv.fetches.Load()

	// Forged tokens differ only in kid; build them without signing each.
	// Their claims are the few the flood's path reads, issued before the
	// fetches the flood sees.
	valid := a.sign(t, map[string]any{"typ": "at+jwt", "kid": "real"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()})
	_, rest, _ := cut(valid)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	hdr := make([]byte, 0, 128)
	for i := range n {
		hdr = append(hdr[:0], `{"alg":"EdDSA","typ":"at+jwt","kid":"bogus-`...)
		hdr = strconv.AppendInt(hdr, int64(i), 10)
		hdr = append(hdr, `"}`...)
		_, err := v.VerifyToken(t.Context(), b64.EncodeToString(hdr)+"."+rest)
		if err == nil {
			t.Fatal("a bogus kid verified")
		}
		if i%(n/4) == 0 {
			clk.Advance(2 * time.Minute) // a few refresh intervals pass during the flood
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after %d bogus kids: %+d bytes", n, grew)
	require.LessOrEqual(t, srv.fetches.Load()-fetches, int32(4), "one fetch per interval at most")
	require.Less(t, grew, int64(n)*perKid, "memory per bogus kid")
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

// TestTokenCacheFlood floods the verified-token cache with distinct
// tokens: it stays at TokenCacheSize, the heap stays bounded, and an
// evicted token is verified again in full rather than trusted. Signing
// and verifying every token would take minutes, so 300 real tokens (half
// again the cache) go through VerifyToken and the rest, 200,000 (a
// million with APIGUARD_SOAK=1), are added the way VerifyToken adds them,
// under distinct 32-byte keys, each with its own claims: within 2 MiB, a
// leak of 11 bytes a token shows (3 with APIGUARD_SOAK=1).
func TestTokenCacheFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	const size = 200
	n := 200_000
	if os.Getenv("APIGUARD_SOAK") != "" {
		n = 1_000_000
	}
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.EdDSA, "k1")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.TokenCacheSize = size }, a)
	first := a.token(t, map[string]any{"jti": "first"})
	_, err := v.VerifyToken(t.Context(), first)
	require.NoError(t, err)
	var claims *Claims
	for i := range size + size/2 {
		claims, err = v.VerifyToken(t.Context(), a.token(t, map[string]any{"jti": fmt.Sprintf("t-%d", i)}))
		require.NoError(t, err)
	}
	require.Equal(t, size, v.cache.Len())

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var key [32]byte
	key[0] = 0xff // apart from the real tokens' keys, which are SHA-256 sums
	for i := range n {
		cp := *claims
		binary.BigEndian.PutUint64(key[1:], uint64(i))
		v.cache.Add(key, cachedToken{claims: &cp, ik: v.issuers[testIssuer], gen: 1})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(t, size, v.cache.Len(), "the cache holds TokenCacheSize tokens, whatever the flood")
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after %d tokens: %+d bytes for %d cached", n, grew, size)
	require.Less(t, grew, int64(2<<20), "the flood through a 200-entry cache keeps the heap within 2 MiB")

	// The first token was evicted long ago: it verifies again (signature
	// and all), and a tampered copy of it does not.
	_, cached := v.cache.Peek(sha256.Sum256([]byte(first)))
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
