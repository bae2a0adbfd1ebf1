package servertls

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConcurrentOldClientsCountedExactly: a burst of refused handshakes is
// counted once each, from many goroutines at once.
func TestConcurrentOldClientsCountedExactly(t *testing.T) {
	const n = 40
	e := newEnv(t, nil)
	addr := e.serve(t)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c := e.client()
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			conn, err := tls.Dial("tcp", addr, c)
			if err == nil {
				_ = conn.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.Error(t, err)
	}
	for range n {
		e.logs.next(t, "tls_handshake_failed")
	}
	require.Equal(t, map[string]int64{"reason=protocol_version,tls.protocol.version=1.1": n}, counts(t, e.reader, MetricHandshakeFailures))
}

// TestConcurrentHandshakesReloadOnce: when the interval has passed, one
// handshake reloads the changed files and the others keep serving.
func TestConcurrentHandshakesReloadOnce(t *testing.T) {
	const n = 64
	e := newEnv(t, nil)
	k2 := newKey(t)
	chain, key := e.pki.leaf(t, k2, "localhost")
	e.replace(t, chain, key)
	e.clock.Add(2 * time.Minute)
	pins := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c, err := e.g.getCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				pins <- err.Error()
				return
			}
			pins <- SPKIPin(c.Leaf)
		})
	}
	wg.Wait()
	close(pins)
	for p := range pins {
		require.NotEmpty(t, p)
	}
	require.Equal(t, pinOf(t, k2), e.servedPin(t))
	require.Equal(t, map[string]int64{"result=changed": 1}, counts(t, e.reader, MetricCertificateReloads))
	require.Equal(t, []string{"tls_certificate_changed"}, e.logs.events())
}

func FuzzCheckForwardedHeaders(f *testing.F) {
	f.Add("for=198.51.100.1;proto=https", "https", "10.0.0.7:1")
	f.Add(`for="[2001:db8::1]:80";proto=https, for=10.0.0.8;proto=http`, "http, https", "203.0.113.1:2")
	f.Add(`for=";proto=https`, ",,,", "10.0.0.9:3")
	f.Add(`proto=https;for="x`, "https", "10.0.0.7:4")
	xfp, err := New(Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil },
		TrustedProxies: trustedLB, ProxyHeader: HeaderXForwardedProto})
	require.NoError(f, err)
	fwd, err := New(Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil },
		TrustedProxies: trustedLB, ProxyHeader: HeaderForwarded})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, forwarded, proto, remote string) {
		r := httptest.NewRequest(http.MethodGet, "http://api.example/", nil)
		r.RemoteAddr = remote
		r.Header.Set("Forwarded", forwarded)
		r.Header.Set("X-Forwarded-Proto", proto)
		for _, g := range []*Guard{xfp, fwd} {
			err := g.Check(r)
			peer, perr := netipPeer(remote)
			if perr != nil || !trustedLB[0].Contains(peer) {
				require.ErrorIs(t, err, ErrCleartext, "an untrusted peer's headers never count")
			}
		}
		// Whatever the client sent, a trusted proxy that appends the
		// client's element to the same line decides.
		r = httptest.NewRequest(http.MethodGet, "http://api.example/", nil)
		r.RemoteAddr = "10.0.0.7:1"
		r.Header.Set("Forwarded", forwarded+", for=198.51.100.7;proto=http")
		r.Header.Set("X-Forwarded-Proto", proto+", http")
		require.ErrorIs(t, fwd.Check(r), ErrCleartext, "Forwarded appended by the proxy")
		require.ErrorIs(t, xfp.Check(r), ErrCleartext, "X-Forwarded-Proto appended by the proxy")
	})
}
