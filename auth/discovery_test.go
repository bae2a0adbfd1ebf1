package auth

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// discoServer is an authorization server on loopback: metadata documents
// and key sets at paths the test sets, with a count of hits per path.
type discoServer struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]func(w http.ResponseWriter)
	hits   map[string]int
}

func newDiscoServer(t *testing.T) *discoServer {
	t.Helper()
	s := &discoServer{routes: map[string]func(http.ResponseWriter){}, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		h := s.routes[r.URL.Path]
		s.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w)
	}))
	t.Cleanup(s.Close)
	return s
}

// json serves v as JSON at path.
func (s *discoServer) json(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	s.route(path, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

func (s *discoServer) route(path string, h func(http.ResponseWriter)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.routes, path)
		return
	}
	s.routes[path] = h
}

func (s *discoServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

const oidcPath = "/.well-known/openid-configuration"

// newDiscoveryVerifier is newRemoteVerifier for an issuer configured
// with its URL only.
func newDiscoveryVerifier(t *testing.T, clk *testClock, issuer string, mod func(*Config)) (*Verifier, *logSink) {
	t.Helper()
	return newRemoteVerifier(t, clk, "", func(c *Config) {
		c.Issuers[0].Issuer = issuer
		if mod != nil {
			mod(c)
		}
	})
}

// issuedBy is a token of s from issuer, issued now by clk.
func issuedBy(t *testing.T, s *signer, clk *testClock, issuer string) string {
	t.Helper()
	now := clk.Now()
	return s.token(t, map[string]any{"iss": issuer, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
}

// TestDiscoveryFindsJWKS: an issuer configured with its URL only finds
// its keys through OpenID Connect discovery (issuer without path), or
// through RFC 8414 metadata when the OpenID Connect document is missing
// (issuer with a path: the well-known segment goes between host and
// path). The token is verified; the documents are fetched once.
func TestDiscoveryFindsJWKS(t *testing.T) {
	tests := []struct {
		name      string
		issuerFor func(base string) string
		docPath   string
		skipped   string // a well-known path tried first, answered 404
	}{
		{name: "openid_connect", issuerFor: func(b string) string { return b }, docPath: oidcPath},
		{name: "openid_connect_terminating_slash", issuerFor: func(b string) string { return b + "/" }, docPath: oidcPath},
		{name: "openid_connect_with_path", issuerFor: func(b string) string { return b + "/realms/app" }, docPath: "/realms/app" + oidcPath},
		{name: "rfc8414_with_path", issuerFor: func(b string) string { return b + "/tenant1" }, docPath: "/.well-known/oauth-authorization-server/tenant1", skipped: "/tenant1" + oidcPath},
		{name: "rfc8414_without_path", issuerFor: func(b string) string { return b }, docPath: "/.well-known/oauth-authorization-server", skipped: oidcPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			a := newSigner(t, jwa.ES256, "key-a")
			srv := newDiscoServer(t)
			issuer := tt.issuerFor(srv.URL)
			srv.json(t, tt.docPath, map[string]any{"issuer": issuer, "jwks_uri": srv.URL + "/keys", "token_endpoint": srv.URL + "/token"})
			srv.json(t, "/keys", jwkSet(t, a))
			v, logs := newDiscoveryVerifier(t, clk, issuer, nil)

			require.NoError(t, v.Ready(t.Context()), logs.String())
			rec, reached, claims := call(v.Handler, bearer(issuedBy(t, a, clk, issuer)))
			require.True(t, reached, rec.Body.String()+logs.String())
			require.Equal(t, issuer, claims.Issuer)
			require.Equal(t, 1, srv.hitsOf(tt.docPath))
			require.Equal(t, 1, srv.hitsOf("/keys"))
			if tt.skipped != "" {
				require.Equal(t, 1, srv.hitsOf(tt.skipped), "the OpenID Connect document is tried first")
			}

			m, err := Discover(t.Context(), nil, issuer)
			require.NoError(t, err)
			require.Equal(t, ServerMetadata{URL: srv.URL + tt.docPath, Issuer: issuer, JWKSURI: srv.URL + "/keys", TokenEndpoint: srv.URL + "/token"}, *m)
		})
	}
}

// TestDiscoveryAttacks: a discovery document that would hand the
// verifier keys it must not trust is refused; the issuer's tokens get 503
// with Retry-After (never 401: the token may be valid), Ready names the
// issuer and the cause, and the log says reason=discovery. The JWKS the
// bad document points at is never fetched.
func TestDiscoveryAttacks(t *testing.T) {
	tests := []struct {
		name string
		doc  func(srv *discoServer, evil string) any
		mod  func(*Config)
		want string
	}{
		{
			name: "issuer_mismatch_document_of_another_issuer",
			doc: func(srv *discoServer, evil string) any {
				return map[string]any{"issuer": "https://attacker.example/", "jwks_uri": evil + "/keys"}
			},
			want: `issuer mismatch: the document is for "https://attacker.example/", configured issuer is "` + "%s" + `"`,
		},
		{
			name: "issuer_mismatch_terminating_slash",
			doc: func(srv *discoServer, evil string) any {
				return map[string]any{"issuer": srv.URL + "/", "jwks_uri": srv.URL + "/keys"}
			},
			want: "issuer mismatch",
		},
		{
			name: "issuer_missing",
			doc:  func(srv *discoServer, evil string) any { return map[string]any{"jwks_uri": srv.URL + "/keys"} },
			want: "no issuer member",
		},
		{
			name: "jwks_uri_cleartext_to_remote_host",
			doc: func(srv *discoServer, evil string) any {
				return map[string]any{"issuer": srv.URL, "jwks_uri": "http://keys.attacker.example/jwks"}
			},
			want: `jwks_uri "http://keys.attacker.example/jwks" is not an https URL (http only on loopback)`,
		},
		{
			name: "jwks_uri_missing",
			doc:  func(srv *discoServer, evil string) any { return map[string]any{"issuer": srv.URL} },
			want: "no jwks_uri",
		},
		{
			name: "document_oversize",
			doc: func(srv *discoServer, evil string) any {
				return map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys", "padding": strings.Repeat("x", 4096)}
			},
			mod:  func(c *Config) { c.MaxJWKSSize = 2048 },
			want: "body over Config.MaxJWKSSize (2048 bytes)",
		},
		{
			name: "document_not_json",
			doc:  func(srv *discoServer, evil string) any { return "<html>login</html>" },
			want: "not a JSON object",
		},
		{
			name: "redirect_to_another_host",
			doc:  nil, // redirected to the attacker's server, which serves a matching document
			want: "redirect to another host refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			a := newSigner(t, jwa.ES256, "key-a")
			srv := newDiscoServer(t)
			evil := newDiscoServer(t)
			evil.json(t, "/keys", jwkSet(t, a))
			if tt.doc != nil {
				srv.json(t, oidcPath, tt.doc(srv, evil.URL))
			} else {
				evil.json(t, oidcPath, map[string]any{"issuer": srv.URL, "jwks_uri": evil.URL + "/keys"})
				srv.route(oidcPath, func(w http.ResponseWriter) {
					w.Header().Set("Location", evil.URL+oidcPath)
					w.WriteHeader(http.StatusFound)
				})
			}
			srv.json(t, "/keys", jwkSet(t, a))
			v, logs := newDiscoveryVerifier(t, clk, srv.URL, tt.mod)

			err := v.Ready(t.Context())
			require.ErrorIs(t, err, ErrKeysUnavailable)
			want := tt.want
			if strings.Contains(want, "%s") {
				want = strings.ReplaceAll(want, "%s", srv.URL)
			}
			require.ErrorContains(t, err, "key set of "+srv.URL+" not loaded: discovery document")
			require.ErrorContains(t, err, want)

			rec, reached, _ := call(v.Handler, bearer(issuedBy(t, a, clk, srv.URL)))
			require.False(t, reached)
			require.Equal(t, http.StatusServiceUnavailable, rec.Code, "a valid token is not refused for the issuer's fault")
			require.Positive(t, retryAfter(t, rec.Header()))
			require.Contains(t, logs.String(), `"reason":"discovery"`)
			require.Zero(t, evil.hitsOf("/keys"), "the attacker's keys are never fetched")
			require.Zero(t, srv.hitsOf("/keys"))
			require.Zero(t, srv.hitsOf("/.well-known/oauth-authorization-server"), "a bad document is not passed over for the RFC 8414 one")
		})
	}
}

// TestDiscoveryServerDown: the issuer's discovery endpoint is down at
// start: 503 with Retry-After, Ready naming the issuer and the dial
// error; when it comes back, the schedule's next fetch discovers and
// loads the keys.
func TestDiscoveryServerDown(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newDiscoServer(t)
	srv.route(oidcPath, func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	srv.json(t, "/keys", jwkSet(t, a))
	v, logs := newDiscoveryVerifier(t, clk, srv.URL, nil)

	err := v.Ready(t.Context())
	require.EqualError(t, err, "auth: signing keys unavailable: key set of "+srv.URL+" not loaded: discovery document: GET "+srv.URL+oidcPath+" returned 503")
	rec, reached, _ := call(v.Handler, bearer(issuedBy(t, a, clk, srv.URL)))
	require.False(t, reached)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, time.Second, retryAfter(t, rec.Header()), "the back-off after one failure")
	require.Zero(t, srv.hitsOf("/.well-known/oauth-authorization-server"), "an outage is not a missing document")
	require.Contains(t, logs.String(), `"reason":"discovery"`)

	// Closed entirely: the dial error.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	v2, _ := newDiscoveryVerifier(t, clk, closed.URL, nil)
	err = v2.Ready(t.Context())
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.ErrorContains(t, err, "key set of "+closed.URL+" not loaded: discovery document: GET "+closed.URL+oidcPath+": ")

	// Back up: the next fetch the schedule allows discovers and loads.
	srv.json(t, oidcPath, map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
	clk.Advance(2 * time.Second)
	rec, reached, _ = call(v.Handler, bearer(issuedBy(t, a, clk, srv.URL)))
	require.True(t, reached, rec.Body.String()+logs.String())
	require.NoError(t, v.Ready(t.Context()))
}

// TestDiscoveryRediscovers: the JWKS URL is discovered again when it
// answers 404 (the issuer moved its keys: within the same fetch, so a
// rotation to the new URL costs no 503), and when the discovery is
// MaxKeyRefresh old; not on other fetches.
func TestDiscoveryRediscovers(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	b := newSigner(t, jwa.ES256, "key-b")
	c := newSigner(t, jwa.ES256, "key-c")
	srv := newDiscoServer(t)
	srv.json(t, oidcPath, map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys-1"})
	srv.json(t, "/keys-1", jwkSet(t, a))
	v, logs := newDiscoveryVerifier(t, clk, srv.URL, nil)
	require.NoError(t, v.Ready(t.Context()))

	// A new key at the same URL: a refresh, no discovery.
	srv.json(t, "/keys-1", jwkSet(t, a, b))
	clk.Advance(2 * time.Minute)
	_, reached, _ := call(v.Handler, bearer(issuedBy(t, b, clk, srv.URL)))
	require.True(t, reached, logs.String())
	require.Equal(t, 1, srv.hitsOf(oidcPath))
	require.Equal(t, 2, srv.hitsOf("/keys-1"))

	// The keys move: the old URL answers 404, the document names the new.
	srv.route("/keys-1", nil)
	srv.json(t, oidcPath, map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys-2"})
	srv.json(t, "/keys-2", jwkSet(t, a, b, c))
	clk.Advance(2 * time.Minute)
	rec, reached, _ := call(v.Handler, bearer(issuedBy(t, c, clk, srv.URL)))
	require.True(t, reached, rec.Body.String()+logs.String())
	require.Equal(t, 2, srv.hitsOf(oidcPath))
	require.Equal(t, 3, srv.hitsOf("/keys-1"))
	require.Equal(t, 1, srv.hitsOf("/keys-2"))

	// MaxKeyRefresh (1h) after that discovery, the next fetch discovers.
	srv.json(t, oidcPath, map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys-3"})
	srv.json(t, "/keys-3", jwkSet(t, a))
	clk.Advance(time.Hour)
	d := newSigner(t, jwa.ES256, "key-d")
	srv.json(t, "/keys-3", jwkSet(t, a, d))
	_, reached, _ = call(v.Handler, bearer(issuedBy(t, d, clk, srv.URL)))
	require.True(t, reached, logs.String())
	require.Equal(t, 3, srv.hitsOf(oidcPath))
	require.Equal(t, 1, srv.hitsOf("/keys-3"))
}

// TestDiscoveryGone: 410 counts as 404: the OpenID Connect document gone
// falls back to RFC 8414, and a JWKS URL gone is discovered again.
func TestDiscoveryGone(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	b := newSigner(t, jwa.ES256, "key-b")
	gone := func(w http.ResponseWriter) { w.WriteHeader(http.StatusGone) }
	srv := newDiscoServer(t)
	const rfc8414 = "/.well-known/oauth-authorization-server"
	srv.route(oidcPath, gone)
	srv.json(t, rfc8414, map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys-1"})
	srv.json(t, "/keys-1", jwkSet(t, a))
	v, logs := newDiscoveryVerifier(t, clk, srv.URL, nil)
	require.NoError(t, v.Ready(t.Context()), logs.String())

	srv.route("/keys-1", gone)
	srv.json(t, rfc8414, map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys-2"})
	srv.json(t, "/keys-2", jwkSet(t, a, b))
	clk.Advance(2 * time.Minute)
	_, reached, _ := call(v.Handler, bearer(issuedBy(t, b, clk, srv.URL)))
	require.True(t, reached, logs.String())
	require.Equal(t, 2, srv.hitsOf(oidcPath))
	require.Equal(t, 2, srv.hitsOf(rfc8414))
	require.Equal(t, 1, srv.hitsOf("/keys-2"))
}

// TestDiscoveryFetchStorm: a hundred requests at start-up, at once,
// share the first fetch: one discovery, one JWKS download.
func TestDiscoveryFetchStorm(t *testing.T) {
	clk := testkit.NewClock(t0)
	a := newSigner(t, jwa.ES256, "key-a")
	srv := newDiscoServer(t)
	srv.json(t, oidcPath, map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
	srv.json(t, "/keys", jwkSet(t, a))
	v, logs := newDiscoveryVerifier(t, clk, srv.URL, nil)
	toks := make([]string, 100)
	for i := range toks {
		toks[i] = issuedBy(t, a, clk, srv.URL)
	}
	require.Equal(t, int32(100), verifyAtOnce(t, v, toks), logs.String())
	require.Equal(t, 1, srv.hitsOf(oidcPath))
	require.Equal(t, 1, srv.hitsOf("/keys"))
}

func TestDiscoverRefusesIssuerURL(t *testing.T) {
	tests := []struct {
		name, issuer string
	}{
		{name: "cleartext_remote_issuer", issuer: "http://login.example.com"},
		{name: "issuer_not_url", issuer: "login"},
		{name: "issuer_with_query", issuer: "https://login.example.com/?tenant=a"},
		{name: "issuer_with_fragment", issuer: "https://login.example.com/#a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Issuers: []Issuer{{Issuer: tt.issuer, Audience: []string{testAudience}}}})
			require.ErrorContains(t, err, "auth: Config.Issuers[0]: issuer "+`"`+tt.issuer+`" must be an https URL`)
			_, err = Discover(t.Context(), nil, tt.issuer)
			require.ErrorContains(t, err, "must be an https URL")
		})
	}
}

// docTransport answers every request with body, 200.
type docTransport []byte

func (b docTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(b)), Request: r}, nil
}

// FuzzDiscoveryDocument: whatever a metadata document holds, discover
// never panics, and accepts it only for the configured issuer with a
// jwks_uri that is https (http only on loopback).
func FuzzDiscoveryDocument(f *testing.F) {
	const issuer = "https://login.example.com/tenant"
	f.Add([]byte(`{"issuer":"https://login.example.com/tenant","jwks_uri":"https://login.example.com/keys"}`))
	f.Add([]byte(`{"issuer":"https://login.example.com/tenant","jwks_uri":"http://127.0.0.1/keys","token_endpoint":"https://x/t"}`))
	f.Add([]byte(`{"issuer":"https://login.example.com/tenant/","jwks_uri":"https://login.example.com/keys"}`))
	f.Add([]byte(`{"issuer":null,"jwks_uri":"javascript:alert(1)"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		m, err := discover(t.Context(), &http.Client{Transport: docTransport(doc)}, issuer, 4096)
		if err != nil {
			return
		}
		require.Equal(t, issuer, m.Issuer)
		u, perr := url.Parse(m.JWKSURI)
		require.NoError(t, perr)
		require.True(t, u.Scheme == "https" || (u.Scheme == "http" && isLoopback(u.Hostname())), m.JWKSURI)
		require.NotEmpty(t, u.Host)
	})
}
