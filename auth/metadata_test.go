package auth

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// rfc9728Members are the metadata members RFC 9728 §2 defines, with the
// JSON type of each: the document may hold nothing else.
var rfc9728Members = map[string]string{
	"resource":                                   "string",
	"authorization_servers":                      "array",
	"jwks_uri":                                   "string",
	"scopes_supported":                           "array",
	"bearer_methods_supported":                   "array",
	"resource_signing_alg_values_supported":      "array",
	"resource_name":                              "string",
	"resource_documentation":                     "string",
	"resource_policy_uri":                        "string",
	"resource_tos_uri":                           "string",
	"tls_client_certificate_bound_access_tokens": "bool",
	"authorization_details_types_supported":      "array",
	"dpop_signing_alg_values_supported":          "array",
	"dpop_bound_access_tokens_required":          "bool",
}

// getMetadata fetches the document from v's handler and checks it
// against RFC 9728: 200, application/json, each member defined by §2 and
// of its type, arrays of strings.
func getMetadata(t *testing.T, v *Verifier) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	v.MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", v.MetadataURL(), nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &doc))
	for name, val := range doc {
		typ, ok := rfc9728Members[name]
		require.True(t, ok, "member %q is not defined by RFC 9728 §2", name)
		switch typ {
		case "string":
			require.IsType(t, "", val, name)
		case "bool":
			require.IsType(t, true, val, name)
		case "array":
			arr, ok := val.([]any)
			require.True(t, ok, "%s is a JSON array", name)
			for _, e := range arr {
				require.IsType(t, "", e, name)
			}
		}
	}
	return doc
}

func TestMetadataDocument(t *testing.T) {
	es := newSigner(t, jwa.ES256, "es-1")
	const iss2 = "https://login.partner.example/"
	tests := []struct {
		name string
		mod  func(*Config)
		want map[string]any
	}{
		{
			name: "bearer_only",
			mod:  func(c *Config) { c.Resource = "https://api.example.com" },
			want: map[string]any{
				"resource":                          "https://api.example.com",
				"authorization_servers":             []any{testIssuer},
				"bearer_methods_supported":          []any{"header"},
				"dpop_bound_access_tokens_required": false,
			},
		},
		{
			name: "dpop_allowed_two_issuers_and_optional_members",
			mod: func(c *Config) {
				c.Resource = "https://api.example.com/v1"
				c.ResourceMetadata = ResourceMetadata{Scopes: []string{"orders:read", "orders:write"}, Name: "Orders API", Documentation: "https://developer.example.com/orders"}
				c.Issuers = append(c.Issuers, Issuer{Issuer: iss2, Audience: []string{testAudience}, Keys: jwkSet(t, es)})
				c.DPoP, c.DPoPURL = DPoPAllowed, apiBase
				c.DPoPAlgorithms = []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA}
			},
			want: map[string]any{
				"resource":                          "https://api.example.com/v1",
				"authorization_servers":             []any{testIssuer, iss2},
				"scopes_supported":                  []any{"orders:read", "orders:write"},
				"bearer_methods_supported":          []any{"header"},
				"resource_name":                     "Orders API",
				"resource_documentation":            "https://developer.example.com/orders",
				"dpop_signing_alg_values_supported": []any{"ES256", "EdDSA"},
				"dpop_bound_access_tokens_required": false,
			},
		},
		{
			name: "dpop_required_default_algorithms",
			mod: func(c *Config) {
				c.Resource = "https://api.example.com/"
				c.DPoP, c.DPoPURL = DPoPRequired, apiBase
			},
			want: map[string]any{
				"resource":                          "https://api.example.com/",
				"authorization_servers":             []any{testIssuer},
				"bearer_methods_supported":          []any{"header"},
				"dpop_signing_alg_values_supported": []any{"RS256", "PS256", "ES256", "EdDSA"},
				"dpop_bound_access_tokens_required": true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newTestVerifier(t, testkit.NewClock(t0), tt.mod, es)
			doc := getMetadata(t, v)
			require.Equal(t, tt.want, doc)
			require.Equal(t, v.cfg.Resource, doc["resource"], "RFC 9728 §3.3: resource is the identifier exactly")
		})
	}
}

// TestMetadataURL: RFC 9728 §3.1, the well-known suffix goes between
// host and path, a terminating slash removed.
func TestMetadataURL(t *testing.T) {
	tests := []struct{ resource, want string }{
		{"https://api.example.com", "https://api.example.com/.well-known/oauth-protected-resource"},
		{"https://api.example.com/", "https://api.example.com/.well-known/oauth-protected-resource"},
		{"https://api.example.com/resource1", "https://api.example.com/.well-known/oauth-protected-resource/resource1"},
		{"https://api.example.com:8443/a/b/", "https://api.example.com:8443/.well-known/oauth-protected-resource/a/b"},
		{"http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/.well-known/oauth-protected-resource/v1"},
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			v, _ := newTestVerifier(t, testkit.NewClock(t0), func(c *Config) { c.Resource = tt.resource }, newSigner(t, jwa.ES256, "k"))
			require.Equal(t, tt.want, v.MetadataURL())
		})
	}
	v, _ := newTestVerifier(t, testkit.NewClock(t0), nil, newSigner(t, jwa.ES256, "k"))
	require.Empty(t, v.MetadataURL())
	require.PanicsWithValue(t, "auth: MetadataHandler needs Config.Resource", func() { v.MetadataHandler() })
}

// TestMetadataLeaksNothing: the document is public. With a DPoP nonce
// key, a remote JWKS, and audiences other than the resource configured,
// none of them appears in it.
func TestMetadataLeaksNothing(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef-nonce-key") // gitleaks:allow -- a test value, not a credential
	srv := newJWKSServer(t, newSigner(t, jwa.ES256, "k"))
	v, _ := newRemoteVerifier(t, testkit.NewClock(t0), srv.URL, func(c *Config) {
		c.Resource = "https://api.example.com"
		c.Issuers[0].Audience = []string{"internal-audience-7"}
		c.DPoP, c.DPoPURL, c.DPoPNonceKey = DPoPAllowed, apiBase, secret
	})
	rec := httptest.NewRecorder()
	v.MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", v.MetadataURL(), nil))
	body := rec.Body.String()
	for _, leak := range []string{
		string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret), hex.EncodeToString(secret),
		srv.URL, "internal-audience-7", `"kid"`, `"keys"`, "nonce",
	} {
		require.NotContains(t, body, leak)
	}
	getMetadata(t, v)
}

// TestMetadataMethods: GET and HEAD read the document, cacheable; other
// methods get 405 with Allow.
func TestMetadataMethods(t *testing.T) {
	v, _ := newTestVerifier(t, testkit.NewClock(t0), func(c *Config) { c.Resource = "https://api.example.com" }, newSigner(t, jwa.ES256, "k"))
	h := v.MetadataHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("HEAD", v.MetadataURL(), nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, rec.Body.String())
	require.Equal(t, "public, max-age=3600", rec.Header().Get("Cache-Control"))
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, v.MetadataURL(), strings.NewReader(`{"resource":"https://evil"}`)))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
		require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
	}
	require.Equal(t, "https://api.example.com", getMetadata(t, v)["resource"])
}

// TestChallengeResourceMetadata: with Config.Resource, every challenge
// (Bearer and DPoP, 401 and 403) carries resource_metadata (RFC 9728
// §5.1); without it, none does.
func TestChallengeResourceMetadata(t *testing.T) {
	es := newSigner(t, jwa.ES256, "es-1")
	const rm = `resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/v1"`
	withResource := func(mode DPoPMode) func(*Config) {
		return func(c *Config) {
			c.Resource = "https://api.example.com/v1"
			if mode != DPoPOff {
				c.DPoP, c.DPoPURL = mode, apiBase
			}
		}
	}
	tests := []struct {
		name  string
		mod   func(*Config)
		req   func(t *testing.T) *http.Request
		mw    func(v *Verifier) func(http.Handler) http.Handler
		code  int
		chall []string
	}{
		{
			name: "bearer_no_token", mod: withResource(DPoPOff),
			req:  func(t *testing.T) *http.Request { return httptest.NewRequest("GET", apiBase+"/v1/orders", nil) },
			code: 401, chall: []string{`Bearer ` + rm},
		},
		{
			name: "bearer_forged_token", mod: withResource(DPoPOff),
			req:  func(t *testing.T) *http.Request { return bearer(es.token(t, nil) + "x") },
			code: 401, chall: []string{`Bearer error="invalid_token", ` + rm},
		},
		{
			name: "bearer_insufficient_scope", mod: withResource(DPoPOff),
			req:  func(t *testing.T) *http.Request { return bearer(es.token(t, nil)) },
			mw:   func(v *Verifier) func(http.Handler) http.Handler { return v.Require("admin") },
			code: 403, chall: []string{`Bearer error="insufficient_scope", scope="admin", ` + rm},
		},
		{
			name: "dpop_allowed_forged_token", mod: withResource(DPoPAllowed),
			req:  func(t *testing.T) *http.Request { return bearer(es.token(t, nil) + "x") },
			code: 401, chall: []string{`Bearer error="invalid_token", ` + rm, `DPoP error="invalid_token", ` + rm + `, algs="RS256 PS256 ES256 EdDSA"`},
		},
		{
			name: "dpop_required_bearer_token", mod: withResource(DPoPRequired),
			req:  func(t *testing.T) *http.Request { return bearer(es.token(t, nil)) },
			code: 401, chall: []string{`DPoP ` + rm + `, algs="RS256 PS256 ES256 EdDSA"`},
		},
		{
			name: "no_resource_no_parameter", mod: nil,
			req:  func(t *testing.T) *http.Request { return bearer(es.token(t, nil) + "x") },
			code: 401, chall: []string{`Bearer error="invalid_token"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newTestVerifier(t, testkit.NewClock(t0), tt.mod, es)
			mw := v.Handler
			if tt.mw != nil {
				mw = tt.mw(v)
			}
			rec, reached, _ := call(mw, tt.req(t))
			require.False(t, reached)
			require.Equal(t, tt.code, rec.Code)
			require.Equal(t, tt.chall, rec.Header().Values("WWW-Authenticate"))
		})
	}
}

func TestMetadataRefusesBadConfig(t *testing.T) {
	ok := Issuer{Issuer: testIssuer, Audience: []string{testAudience}, Keys: jwkSet(t, newSigner(t, jwa.ES256, "k"))}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "resource_cleartext_remote", cfg: Config{Resource: "http://api.example.com"}, want: `auth: Config.Resource "http://api.example.com" must be an https URL`},
		{name: "resource_with_fragment", cfg: Config{Resource: "https://api.example.com/#x"}, want: "without query or fragment"},
		{name: "resource_with_query", cfg: Config{Resource: "https://api.example.com/?tenant=a"}, want: "without query or fragment"},
		{name: "resource_relative", cfg: Config{Resource: "/v1"}, want: "must be an https URL"},
		{name: "documentation_cleartext", cfg: Config{Resource: "https://api.example.com", ResourceMetadata: ResourceMetadata{Documentation: "http://docs.example.com"}}, want: "Config.ResourceMetadata.Documentation"},
		{name: "metadata_without_resource", cfg: Config{ResourceMetadata: ResourceMetadata{Name: "x"}}, want: "Config.ResourceMetadata needs Config.Resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Issuers = []Issuer{ok}
			_, err := New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
