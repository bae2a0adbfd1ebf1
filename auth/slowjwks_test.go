package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// pipeListener is an in-memory network for a JWKS server inside a
// synctest bubble: a real net/http server and client over net.Pipe
// connections. Blocking on a loopback socket is not durable (the bubble's
// clock stands still while any goroutine waits on one), blocking on a
// pipe made in the bubble is: the fake clock runs through a slow JWKS
// answer while requests wait.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// slowJWKS serves a key set in a bubble, answering after delay.
type slowJWKS struct {
	mu      sync.Mutex
	body    []byte
	delay   time.Duration
	fetches atomic.Int32
}

func (s *slowJWKS) set(t *testing.T, delay time.Duration, signers ...*signer) {
	b, err := json.Marshal(jwkSet(t, signers...))
	require.NoError(t, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.delay = b, delay
}

func (s *slowJWKS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	body, delay := s.body, s.delay
	s.mu.Unlock()
	time.Sleep(delay) // the bubble's clock: no real time passes
	_, _ = w.Write(body)
}

// inBubble runs f in a synctest bubble with a verifier (clock: the
// bubble's) whose JWKS is jwks, served over pipes, and shuts all down.
func inBubble(t *testing.T, jwks *slowJWKS, mod func(*Config), f func(t *testing.T, v *Verifier)) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		srv := &http.Server{Handler: jwks}
		go func() { _ = srv.Serve(l) }()
		tr := &http.Transport{DialContext: l.dial}
		cfg := Config{
			Issuers:    []Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: "http://127.0.0.1/jwks"}},
			HTTPClient: &http.Client{Transport: tr},
			Logger:     slog.New(slog.DiscardHandler),
			Rand:       zeroReader{},
			// Long enough for a 5s answer to count: a fetch is bounded
			// by FetchTimeout, a request's wait by MaxKeyWait.
			FetchTimeout: 10 * time.Second,
		}
		if mod != nil {
			mod(&cfg)
		}
		v, err := New(cfg)
		require.NoError(t, err)
		f(t, v)
		require.NoError(t, v.Close())
		require.NoError(t, srv.Close())
		tr.CloseIdleConnections()
	})
}

// TestJWKSSlowEndpoint: with a JWKS endpoint that takes 5s to answer, no
// request waits longer than MaxKeyWait for it; the fetch carries on in
// the background, one at a time, and its keys serve when it ends.
func TestJWKSSlowEndpoint(t *testing.T) {
	a := newSigner(t, jwa.ES256, "key-a")
	b := newSigner(t, jwa.ES256, "key-b")
	tokAt := func(t *testing.T, s *signer, jti string) string {
		now := time.Now()
		return s.token(t, map[string]any{"jti": jti, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
	}
	// verifyAll verifies toks at once and returns the errors and the
	// longest time any of them took, on the bubble's clock.
	verifyAll := func(v *Verifier, toks []string) ([]error, time.Duration) {
		errs := make([]error, len(toks))
		took := make([]time.Duration, len(toks))
		var wg sync.WaitGroup
		for i, tok := range toks {
			wg.Go(func() {
				start := time.Now()
				_, errs[i] = v.VerifyToken(context.Background(), tok)
				took[i] = time.Since(start)
			})
		}
		wg.Wait()
		longest := time.Duration(0)
		for _, d := range took {
			longest = max(longest, d)
		}
		return errs, longest
	}

	t.Run("slow_jwks_unknown_kid_wait_bounded", func(t *testing.T) {
		jwks := &slowJWKS{}
		jwks.set(t, 0, a)
		inBubble(t, jwks, nil, func(t *testing.T, v *Verifier) {
			synctest.Wait() // the first fetch, answered at once
			_, err := v.VerifyToken(context.Background(), tokAt(t, a, "a"))
			require.NoError(t, err)
			jwks.set(t, 5*time.Second, a, b)
			time.Sleep(time.Minute) // a refresh may start

			toks := make([]string, 20)
			for i := range toks {
				toks[i] = tokAt(t, b, string(rune('a'+i)))
			}
			errs, longest := verifyAll(v, toks)
			require.Equal(t, 300*time.Millisecond, longest, "every request waited MaxKeyWait (300ms) at most, not 5s")
			for _, err := range errs {
				ue, ok := err.(*UnavailableError)
				require.True(t, ok, "503 while the refresh runs, not 401: %v", err)
				require.Equal(t, time.Second, ue.RetryAfter, "a fetch is under way")
			}
			require.Equal(t, int32(2), jwks.fetches.Load(), "one fetch for all of them")

			time.Sleep(5 * time.Second) // the answer comes
			synctest.Wait()
			errs, longest = verifyAll(v, toks)
			require.Zero(t, longest, "no wait once the keys are in")
			for _, err := range errs {
				require.NoError(t, err)
			}
			require.Equal(t, int32(2), jwks.fetches.Load())
		})
	})

	t.Run("slow_jwks_first_load_wait_bounded", func(t *testing.T) {
		jwks := &slowJWKS{}
		jwks.set(t, 5*time.Second, a)
		inBubble(t, jwks, nil, func(t *testing.T, v *Verifier) {
			toks := []string{tokAt(t, a, "1"), tokAt(t, a, "2"), tokAt(t, a, "3")}
			errs, longest := verifyAll(v, toks)
			require.Equal(t, 300*time.Millisecond, longest)
			for _, err := range errs {
				require.ErrorIs(t, err, ErrKeysUnavailable)
			}
			time.Sleep(5 * time.Second)
			synctest.Wait()
			errs, _ = verifyAll(v, toks)
			for _, err := range errs {
				require.NoError(t, err)
			}
			require.Equal(t, int32(1), jwks.fetches.Load())
		})
	})

	t.Run("no_wait_configured", func(t *testing.T) {
		// MaxKeyWait negative: 503 at once, the fetch in the background.
		jwks := &slowJWKS{}
		jwks.set(t, 0, a)
		inBubble(t, jwks, func(c *Config) { c.MaxKeyWait = -1 }, func(t *testing.T, v *Verifier) {
			synctest.Wait()
			jwks.set(t, 5*time.Second, a, b)
			time.Sleep(time.Minute)
			errs, longest := verifyAll(v, []string{tokAt(t, b, "1")})
			require.Zero(t, longest)
			require.ErrorIs(t, errs[0], ErrKeysUnavailable)
			time.Sleep(5 * time.Second)
			synctest.Wait()
			errs, _ = verifyAll(v, []string{tokAt(t, b, "2")})
			require.NoError(t, errs[0])
		})
	})
}
