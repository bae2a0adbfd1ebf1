package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// These tests run a real JWKS endpoint on loopback (httptest) and drive
// the verifier with an injected clock: every fetch decision is made on
// that clock, so the counts are exact. newRemoteVerifier sets MaxKeyWait
// to a minute, so that a request that starts or joins a fetch sees its
// outcome however loaded the machine is; Rand reads zeros (no jitter).

// retryAfter returns the Retry-After of a 503.
func retryAfter(t *testing.T, h http.Header) time.Duration {
	t.Helper()
	n, err := strconv.Atoi(h.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", h.Get("Retry-After"))
	return time.Duration(n) * time.Second
}

// freshToken is a token of s issued now by clk, distinct per jti.
func freshToken(t testing.TB, s *signer, clk *testClock, jti string) string {
	t.Helper()
	now := clk.Now()
	return s.token(t, map[string]any{"jti": jti, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
}

// forgedKid is a token of s with kid replaced and claims issued at iat;
// the signature is s's over other content (the kid is looked up first).
func forgedKid(t testing.TB, s *signer, kid string, iat time.Time) string {
	t.Helper()
	return forgedKids(t, s, iat, kid)[0]
}

// forgedKids is forgedKid for many kids, signing once.
func forgedKids(t testing.TB, s *signer, iat time.Time, kids ...string) []string {
	t.Helper()
	tok := s.token(t, map[string]any{"iat": iat.Unix(), "exp": iat.Add(10 * time.Minute).Unix()})
	_, rest, _ := cut(tok)
	out := make([]string, len(kids))
	for i, kid := range kids {
		out[i] = b64json(t, map[string]any{"alg": s.alg.String(), "typ": "at+jwt", "kid": kid}) + "." + rest
	}
	return out
}

func randomKid(t testing.TB) string {
	t.Helper()
	return randomKids(t, 1)[0]
}

func randomKids(t testing.TB, n int) []string {
	t.Helper()
	kids := make([]string, n)
	for i := range kids {
		b := make([]byte, 8)
		_, err := rand.Read(b)
		require.NoError(t, err)
		kids[i] = hex.EncodeToString(b)
	}
	return kids
}

func tokenKey(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// TestJWKSUnloadedFetchStorm: while an issuer's JWKS has never loaded,
// requests do not turn into fetches. The first fetch starts with New;
// after it fails, the next may start 1s after it, then 2s, 4s, ... (at
// most MinKeyRefresh) whatever the traffic, one at a time; each 503 says
// in Retry-After when the next fetch may start.
func TestJWKSUnloadedFetchStorm(t *testing.T) {
	t.Run("jwks_unloaded_fetch_storm", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		srv := newJWKSServer(t, a)
		srv.serve(http.StatusInternalServerError, []byte("down"))
		v, logs := newRemoteVerifier(t, clk, srv.URL, nil)
		tok := a.token(t, nil)

		// 100 requests in sequence and 100 at once, at one instant.
		for range 100 {
			rec, reached, _ := call(v.Handler, bearer(tok))
			require.False(t, reached)
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			require.Equal(t, "1", rec.Header().Get("Retry-After"), "the next fetch may start 1s after the first")
		}
		var wg sync.WaitGroup
		var unavailable atomic.Int32
		for range 100 {
			wg.Go(func() {
				if _, err := v.VerifyToken(t.Context(), tok); assertIs(err, ErrKeysUnavailable) {
					unavailable.Add(1)
				}
			})
		}
		wg.Wait()
		require.Equal(t, int32(100), unavailable.Load())
		require.Equal(t, int32(1), srv.fetches.Load(), "one fetch, the first, at one instant")
		require.Contains(t, logs.String(), `"event":"jwks_error"`)

		// Ten minutes of traffic in steps of 100ms, 50 requests at once
		// where a fetch is due: fetches start at 1, 3, 7, 15, 31 and 63s
		// (back-off doubling from 1s), then every MinKeyRefresh (60s).
		starts := []time.Duration{0, time.Second}
		for d := time.Second; starts[len(starts)-1] < 10*time.Minute; {
			d = min(2*d, time.Minute)
			starts = append(starts, starts[len(starts)-1]+d)
		}
		starts = starts[:len(starts)-1] // the last lies past ten minutes
		next := 1                       // index in starts of the next fetch
		for step := 1; step <= 6000; step++ {
			clk.Advance(100 * time.Millisecond)
			at := clk.Now().Sub(t0)
			due := next < len(starts) && at == starts[next]
			n := 1
			if due {
				n = 50
				next++
			}
			codes := make([]int, n)
			headers := make([]http.Header, n)
			for i := range n {
				wg.Go(func() {
					rec, _, _ := call(v.Handler, bearer(tok))
					codes[i], headers[i] = rec.Code, rec.Header()
				})
			}
			wg.Wait()
			require.Equal(t, int32(next), srv.fetches.Load(), "at %s: fetches as scheduled", at)
			for i := range n {
				require.Equal(t, http.StatusServiceUnavailable, codes[i])
				// Retry-After is when the next fetch may start, in whole
				// seconds rounded up.
				wantNext := starts[next-1] + min(time.Second<<(next-1), time.Minute)
				if next < len(starts) {
					wantNext = starts[next]
				}
				ra := retryAfter(t, headers[i])
				require.True(t, at+ra >= wantNext && at+ra < wantNext+time.Second,
					"at %s: Retry-After %s, next fetch at %s", at, ra, wantNext)
			}
		}
		require.Equal(t, int32(15), srv.fetches.Load(), "7 fetches of back-off and 8 a minute apart in ten minutes")

		// The JWKS comes back: a client that waits as Retry-After says
		// gets through, on the fetch its retry finds due.
		srv.serveKeys(t, a)
		rec, _, _ := call(v.Handler, bearer(tok))
		clk.Advance(retryAfter(t, rec.Header()))
		rec, reached, _ := call(v.Handler, bearer(tok))
		require.True(t, reached, rec.Body.String())
		require.Equal(t, int32(16), srv.fetches.Load())
	})
}

// TestJWKSFirstLoad: many requests arriving before the first key set
// share its one fetch; Close while requests ask for fetches starts none
// after it.
func TestJWKSFirstLoad(t *testing.T) {
	t.Run("first_load_many_at_once", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
		toks := make([]string, 200)
		for i := range toks {
			toks[i] = freshToken(t, a, clk, fmt.Sprint(i))
		}
		require.Equal(t, int32(200), verifyAtOnce(t, v, toks))
		require.Equal(t, int32(1), srv.fetches.Load())
	})

	t.Run("close_while_requests_fetch", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		srv := newJWKSServer(t, a)
		srv.serve(http.StatusInternalServerError, []byte("down"))
		rt := &countingTransport{rt: http.DefaultTransport}
		v, _ := newRemoteVerifier(t, clk, srv.URL, func(c *Config) {
			c.MinKeyRefresh = time.Second
			c.MaxKeyStaleness = time.Second
			c.HTTPClient = &http.Client{Transport: rt}
		})
		tok := a.token(t, nil)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 50 {
					clk.Advance(time.Second) // every request may start a fetch
					_, _ = v.VerifyToken(t.Context(), tok)
				}
			})
		}
		require.NoError(t, v.Close())
		closed := rt.n.Load()
		wg.Wait()
		require.Equal(t, closed, rt.n.Load(), "no fetch starts after Close")
	})
}

// countingTransport counts the requests a client sends.
type countingTransport struct {
	rt http.RoundTripper
	n  atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

// TestJWKSRotation covers rotation: a token signed with a kid the loaded
// set lacks is never refused because apiguard has not caught up.
func TestJWKSRotationAttacks(t *testing.T) {
	t.Run("rotated_kid_not_refused", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		b := newSigner(t, jwa.ES256, "key-b")
		srv := newJWKSServer(t, a)
		v, logs := newRemoteVerifier(t, clk, srv.URL, nil)
		_, err := v.VerifyToken(t.Context(), a.token(t, nil))
		require.NoError(t, err)
		require.Equal(t, int32(1), srv.fetches.Load())

		// The issuer adds key b and signs with it at once, just after the
		// fetch: a refresh may start MinKeyRefresh (60s) after it. Two
		// tokens a second for two minutes.
		srv.serveKeys(t, a, b)
		var ok, unavailable int
		for i := range 240 {
			clk.Advance(500 * time.Millisecond)
			at := clk.Now().Sub(t0)
			rec, reached, _ := call(v.Handler, bearer(freshToken(t, b, clk, fmt.Sprint(i))))
			switch {
			case reached:
				ok++
				require.GreaterOrEqual(t, at, time.Minute)
			case rec.Code == http.StatusServiceUnavailable:
				unavailable++
				require.Less(t, at, time.Minute)
				require.Equal(t, time.Minute-at.Truncate(time.Second), retryAfter(t, rec.Header()), "at %s: Retry-After is when the refresh may start", at)
				require.Empty(t, rec.Header().Get("WWW-Authenticate"), "a 503, not a challenge")
			default:
				t.Fatalf("at %s: a valid token signed with the new key got %d", at, rec.Code)
			}
			// Tokens of the key loaded keep passing throughout.
			_, err := v.VerifyToken(t.Context(), freshToken(t, a, clk, fmt.Sprint("a", i)))
			require.NoError(t, err)
		}
		require.Equal(t, 119, unavailable, "503 until the refresh may start")
		require.Contains(t, logs.String(), `"reason":"kid_refresh_due"`, "told apart from an outage in the log")
		require.Equal(t, 121, ok, "200 from the refresh on")
		require.Equal(t, int32(2), srv.fetches.Load(), "one refresh")
	})

	t.Run("rotated_kid_many_at_once", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		b := newSigner(t, jwa.ES256, "key-b")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
		_, err := v.VerifyToken(t.Context(), a.token(t, nil))
		require.NoError(t, err)
		srv.serveKeys(t, b)
		clk.Advance(time.Minute)
		// 200 requests with the new kid at once, when a refresh is due:
		// one fetch, and all of them pass on it.
		toks := make([]string, 200)
		for i := range toks {
			toks[i] = freshToken(t, b, clk, fmt.Sprint(i))
		}
		require.Equal(t, int32(200), verifyAtOnce(t, v, toks))
		require.Equal(t, int32(2), srv.fetches.Load())
	})

	t.Run("unknown_kid_refused_once_proven", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
		_, err := v.VerifyToken(t.Context(), a.token(t, nil))
		require.NoError(t, err)
		clk.Advance(10 * time.Second)

		// Issued (by its own iat, plus ClockSkew) before the key set was
		// fetched: the set proves the kid unknown. 401, no fetch.
		rec, _, _ := call(v.Handler, bearer(forgedKid(t, a, "never-published", t0.Add(-time.Minute))))
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		// No iat, or expired: no key can make it valid. 401, no fetch.
		tok := a.sign(t, map[string]any{"typ": "at+jwt", "kid": "other"}, map[string]any{"iss": testIssuer, "aud": testAudience, "exp": clk.Now().Add(time.Minute).Unix()})
		rec, _, _ = call(v.Handler, bearer(tok))
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		rec, _, _ = call(v.Handler, bearer(forgedKid(t, a, "other", clk.Now().Add(-11*time.Minute))))
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, int32(1), srv.fetches.Load())

		// Issued after the fetch: 503 until a refresh fetched after it
		// lacks the kid, then 401.
		fresh := forgedKid(t, a, "never-published", clk.Now())
		rec, _, _ = call(v.Handler, bearer(fresh))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		require.Equal(t, 50*time.Second, retryAfter(t, rec.Header()))
		clk.Advance(50 * time.Second)
		rec, _, _ = call(v.Handler, bearer(fresh))
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, int32(2), srv.fetches.Load())
	})

	t.Run("guessed_kid_preseeded", func(t *testing.T) {
		// An attacker sends the kid the issuer will publish next before it
		// exists. When the issuer publishes it and signs with it, tokens
		// are not refused on what was learnt about the kid before.
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		next := newSigner(t, jwa.ES256, "key-2026-03")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
		_, err := v.VerifyToken(t.Context(), a.token(t, nil))
		require.NoError(t, err)
		for range 3 {
			clk.Advance(time.Minute)
			rec, _, _ := call(v.Handler, bearer(forgedKid(t, a, next.kid, clk.Now())))
			require.Equal(t, http.StatusUnauthorized, rec.Code, "proven unknown by the refresh it caused")
		}
		clk.Advance(time.Second)
		srv.serveKeys(t, a, next)
		rec, reached, _ := call(v.Handler, bearer(freshToken(t, next, clk, "n1")))
		require.False(t, reached)
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, "not 401: the key set predates the token")
		clk.Advance(retryAfter(t, rec.Header()))
		_, reached, _ = call(v.Handler, bearer(freshToken(t, next, clk, "n2")))
		require.True(t, reached)
	})
}

// TestJWKSUnknownKidFlood: a flood of tokens with random kids, issued now,
// from many goroutines, makes at most one fetch per MinKeyRefresh; none
// verifies, and the issuer's real tokens keep verifying.
func TestJWKSKidFloodAttacks(t *testing.T) {
	t.Run("unknown_kid_flood", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
		_, err := v.VerifyToken(t.Context(), a.token(t, nil))
		require.NoError(t, err)

		var accepted, other atomic.Int32
		for step := 1; step <= 60; step++ { // ten minutes in steps of 10s
			clk.Advance(10 * time.Second)
			fresh := forgedKids(t, a, clk.Now(), randomKids(t, 200)...)
			// Old forgeries (issued before the last fetch) are refused
			// without a fetch.
			old := forgedKids(t, a, clk.Now().Add(-5*time.Minute), randomKids(t, 20)...)
			var wg sync.WaitGroup
			for g := range 10 {
				wg.Go(func() {
					for _, tok := range fresh[g*20 : g*20+20] {
						_, err := v.VerifyToken(t.Context(), tok)
						switch {
						case err == nil:
							accepted.Add(1)
						case !assertIs(err, ErrUnknownKey) && !assertIs(err, ErrKeysUnavailable):
							other.Add(1)
						}
					}
				})
			}
			wg.Go(func() {
				for _, tok := range old {
					if _, err := v.VerifyToken(t.Context(), tok); !assertIs(err, ErrUnknownKey) {
						other.Add(1)
					}
				}
			})
			_, err := v.VerifyToken(t.Context(), freshToken(t, a, clk, fmt.Sprint(step)))
			require.NoError(t, err, "a real token verifies during the flood")
			wg.Wait()
		}
		require.Zero(t, accepted.Load())
		require.Zero(t, other.Load())
		require.Equal(t, int32(11), srv.fetches.Load(), "the first fetch and one per minute for ten minutes")
	})
}

// TestJWKSStaleness: past MaxKeyStaleness every token gets 503, those in
// the verified-token cache included, until a fetch succeeds.
func TestJWKSStaleness(t *testing.T) {
	t.Run("cached_token_past_staleness", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, func(c *Config) { c.MaxKeyStaleness = 30 * time.Minute })
		tok := a.token(t, map[string]any{"iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()})
		_, err := v.VerifyToken(t.Context(), tok)
		require.NoError(t, err)
		require.Equal(t, 1, v.cache.Len())

		srv.serve(http.StatusInternalServerError, []byte("down"))
		clk.Advance(30 * time.Minute)
		_, reached, _ := call(v.Handler, bearer(tok))
		require.True(t, reached, "within MaxKeyStaleness the cached token serves")
		clk.Advance(time.Second)
		rec, reached, _ := call(v.Handler, bearer(tok))
		require.False(t, reached, "past MaxKeyStaleness the cached token is held to the same rule as a new one")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		require.Equal(t, int32(2), srv.fetches.Load(), "it asked for a fetch, which failed")

		srv.serveKeys(t, a)
		clk.Advance(retryAfter(t, rec.Header()))
		_, reached, _ = call(v.Handler, bearer(tok))
		require.True(t, reached, "keys fetched again: the token serves again")
		require.Equal(t, int32(3), srv.fetches.Load())
	})

	t.Run("cached_token_after_key_removed", func(t *testing.T) {
		// A token verified with a key that a refresh then removes is not
		// served from the cache, even if its entry was added after the
		// refresh purged the cache (a verification that raced it).
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		b := newSigner(t, jwa.ES256, "key-b")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
		tok := a.token(t, nil)
		e, err := v.verifyToken(t.Context(), tok)
		require.NoError(t, err)

		srv.serveKeys(t, b)
		clk.Advance(time.Minute)
		_, err = v.VerifyToken(t.Context(), freshToken(t, b, clk, "b"))
		require.NoError(t, err, "the refresh ran")
		v.cache.Add(tokenKey(tok), e) // the racing verification's Add, after the purge
		_, err = v.VerifyToken(t.Context(), tok)
		require.ErrorIs(t, err, ErrUnknownKey)
	})

	t.Run("cache_add_races_rotation", func(t *testing.T) {
		// Many goroutines verify tokens of key a while a refresh removes
		// it: afterwards, not one of those tokens verifies.
		clk := testkit.NewClock(t0)
		a := newSigner(t, jwa.ES256, "key-a")
		b := newSigner(t, jwa.ES256, "key-b")
		srv := newJWKSServer(t, a)
		v, _ := newRemoteVerifier(t, clk, srv.URL, nil)
		toks := make([]string, 400)
		for i := range toks {
			toks[i] = freshToken(t, a, clk, fmt.Sprint(i))
		}
		_, err := v.VerifyToken(t.Context(), toks[0])
		require.NoError(t, err)
		srv.serveKeys(t, b)
		clk.Advance(time.Minute)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := g; i < len(toks); i += 8 {
					_, _ = v.VerifyToken(t.Context(), toks[i])
				}
			})
		}
		_, err = v.VerifyToken(t.Context(), freshToken(t, b, clk, "b")) // the refresh
		require.NoError(t, err)
		wg.Wait()
		passed := 0
		for _, tok := range toks {
			if _, err := v.VerifyToken(t.Context(), tok); err == nil {
				passed++
			}
		}
		require.Zero(t, passed)
	})
}

// TestJWKSFetchSpacing: whatever the state of the key set and however
// many requests ask, fetches keep to the schedule. With MinKeyRefresh at
// 1s, back-off and refresh spacing are both 1s: a request-driven fetch
// every second, exactly, over ten simulated seconds of 80 requests a
// second.
func TestJWKSFetchSpacing(t *testing.T) {
	a := newSigner(t, jwa.ES256, "key-a")
	tests := []struct {
		name string
		// down makes the JWKS fail from the start, before New's first
		// fetch (set in setup, that fetch could come first and load).
		down bool
		// setup brings the verifier into the state at clock start and
		// returns a request that needs a fetch in it.
		setup func(t *testing.T, srv *jwksServer, v *Verifier, clk *testClock) func() string
	}{
		{name: "never_loaded", down: true, setup: func(t *testing.T, srv *jwksServer, v *Verifier, clk *testClock) func() string {
			return func() string { return a.token(t, nil) }
		}},
		{name: "fresh_unknown_kids", setup: func(t *testing.T, srv *jwksServer, v *Verifier, clk *testClock) func() string {
			return func() string { return forgedKid(t, a, randomKid(t), clk.Now()) }
		}},
		{name: "stale_failing_unknown_kids", setup: func(t *testing.T, srv *jwksServer, v *Verifier, clk *testClock) func() string {
			_, err := v.VerifyToken(t.Context(), a.token(t, nil))
			require.NoError(t, err)
			srv.serve(http.StatusInternalServerError, []byte("down"))
			return func() string { return forgedKid(t, a, randomKid(t), clk.Now()) }
		}},
		{name: "past_staleness", setup: func(t *testing.T, srv *jwksServer, v *Verifier, clk *testClock) func() string {
			_, err := v.VerifyToken(t.Context(), a.token(t, nil))
			require.NoError(t, err)
			srv.serve(http.StatusInternalServerError, []byte("down"))
			clk.Advance(11 * time.Second)
			return func() string { return freshToken(t, a, clk, "past-staleness") }
		}},
		{name: "flapping", setup: func(t *testing.T, srv *jwksServer, v *Verifier, clk *testClock) func() string {
			_, err := v.VerifyToken(t.Context(), a.token(t, nil))
			require.NoError(t, err)
			srv.flap() // every other fetch fails from now on
			return func() string { return forgedKid(t, a, randomKid(t), clk.Now()) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			srv := newJWKSServer(t, a)
			if tt.down {
				srv.serve(http.StatusInternalServerError, []byte("down"))
			}
			v, _ := newRemoteVerifier(t, clk, srv.URL, func(c *Config) {
				c.MinKeyRefresh = time.Second
				c.MaxKeyStaleness = 10 * time.Second
				c.TokenCacheSize = -1
			})
			next := tt.setup(t, srv, v, clk)
			// A first request, at the start: one fetch now (or, never
			// loaded, the one New started).
			_, _ = v.VerifyToken(t.Context(), next())
			base := srv.fetches.Load()
			var wg sync.WaitGroup
			for range 200 { // 10s in steps of 50ms, 4 requests at once each
				clk.Advance(50 * time.Millisecond)
				for _, tok := range []string{next(), next(), next(), next()} {
					wg.Go(func() { _, _ = v.VerifyToken(t.Context(), tok) })
				}
				wg.Wait()
			}
			require.Equal(t, int32(10), srv.fetches.Load()-base, "one fetch a second")
		})
	}
}

// verifyAtOnce verifies every token in toks on its own goroutine, all at
// once, and returns how many verified.
func verifyAtOnce(t *testing.T, v *Verifier, toks []string) int32 {
	t.Helper()
	var wg sync.WaitGroup
	var passed atomic.Int32
	for _, tok := range toks {
		wg.Go(func() {
			if _, err := v.VerifyToken(t.Context(), tok); err == nil {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	return passed.Load()
}
