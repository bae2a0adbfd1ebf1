package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/signing"
	"github.com/apiguard/apiguard/telemetry"
	jwtmiddleware "github.com/auth0/go-jwt-middleware/v2"
	"github.com/auth0/go-jwt-middleware/v2/validator"
	chimw "github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// fullChain is the chain DESIGN.md recommends: telemetry, an IP limit,
// access tokens (warm cache), signatures with replay store, a per-subject
// limit.
func fullChain(b *testing.B, p *tokenPool, secret []byte, replay signing.ReplayStore, now time.Time, clock *time.Time) http.Handler {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	obs, err := telemetry.New(telemetry.Config{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	perIP, _ := ratelimit.New(ratelimit.Config{Name: "ip", Limit: ratelimit.Limit{Requests: 1 << 30, Per: time.Second, Burst: 20}, Key: ratelimit.KeyByIP(), Logger: quiet})
	k, _ := jwk.FromRaw(p.pub)
	_ = k.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(k)
	tokens, err := auth.New(auth.Config{Issuers: []auth.Issuer{{Issuer: benchIssuer, Audience: []string{benchAudience}, Keys: set, Algorithms: []jwa.SignatureAlgorithm{p.alg}}}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tokens.Close() })
	*clock = now.Add(-time.Minute)
	sig, err := signing.New(signing.Config{
		Keys:        signing.StaticKeys(map[string][]byte{"device-1": secret}),
		ReplayStore: replay,
		Now:         func() time.Time { return *clock }, Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	perUser, _ := ratelimit.New(ratelimit.Config{Name: "user", Limit: ratelimit.Limit{Requests: 1 << 30, Per: time.Second, Burst: 20},
		Key: func(r *http.Request) (string, error) {
			c, ok := auth.ClaimsFrom(r.Context())
			if !ok {
				return "", ratelimit.ErrNoKey
			}
			return c.Subject, nil
		}, Logger: quiet})
	return obs.Handler(perIP.Handler(tokens.Handler(sig.Handler(perUser.Handler(bare)))))
}

// BenchmarkFullStack compares the whole apiguard chain (warm token cache,
// a signed 1 KiB request) with a bare handler and with the nearest peer
// stack: chi RequestID + httprate per IP + auth0/go-jwt-middleware (which
// has no token cache and no signatures).
func BenchmarkFullStack(b *testing.B) {
	p := newTokenPool(b, jwa.ES256)
	secret := bytes.Repeat([]byte("k"), 32)
	now := time.Now()
	token := p.tokens[0]
	reqs := signedPool(b, token, secret, now)

	bodies := make([][]byte, len(reqs))
	for i, r := range reqs {
		bodies[i], _ = io.ReadAll(r.Body)
		_, _ = r.Body.(rewindBody).Seek(0, io.SeekStart)
	}
	var clock time.Time // the signature verifier's, following the requests
	tick := func(i int) { clock = signedAt(now, i) }
	peer := func(b *testing.B) http.Handler {
		val, err := validator.New(func(context.Context) (any, error) { return p.pub, nil }, validator.ES256, benchIssuer, []string{benchAudience})
		if err != nil {
			b.Fatal(err)
		}
		return chimw.RequestID(httprate.LimitBy(1<<30, time.Second, func(r *http.Request) (string, error) { return r.RemoteAddr, nil })(jwtmiddleware.New(val.ValidateToken).CheckJWT(bare)))
	}
	// Plain: the first hotPool requests served in turn, in cache as a
	// request a server has just read is (see servePool).
	b.Run("bare", func(b *testing.B) { runHotPool(b, bare, nil, reqs, tick) })
	b.Run("apiguard_chain", func(b *testing.B) {
		store := &resettable{}
		h := fullChain(b, p, secret, store, now, &clock)
		runHotPool(b, h, func() { store.reset(&clock, now.Add(-time.Minute)) }, reqs, tick)
	})
	b.Run("peer_chain_chi+httprate+auth0", func(b *testing.B) { runHotPool(b, peer(b), nil, reqs, tick) })
	// Arrivals: each request arrives just before it is served, as a
	// server's does (hotLoop). They need a fixed -benchtime count.
	b.Run("arrivals/bare", func(b *testing.B) { runHot(b, func() http.Handler { return bare }, reqs, bodies, tick) })
	b.Run("arrivals/apiguard_chain", func(b *testing.B) {
		runHot(b, func() http.Handler {
			return fullChain(b, p, secret, newReplayStore(replaySize, &clock, now.Add(-time.Minute)), now, &clock)
		}, reqs, bodies, tick)
	})
	b.Run("arrivals/peer_chain_chi+httprate+auth0", func(b *testing.B) {
		h := peer(b)
		runHot(b, func() http.Handler { return h }, reqs, bodies, tick)
	})
	// The pooled requests served in turn, none of them in cache: what
	// memory latency adds (see BenchmarkSigning's cold_pool).
	b.Run("cold_pool/apiguard_chain", func(b *testing.B) {
		runPool(b, func() http.Handler {
			return fullChain(b, p, secret, newReplayStore(replaySize, &clock, now.Add(-time.Minute)), now, &clock)
		}, reqs, 204, tick)
	})
	b.Run("cold_pool/peer_chain_chi+httprate+auth0", func(b *testing.B) {
		h := peer(b)
		runPool(b, func() http.Handler { return h }, reqs, 204, tick)
	})
}

// runHotPool serves the first hotPool pooled requests through h in turn
// (servePool); reset empties h's replay store when the pool wraps.
func runHotPool(b *testing.B, h http.Handler, reset func(), reqs []*http.Request, tick func(int)) {
	w := &discardWriter{h: make(http.Header, 8)}
	servePool(b, reset, func(j int) {
		tick(j)
		r := reqs[j]
		_, _ = r.Body.(rewindBody).Seek(0, io.SeekStart)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	})
}

// runHot serves the pooled requests through hotLoop, each arriving fresh
// just before its batch is served, rebuilding the handler (and so its
// replay store) when the pool's nonces are used up.
func runHot(b *testing.B, mk func() http.Handler, reqs []*http.Request, bodies [][]byte, tick func(int)) {
	arrivalsOnly(b)
	h := mk()
	w := &discardWriter{h: make(http.Header, 8)}
	hot := make([]*http.Request, hotBatch) // a batch in flight at a time: j%hotBatch
	hotLoop(b, len(reqs), func() { h = mk() }, func(j int) {
		hot[j%hotBatch] = arrive(reqs[j], bodies[j])
	}, func(j int) {
		tick(j)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, hot[j%hotBatch])
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	})
}

// runPool serves the pooled requests, rebuilding the handler (and so its
// replay store) when the pool's nonces are used up; tick(i) runs before
// request i is served.
func runPool(b *testing.B, mk func() http.Handler, reqs []*http.Request, want int, tick func(int)) {
	b.ReportAllocs()
	h := mk()
	w := &discardWriter{h: make(http.Header, 8)}
	for i := 0; i < b.N; i++ {
		if i > 0 && i%len(reqs) == 0 {
			b.StopTimer()
			h = mk()
			b.StartTimer()
		}
		r := reqs[i%len(reqs)]
		tick(i % len(reqs))
		_, _ = r.Body.(rewindBody).Seek(0, 0)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code != want {
			b.Fatalf("status %d", w.code)
		}
	}
}
