package servertls

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRedirectOpaqueTargetToAttackerHost: "GET http:@evil.example/x" is a
// valid request target for net/http (an opaque URL); pasting its
// RequestURI after RedirectCleartext made the configured host a userinfo
// and sent the client to evil.example.
func TestRedirectOpaqueTargetToAttackerHost(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RedirectCleartext = "https://api.example" })
	srv := httptest.NewServer(e.g.Handler(http.NotFoundHandler()))
	defer srv.Close()
	for _, target := range []string{"http:@evil.example/x", "http:.evil.example/x?q=1", "https:@evil.example"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_ = resp.Body.Close()
		_ = conn.Close()
		require.Equal(t, http.StatusPermanentRedirect, resp.StatusCode, target)
		loc, err := resp.Location()
		require.NoError(t, err)
		require.Equal(t, "api.example", loc.Host, "target %q redirected to %s", target, loc)
		require.Nil(t, loc.User, target)
	}
}

// TestForwardedUnterminatedQuoteSwallowsProxyElement: the client opens a
// quoted string it never closes; a trusted proxy that appends its element
// to the same line ("client value, for=...;proto=http") has its comma and
// semicolons swallowed, so the client's own proto=https was believed.
func TestForwardedUnterminatedQuoteSwallowsProxyElement(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustedProxies, c.ProxyHeader = trustedLB, HeaderForwarded })
	for _, forged := range []string{`proto=https;for="x`, `proto=https;for="x\`, `for=198.51.100.7;proto="https`} {
		r := httptest.NewRequest(http.MethodGet, "http://api.example/", nil)
		r.RemoteAddr = "10.0.0.7:5000"
		r.Header.Set("Forwarded", forged+", for=198.51.100.7;proto=http")
		require.ErrorIs(t, e.g.Check(r), ErrCleartext, forged)
	}
}
