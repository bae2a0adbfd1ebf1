package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/signing"
)

// rewindBody is a request body that can be read again.
type rewindBody struct{ *bytes.Reader }

func (rewindBody) Close() error { return nil }

const signPool = 4096

// signedPool returns signPool requests with 1 KiB bodies carrying the
// bearer token, each with its own nonce, as the server receives them.
// Request i is created at now + i seconds (see signedAt).
func signedPool(b *testing.B, token string, secret []byte, now time.Time) []*http.Request {
	b.Helper()
	s := signing.NewSigner("device-1", secret)
	body := bytes.Repeat([]byte("a"), 1024)
	out := make([]*http.Request, signPool)
	for i := range out {
		at := signedAt(now, i)
		s.Now = func() time.Time { return at }
		r, _ := http.NewRequest("POST", "https://api.example.com/v1/pay", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		if err := s.Sign(r); err != nil {
			b.Fatal(err)
		}
		sr := httptest.NewRequest("POST", "https://api.example.com/v1/pay", nil)
		sr.Header = r.Header
		sr.Body = rewindBody{bytes.NewReader(body)}
		sr.ContentLength = int64(len(body))
		out[i] = sr
	}
	return out
}

// signedAt is when pooled request i was signed: one second after the one
// before, so that the verifier's clock can follow the requests and its
// replay store runs in its steady state, full and evicting its oldest
// nonces, as a long-running server's does (a store that only grows would
// time the growth of its map instead).
func signedAt(now time.Time, i int) time.Time { return now.Add(time.Duration(i) * time.Second) }

// replaySize is the replay store's size in the signing benchmarks: smaller
// than signPool, so the store fills and then evicts.
const replaySize = 256

// BenchmarkSigning verifies an hmac-sha256 signed request with a 1 KiB
// body (Content-Digest, signature base, MAC, freshness, nonce in the
// in-memory replay store), against the floor of what cannot be skipped:
// SHA-256 of the body and HMAC-SHA256 of the same signature base.
func BenchmarkSigning(b *testing.B) {
	secret := bytes.Repeat([]byte("k"), 32)
	now := time.Now()
	reqs := signedPool(b, "token", secret, now)
	var clock time.Time // the verifier's and its store's: set to each request's time
	newVerifier := func(store signing.ReplayStore) *signing.Verifier {
		clock = now.Add(-time.Minute)
		v, err := signing.New(signing.Config{
			Keys:        signing.StaticKeys(map[string][]byte{"device-1": secret}),
			ReplayStore: store,
			Now:         func() time.Time { return clock },
			Logger:      slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	fresh := func() signing.ReplayStore { return newReplayStore(replaySize, &clock, now.Add(-time.Minute)) }
	// The floor works on the same bytes as the verifier: each pooled
	// request's own body and signature base, so both see the same cache
	// behaviour.
	bases := make([][]byte, len(reqs))
	bodies := make([][]byte, len(reqs))
	for i, r := range reqs {
		bases[i] = []byte(signatureBaseOf(r))
		bodies[i], _ = io.ReadAll(r.Body)
		_, _ = r.Body.(rewindBody).Seek(0, io.SeekStart)
	}
	// Plain: the first hotPool requests served in turn, in cache as a
	// request a server has just read is (see servePool). This is the cost
	// the budget is about.
	b.Run("floor_sha256_body+hmac_base", func(b *testing.B) {
		var sink [32]byte
		servePool(b, nil, func(j int) { floorOf(&sink, secret, bodies[j], bases[j]) })
	})
	b.Run("apiguard_Verify", func(b *testing.B) {
		store := &resettable{}
		v := newVerifier(store)
		servePool(b, func() { store.reset(&clock, now.Add(-time.Minute)) }, func(j int) {
			clock = signedAt(now, j)
			r := reqs[j]
			_, _ = r.Body.(rewindBody).Seek(0, io.SeekStart)
			if _, err := v.Verify(r); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("apiguard_middleware", func(b *testing.B) {
		store := &resettable{}
		h := newVerifier(store).Handler(bare)
		w := &discardWriter{h: make(http.Header, 4)}
		servePool(b, func() { store.reset(&clock, now.Add(-time.Minute)) }, func(j int) {
			clock = signedAt(now, j)
			r := reqs[j]
			_, _ = r.Body.(rewindBody).Seek(0, io.SeekStart)
			clear(w.h)
			h.ServeHTTP(w, r)
			if w.code != http.StatusNoContent {
				b.Fatalf("status %d", w.code)
			}
		})
	})
	// Arrivals: each request arrives just before it is served, as a
	// server's does (see hotLoop), with the timer stopped. They need a
	// fixed -benchtime count (see arrivalsOnly).
	b.Run("arrivals/floor_sha256_body+hmac_base", func(b *testing.B) {
		arrivalsOnly(b)
		var sink [32]byte
		// Arrivals live until their batch is served, as a server's
		// requests live while they are handled: indexed by j%hotBatch.
		hotBodies, hotBases := make([][]byte, hotBatch), make([][]byte, hotBatch)
		arrived := make([]*http.Request, hotBatch)
		hotLoop(b, signPool, nil, func(j int) {
			// The request arrives here too, as it does for the verifier,
			// so that both sides run with the same allocation, and so the
			// same garbage collection, around them; the floor then hashes
			// fresh copies of its bytes.
			arrived[j%hotBatch] = arrive(reqs[j], bodies[j])
			hotBodies[j%hotBatch], hotBases[j%hotBatch] = bytes.Clone(bodies[j]), bytes.Clone(bases[j])
		}, func(j int) {
			floorOf(&sink, secret, hotBodies[j%hotBatch], hotBases[j%hotBatch])
		})
	})
	b.Run("arrivals/apiguard_Verify", func(b *testing.B) {
		arrivalsOnly(b)
		v := newVerifier(fresh())
		hot := make([]*http.Request, hotBatch)
		hotLoop(b, signPool, func() { v = newVerifier(fresh()) }, func(j int) {
			hot[j%hotBatch] = arrive(reqs[j], bodies[j])
		}, func(j int) {
			clock = signedAt(now, j)
			if _, err := v.Verify(hot[j%hotBatch]); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("arrivals/apiguard_middleware", func(b *testing.B) {
		arrivalsOnly(b)
		v := newVerifier(fresh())
		h := v.Handler(bare)
		w := &discardWriter{h: make(http.Header, 4)}
		hot := make([]*http.Request, hotBatch)
		hotLoop(b, signPool, func() { v = newVerifier(fresh()); h = v.Handler(bare) }, func(j int) {
			hot[j%hotBatch] = arrive(reqs[j], bodies[j])
		}, func(j int) {
			clock = signedAt(now, j)
			clear(w.h)
			h.ServeHTTP(w, hot[j%hotBatch])
			if w.code != http.StatusNoContent {
				b.Fatalf("status %d", w.code)
			}
		})
	})
	// Paired: the floor, Verify and the middleware on the same arrivals,
	// in turns of one batch each, every batch timed on its own. Run one
	// after the other, as above, the three can meet a different host (a
	// noisy neighbour, a garbage collection) and their ratio moves with
	// it; in turns of a few microseconds they meet the same one. The
	// figures are the custom metrics (floor-ns/op, verify-ns/op,
	// middleware-ns/op and the ratios); ns/op counts the arrivals too.
	b.Run("paired", func(b *testing.B) {
		v1, v2 := newVerifier(fresh()), newVerifier(fresh())
		h := v2.Handler(bare)
		w := &discardWriter{h: make(http.Header, 4)}
		var sink [32]byte
		hotBodies, hotBases := make([][]byte, hotBatch), make([][]byte, hotBatch)
		arrived := make([]*http.Request, hotBatch)
		var floorT, verifyT, mwT time.Duration
		// turn makes a batch arrive afresh, then times serve over it.
		turn := func(j0, n int, total *time.Duration, serve func(k, j int)) {
			for k := range n {
				arrived[k] = arrive(reqs[j0+k], bodies[j0+k])
			}
			t := time.Now()
			for k := range n {
				serve(k, j0+k)
			}
			*total += time.Since(t)
		}
		for i := 0; i < b.N; {
			j0 := i % signPool
			if i > 0 && j0 == 0 {
				v1, v2 = newVerifier(fresh()), newVerifier(fresh())
				h = v2.Handler(bare)
			}
			n := min(hotBatch, b.N-i, signPool-j0)
			for k := range n {
				hotBodies[k], hotBases[k] = bytes.Clone(bodies[j0+k]), bytes.Clone(bases[j0+k])
			}
			turn(j0, n, &floorT, func(k, _ int) { floorOf(&sink, secret, hotBodies[k], hotBases[k]) })
			turn(j0, n, &verifyT, func(k, j int) {
				clock = signedAt(now, j)
				if _, err := v1.Verify(arrived[k]); err != nil {
					b.Fatal(err)
				}
			})
			turn(j0, n, &mwT, func(k, j int) {
				clock = signedAt(now, j)
				clear(w.h)
				h.ServeHTTP(w, arrived[k])
				if w.code != http.StatusNoContent {
					b.Fatalf("status %d", w.code)
				}
			})
			i += n
		}
		per := func(d time.Duration) float64 { return float64(d) / float64(b.N) }
		b.ReportMetric(per(floorT), "floor-ns/op")
		b.ReportMetric(per(verifyT), "verify-ns/op")
		b.ReportMetric(per(mwT), "middleware-ns/op")
		b.ReportMetric(float64(verifyT)/float64(floorT), "verify/floor")
		b.ReportMetric(float64(mwT)/float64(floorT), "middleware/floor")
	})
	// Cold: the pooled requests served in turn, 4096 of them, none in
	// cache when its turn comes: memory latency on every header read. No
	// server sees requests this way; kept to show what cache misses cost.
	b.Run("cold_pool/floor_sha256_body+hmac_base", func(b *testing.B) {
		b.ReportAllocs()
		var sink [32]byte
		i := 0
		for b.Loop() {
			floorOf(&sink, secret, bodies[i%signPool], bases[i%signPool])
			i++
		}
	})
	b.Run("cold_pool/apiguard_Verify", func(b *testing.B) {
		b.ReportAllocs()
		v := newVerifier(fresh())
		for i := 0; i < b.N; i++ {
			if i > 0 && i%signPool == 0 {
				b.StopTimer()
				v = newVerifier(fresh()) // a fresh replay store, so the nonces are new again
				b.StartTimer()
			}
			r := reqs[i%signPool]
			clock = signedAt(now, i%signPool)
			_, _ = r.Body.(rewindBody).Seek(0, io.SeekStart)
			if _, err := v.Verify(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// floorOf is the floor of one verification: SHA-256 of the body, and
// HMAC-SHA256 of the signature base under a key expanded anew, as a
// verifier without a cache of keyed states would.
func floorOf(sink *[32]byte, secret, body, base []byte) {
	*sink = sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	m.Write(base)
	m.Sum(sink[:0])
}

// hotPool is how many pooled requests the plain sub-benchmarks serve in
// turn: few enough that they stay in cache, as a request a server has just
// read is.
const hotPool = 64

// servePool runs b.N iterations of serve over the first hotPool pooled
// requests in turn. reset, if not nil, runs with the timer stopped each
// time the pool wraps, to empty the replay store so that the nonces are
// new again; nothing else is done per request outside the timer, so
// go test's choice of b.N holds and the run takes about -benchtime.
func servePool(b *testing.B, reset func(), serve func(j int)) {
	b.Helper()
	b.ReportAllocs()
	if reset != nil {
		reset()
	}
	j := 0
	for b.Loop() {
		if j == hotPool {
			j = 0
			if reset != nil {
				b.StopTimer()
				reset()
				b.StartTimer()
			}
		}
		serve(j)
		j++
	}
}

// hotReplaySize is the replay store's size in the plain sub-benchmarks:
// smaller than hotPool, so the store fills and then evicts, as a
// long-running server's does.
const hotReplaySize = hotPool / 2

// resettable is a replay store that a benchmark empties between passes
// over its pool, while the verifier that uses it (and the chain around it,
// with its warm token cache) stays.
type resettable struct{ signing.ReplayStore }

// reset replaces the store with an empty one of hotReplaySize (see
// newReplayStore).
func (s *resettable) reset(clock *time.Time, start time.Time) {
	s.ReplayStore = newReplayStore(hotReplaySize, clock, start)
}

// newReplayStore sets *clock to start, before the pool's first request,
// and returns an in-memory replay store of size entries on that clock.
func newReplayStore(size int, clock *time.Time, start time.Time) signing.ReplayStore {
	*clock = start
	return signing.NewMemoryReplayStore(size, 5*time.Minute, func() time.Time { return *clock })
}

// arrivalsOnly skips b unless -benchtime is a fixed count (such as
// 100000x). The arrivals/ sub-benchmarks stop the timer for each batch of
// arrivals, and go test picks b.N from the timed part alone: with a
// duration, a fast one runs tens of millions of untimed arrivals.
func arrivalsOnly(b *testing.B) {
	b.Helper()
	if f := flag.Lookup("test.benchtime"); f == nil || !strings.HasSuffix(f.Value.String(), "x") {
		b.Skip("arrivals/ sub-benchmarks need a fixed count, such as -benchtime 100000x")
	}
}

// hotBatch is how many pooled requests arrive at once in the hot
// benchmarks: few enough that they are all still in cache when served.
const hotBatch = 32

// hotLoop runs b.N iterations over a pool of poolSize inputs, a batch at
// a time: with the timer stopped, prepare(j) makes input j arrive (fresh
// memory, just written, as a server's request is when it reaches the
// handler), then serve(j) handles each of the batch, timed. reset runs,
// untimed, when the pool wraps (to start a fresh replay store).
func hotLoop(b *testing.B, poolSize int, reset func(), prepare, serve func(j int)) {
	b.Helper()
	b.ReportAllocs()
	for i := 0; i < b.N; {
		b.StopTimer()
		j0 := i % poolSize
		if i > 0 && j0 == 0 && reset != nil {
			reset()
		}
		n := min(hotBatch, b.N-i, poolSize-j0)
		for k := range n {
			prepare(j0 + k)
		}
		b.StartTimer()
		for k := range n {
			serve(j0 + k)
		}
		i += n
	}
}

// arrive returns r as a server holds it right after reading it off the
// wire: a new Request with its own header map, header names and values,
// Host, URL strings and body. A server parses each request into new
// strings (net/http shares only the names of common fields, such as
// Authorization, which are then hot), so none is left over in cache
// from an earlier request.
func arrive(r *http.Request, body []byte) *http.Request {
	c := r.WithContext(context.Background()) // a shallow copy: its URL and Header are made below
	c.Host, c.RequestURI = strings.Clone(r.Host), strings.Clone(r.RequestURI)
	u := *r.URL
	u.Host, u.Path, u.RawQuery = strings.Clone(r.URL.Host), strings.Clone(r.URL.Path), strings.Clone(r.URL.RawQuery)
	c.URL = &u
	c.Header = make(http.Header, len(r.Header))
	for k, vs := range r.Header {
		if _, common := commonHeaders[k]; !common {
			k = strings.Clone(k)
		}
		c.Header[k] = make([]string, len(vs))
		for i := range vs {
			c.Header[k][i] = strings.Clone(vs[i])
		}
	}
	c.Body = rewindBody{bytes.NewReader(bytes.Clone(body))}
	return c
}

// commonHeaders are the field names of these requests that net/http
// shares between requests instead of allocating them (its
// textproto.commonHeader set).
var commonHeaders = map[string]struct{}{"Authorization": {}, "Content-Type": {}, "Content-Length": {}, "Host": {}}

// BenchmarkReplayCacheMemory measures the heap held per nonce in the
// in-memory replay store (reported as bytes/entry).
func BenchmarkReplayCacheMemory(b *testing.B) {
	const n = 200_000
	for b.Loop() {
		now := time.Now()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := signing.NewMemoryReplayStore(n, 5*time.Minute, func() time.Time { return now.Add(-time.Minute) })
		for i := range n {
			_, _ = s.UseNonce(b.Context(), "device-1", fmt.Sprintf("nonce-%022d", i), now, now.Add(5*time.Minute))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/entry")
		runtime.KeepAlive(s)
	}
}

// signatureBaseOf rebuilds, by hand, the RFC 9421 signature base that the
// Signer covered for r: the floor must hash the same bytes.
func signatureBaseOf(r *http.Request) string {
	in := r.Header.Get("Signature-Input")
	params := in[len("sig1="):]
	return `"@method": ` + r.Method + "\n" +
		`"@target-uri": https://api.example.com` + r.URL.RequestURI() + "\n" +
		`"content-digest": ` + r.Header.Get("Content-Digest") + "\n" +
		`"authorization": ` + r.Header.Get("Authorization") + "\n" +
		`"@signature-params": ` + params
}
