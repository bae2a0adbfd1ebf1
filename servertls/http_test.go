package servertls

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var trustedLB = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}

var _ func(http.Handler) http.Handler = (*Guard)(nil).Handler

func TestCleartextAndHSTS(t *testing.T) {
	xfp := func(c *Config) { c.TrustedProxies, c.ProxyHeader = trustedLB, HeaderXForwardedProto }
	fwd := func(c *Config) { c.TrustedProxies, c.ProxyHeader = trustedLB, HeaderForwarded }
	tests := []struct {
		name    string
		edit    func(*Config)
		tls     bool
		remote  string
		headers map[string]string
		method  string
		want    int
	}{
		{name: "https_connection", tls: true, remote: "203.0.113.9:5000", want: http.StatusOK},
		{name: "cleartext_refused", remote: "203.0.113.9:5000", want: http.StatusForbidden},
		{name: "x_forwarded_proto_forged_without_trusted_proxies", remote: "203.0.113.9:5000",
			headers: map[string]string{"X-Forwarded-Proto": "https"}, want: http.StatusForbidden},
		{name: "x_forwarded_proto_forged_by_untrusted_peer", edit: xfp, remote: "203.0.113.9:5000",
			headers: map[string]string{"X-Forwarded-Proto": "https"}, want: http.StatusForbidden},
		{name: "forwarded_proto_forged_by_untrusted_peer", edit: fwd, remote: "203.0.113.9:5000",
			headers: map[string]string{"Forwarded": "for=203.0.113.9;proto=https"}, want: http.StatusForbidden},
		{name: "trusted_proxy_https", edit: xfp, remote: "10.0.0.7:5000",
			headers: map[string]string{"X-Forwarded-Proto": "https"}, want: http.StatusOK},
		{name: "trusted_proxy_http", edit: xfp, remote: "10.0.0.7:5000",
			headers: map[string]string{"X-Forwarded-Proto": "http"}, want: http.StatusForbidden},
		{name: "trusted_proxy_no_header", edit: xfp, remote: "10.0.0.7:5000", want: http.StatusForbidden},
		{name: "client_https_appended_by_proxy_http", edit: xfp, remote: "10.0.0.7:5000",
			headers: map[string]string{"X-Forwarded-Proto": "https, http"}, want: http.StatusForbidden},
		{name: "forwarded_header_ignored_when_xfp_configured", edit: xfp, remote: "10.0.0.7:5000",
			headers: map[string]string{"Forwarded": "for=198.51.100.1;proto=https"}, want: http.StatusForbidden},
		{name: "trusted_proxy_forwarded_https", edit: fwd, remote: "10.0.0.7:5000",
			headers: map[string]string{"Forwarded": "for=198.51.100.1;proto=https"}, want: http.StatusOK},
		{name: "two_trusted_proxies_forwarded", edit: fwd, remote: "10.0.0.7:5000",
			headers: map[string]string{"Forwarded": `for=198.51.100.1;proto=https, for="10.0.0.8:4000";proto=http`}, want: http.StatusOK},
		{name: "forwarded_proto_forged_leftmost", edit: fwd, remote: "10.0.0.7:5000",
			headers: map[string]string{"Forwarded": "for=10.0.0.1;proto=https, for=198.51.100.1;proto=http"}, want: http.StatusForbidden},
		{name: "x_forwarded_proto_ignored_when_forwarded_configured", edit: fwd, remote: "10.0.0.7:5000",
			headers: map[string]string{"X-Forwarded-Proto": "https"}, want: http.StatusForbidden},
		{name: "redirect_get", edit: func(c *Config) { c.RedirectCleartext = "https://api.example" }, remote: "203.0.113.9:5000",
			want: http.StatusPermanentRedirect},
		{name: "redirect_refuses_post", edit: func(c *Config) { c.RedirectCleartext = "https://api.example" }, remote: "203.0.113.9:5000",
			method: http.MethodPost, want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.edit)
			reached := false
			h := e.g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, "http://evil.example//x/y?q=1", nil)
			r.RemoteAddr = tt.remote
			if tt.tls {
				r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
			}
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			require.Equal(t, tt.want, rec.Code)
			require.Equal(t, tt.want == http.StatusOK, reached)
			switch tt.want {
			case http.StatusOK:
				require.Equal(t, "max-age=63072000", rec.Header().Get("Strict-Transport-Security"))
			case http.StatusForbidden:
				require.Empty(t, rec.Header().Get("Strict-Transport-Security"), "HSTS only on HTTPS (RFC 6797 §7.2)")
				require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
				var p map[string]any
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
				require.Equal(t, "urn:apiguard:problem:cleartext-refused", p["type"])
			case http.StatusPermanentRedirect:
				require.Equal(t, "https://api.example//x/y?q=1", rec.Header().Get("Location"), "host fixed by config, never the request's")
			}
		})
	}
}

func TestHSTSValues(t *testing.T) {
	tests := []struct {
		name string
		give HSTS
		want string
	}{
		{name: "default", want: "max-age=63072000"},
		{name: "subdomains", give: HSTS{MaxAge: 24 * time.Hour, IncludeSubDomains: true}, want: "max-age=86400; includeSubDomains"},
		{name: "preload", give: HSTS{MaxAge: 365 * 24 * time.Hour, IncludeSubDomains: true, Preload: true}, want: "max-age=31536000; includeSubDomains; preload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.HSTS = tt.give })
			r := httptest.NewRequest(http.MethodGet, "https://api.example/", nil)
			r.TLS = &tls.ConnectionState{}
			rec := httptest.NewRecorder()
			e.g.Handler(http.NotFoundHandler()).ServeHTTP(rec, r)
			require.Equal(t, tt.want, rec.Header().Get("Strict-Transport-Security"))
		})
	}
}

func TestCheckErrorAndCustomHandler(t *testing.T) {
	var got error
	e := newEnv(t, func(c *Config) {
		c.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { got = err; w.WriteHeader(http.StatusTeapot) }
	})
	r := httptest.NewRequest(http.MethodGet, "http://api.example/", nil)
	require.ErrorIs(t, e.g.Check(r), ErrCleartext)
	rec := httptest.NewRecorder()
	e.g.Handler(http.NotFoundHandler()).ServeHTTP(rec, r)
	require.Equal(t, http.StatusTeapot, rec.Code)
	require.ErrorIs(t, got, ErrCleartext)
	require.Panics(t, func() { e.g.Handler(nil) })
}

func TestForwardedHopsBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustedProxies, c.ProxyHeader = trustedLB, HeaderForwarded })
	r := httptest.NewRequest(http.MethodGet, "http://api.example/", nil)
	r.RemoteAddr = "10.0.0.7:1"
	r.Header.Set("Forwarded", "for=198.51.100.1;proto=https,"+strings.Repeat("for=10.0.0.9;proto=https,", 40)+"for=10.0.0.9;proto=https")
	require.ErrorIs(t, e.g.Check(r), ErrCleartext, "more than 32 trusted hops: refused")
}
