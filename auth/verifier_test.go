package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

var _ func(http.Handler) http.Handler = (*Verifier)(nil).Handler

func TestVerifyAttacks(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	other := newSigner(t, jwa.ES256, "es-1") // same kid, another key
	rs := newSigner(t, jwa.RS256, "rs-1")
	v, logs := newTestVerifier(t, clk, nil, es, rs)

	// HS256 signed with the issuer's public key as the HMAC secret.
	der, err := x509.MarshalPKIXPublicKey(&sharedRSA(t).PublicKey)
	require.NoError(t, err)
	hsHeader := b64json(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": "rs-1"})
	hsPayload := b64json(t, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()})
	mac := hmac.New(sha256.New, der)
	mac.Write([]byte(hsHeader + "." + hsPayload))
	hs256 := hsHeader + "." + hsPayload + "." + b64.EncodeToString(mac.Sum(nil))

	noneTok := b64json(t, map[string]any{"alg": "none", "typ": "at+jwt"}) + "." +
		b64json(t, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()}) + "."
	valid := es.token(t, nil)
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{name: "alg_none", token: noneTok, want: ErrMalformedToken},
		{name: "alg_none_with_signature", token: noneTok + "c2ln", want: ErrAlgorithm},
		{name: "hs256_signed_with_public_key", token: hs256, want: ErrAlgorithm},
		{name: "expired", token: es.token(t, map[string]any{"iat": t0.Add(-20 * time.Minute).Unix(), "exp": t0.Add(-time.Minute).Unix()}), want: ErrExpired},
		{name: "expired_within_skew_is_fine_but_past_it_not", token: es.token(t, map[string]any{"exp": t0.Add(-31 * time.Second).Unix(), "iat": t0.Add(-5 * time.Minute).Unix()}), want: ErrExpired},
		{name: "missing_exp", token: es.token(t, map[string]any{"exp": nil}), want: ErrExpired},
		{name: "not_yet_valid_nbf", token: es.token(t, map[string]any{"nbf": t0.Add(5 * time.Minute).Unix()}), want: ErrNotYetValid},
		{name: "issued_in_future", token: es.token(t, map[string]any{"iat": t0.Add(5 * time.Minute).Unix(), "exp": t0.Add(10 * time.Minute).Unix()}), want: ErrNotYetValid},
		{name: "missing_iat", token: es.token(t, map[string]any{"iat": nil}), want: ErrLifetime},
		{name: "lifetime_too_long", token: es.token(t, map[string]any{"exp": t0.Add(30 * 24 * time.Hour).Unix()}), want: ErrLifetime},
		{name: "wrong_aud", token: es.token(t, map[string]any{"aud": "https://other-api.example.com"}), want: ErrAudience},
		{name: "wrong_iss", token: es.token(t, map[string]any{"iss": "https://evil.example.com/"}), want: ErrIssuer},
		{name: "id_token_typ_jwt", token: es.sign(t, map[string]any{"typ": "JWT", "kid": "es-1"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix(), "nonce": "n"}), want: ErrType},
		{name: "typ_missing", token: es.sign(t, map[string]any{"kid": "es-1"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()}), want: ErrType},
		{name: "unknown_kid", token: es.sign(t, map[string]any{"typ": "at+jwt", "kid": "nope"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()}), want: ErrUnknownKey},
		{name: "signature_of_another_key", token: other.token(t, nil), want: ErrSignature},
		{name: "payload_swapped", token: parts[0] + "." + b64json(t, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix(), "scope": "admin"}) + "." + parts[2], want: ErrSignature},
		{name: "alg_confusion_rs256_header_on_ec_kid", token: rs.sign(t, map[string]any{"typ": "at+jwt", "kid": "es-1"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()}), want: ErrUnknownKey},
		{name: "jku_header", token: es.sign(t, map[string]any{"typ": "at+jwt", "kid": "es-1", "jku": "https://evil.example.com/jwks"}, map[string]any{"iss": testIssuer}), want: ErrForbiddenHeader},
		{name: "x5u_header", token: es.sign(t, map[string]any{"typ": "at+jwt", "kid": "es-1", "x5u": "https://evil.example.com/cert"}, map[string]any{"iss": testIssuer}), want: ErrForbiddenHeader},
		{name: "crit_header", token: es.sign(t, map[string]any{"typ": "at+jwt", "kid": "es-1", "crit": []string{"exp"}}, map[string]any{"iss": testIssuer}), want: ErrForbiddenHeader},
		{name: "oversize_token", token: es.token(t, map[string]any{"pad": strings.Repeat("a", 9000)}), want: ErrMalformedToken},
		{name: "three_dots", token: valid + ".x", want: ErrMalformedToken},
		{name: "one_dot", token: parts[0] + "." + parts[1], want: ErrMalformedToken},
		{name: "bad_base64", token: parts[0] + ".a." + parts[2], want: ErrMalformedToken},
		{name: "header_not_json", token: b64.EncodeToString([]byte("not json")) + "." + parts[1] + "." + parts[2], want: ErrMalformedToken},
		{name: "payload_not_object", token: parts[0] + "." + b64.EncodeToString([]byte(`[1,2]`)) + "." + parts[2], want: ErrMalformedToken},
		{name: "exp_as_string", token: es.token(t, map[string]any{"exp": "tomorrow"}), want: ErrMalformedToken},
		{name: "padded_base64", token: parts[0] + "=." + parts[1] + "." + parts[2], want: ErrMalformedToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.VerifyToken(t.Context(), tt.token)
			require.ErrorIs(t, err, tt.want)

			rec, reached, _ := call(v.Handler, bearer(tt.token))
			require.False(t, reached)
			require.Equal(t, http.StatusUnauthorized, rec.Code)
			require.Equal(t, `Bearer error="invalid_token"`, rec.Header().Get("WWW-Authenticate"))
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			require.JSONEq(t, `{"type":"urn:apiguard:problem:invalid-token","title":"Invalid token","status":401,"detail":"The access token is invalid."}`, rec.Body.String(), "one fixed text for every invalid token: no oracle")
			require.Contains(t, logs.String(), `"reason":"`+reason(tt.want)+`"`)
		})
	}
	require.NotContains(t, logs.String(), valid, "tokens never logged")
}

func TestVerifyAccepts(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	rs := newSigner(t, jwa.RS256, "rs-1")
	ps := newSigner(t, jwa.PS256, "ps-1")
	ed := newSigner(t, jwa.EdDSA, "ed-1")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.TokenCacheSize = -1 }, es, rs, ps, ed)
	tests := []struct {
		name  string
		token string
	}{
		{name: "es256", token: es.token(t, nil)},
		{name: "rs256", token: rs.token(t, nil)},
		{name: "ps256", token: ps.token(t, nil)},
		{name: "eddsa", token: ed.token(t, nil)},
		{name: "aud_array", token: es.token(t, map[string]any{"aud": []string{"x", testAudience}})},
		{name: "typ_media_type", token: es.sign(t, map[string]any{"typ": "application/at+jwt", "kid": "es-1"}, map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()})},
		{name: "expired_within_skew", token: es.token(t, map[string]any{"iat": t0.Add(-5 * time.Minute).Unix(), "exp": t0.Add(-10 * time.Second).Unix()})},
		{name: "fractional_dates", token: es.token(t, map[string]any{"iat": float64(t0.Unix()) + 0.5, "exp": float64(t0.Add(time.Minute).Unix()) + 0.25})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, reached, claims := call(v.Handler, bearer(tt.token))
			require.True(t, reached, rec.Body.String())
			require.Equal(t, http.StatusNoContent, rec.Code)
			require.Equal(t, testIssuer, claims.Issuer)
			require.Contains(t, claims.Audience, testAudience)
		})
	}
}

func TestClaims(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, _ := newTestVerifier(t, clk, nil, es)
	tok := es.token(t, map[string]any{"acr": "urn:acr:mfa", "amr": []string{"pwd", "otp"}, "auth_time": t0.Add(-time.Minute).Unix(), "cnf": nil, "tier": "gold"})
	c, err := v.VerifyToken(t.Context(), tok)
	require.NoError(t, err)
	require.Equal(t, "user-1", c.Subject)
	require.Equal(t, "mobile-app", c.ClientID)
	require.Equal(t, "tok-1", c.ID)
	require.Equal(t, []string{"orders:read", "profile"}, c.Scopes)
	require.Equal(t, "urn:acr:mfa", c.ACR)
	require.Equal(t, []string{"pwd", "otp"}, c.AMR)
	require.Equal(t, t0.Add(-time.Minute), c.AuthTime)
	require.Equal(t, t0.Add(10*time.Minute), c.Expiry)
	var extra struct{ Tier string }
	require.NoError(t, c.Decode(&extra))
	require.Equal(t, "gold", extra.Tier)

	scp, err := v.VerifyToken(t.Context(), es.token(t, map[string]any{"scope": nil, "scp": []string{"a", "b"}}))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, scp.Scopes)
	scpString, err := v.VerifyToken(t.Context(), es.token(t, map[string]any{"scope": nil, "scp": "orders:read orders:write", "jti": "t-scp"}))
	require.NoError(t, err)
	require.Equal(t, []string{"orders:read", "orders:write"}, scpString.Scopes, "scp as a space-delimited string")
}

func TestAllowJWTType(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.Issuers[0].InsecureAllowJWTType = true }, es)
	claims := map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()}
	_, err := v.VerifyToken(t.Context(), es.sign(t, map[string]any{"typ": "JWT", "kid": "es-1"}, claims))
	require.NoError(t, err)
	claims["at_hash"] = "x"
	_, err = v.VerifyToken(t.Context(), es.sign(t, map[string]any{"typ": "JWT", "kid": "es-1"}, claims))
	require.ErrorIs(t, err, ErrType, "an ID token is refused even when typ JWT is allowed")
}

func TestAuthorizationHeader(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, _ := newTestVerifier(t, clk, nil, es)
	tok := es.token(t, nil)
	tests := []struct {
		name       string
		headers    []string
		wantStatus int
		wantChall  string
	}{
		{name: "no_header", wantStatus: 401, wantChall: `Bearer`},
		{name: "basic_scheme", headers: []string{"Basic dXNlcjpwYXNz"}, wantStatus: 401, wantChall: `Bearer`},
		{name: "two_headers", headers: []string{"Bearer " + tok, "Bearer " + tok}, wantStatus: 400, wantChall: `Bearer error="invalid_request"`},
		{name: "empty_token", headers: []string{"Bearer "}, wantStatus: 400, wantChall: `Bearer error="invalid_request"`},
		{name: "token_with_spaces", headers: []string{"Bearer a b"}, wantStatus: 400, wantChall: `Bearer error="invalid_request"`},
		{name: "dpop_scheme_when_off", headers: []string{"DPoP " + tok}, wantStatus: 401, wantChall: `Bearer`},
		{name: "lowercase_scheme_ok", headers: []string{"bearer " + tok}, wantStatus: 204},
		{name: "several_spaces_ok", headers: []string{"Bearer   " + tok}, wantStatus: 204},
		{name: "only_spaces", headers: []string{"Bearer    "}, wantStatus: 400, wantChall: `Bearer error="invalid_request"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			rec, reached, _ := call(v.Handler, r)
			require.Equal(t, tt.wantStatus, rec.Code)
			require.Equal(t, tt.wantStatus == 204, reached)
			if tt.wantChall != "" {
				require.Equal(t, tt.wantChall, rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

func TestRequireScopesAndStepUp(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, logs := newTestVerifier(t, clk, func(c *Config) { c.Realm = "api" }, es)
	weak := es.token(t, map[string]any{"acr": "urn:acr:pwd", "auth_time": t0.Add(-2 * time.Hour).Unix()})
	strong := es.token(t, map[string]any{"acr": "urn:acr:mfa", "auth_time": t0.Add(-time.Minute).Unix(), "jti": "t2"})
	tests := []struct {
		name       string
		mw         func(http.Handler) http.Handler
		token      string
		wantStatus int
		wantChall  string
	}{
		{name: "scope_granted", mw: v.Require("orders:read"), token: weak, wantStatus: 204},
		{name: "insufficient_scope", mw: v.Require("orders:write", "orders:read"), token: weak, wantStatus: 403,
			wantChall: `Bearer realm="api", error="insufficient_scope", scope="orders:write orders:read"`},
		{name: "step_up_acr", mw: v.RequireWith(Requirement{ACRValues: []string{"urn:acr:mfa"}}), token: weak, wantStatus: 401,
			wantChall: `Bearer realm="api", error="insufficient_user_authentication", acr_values="urn:acr:mfa"`},
		{name: "step_up_max_age", mw: v.RequireWith(Requirement{MaxAge: 5 * time.Minute}), token: weak, wantStatus: 401,
			wantChall: `Bearer realm="api", error="insufficient_user_authentication", max_age="300"`},
		{name: "step_up_satisfied", mw: v.RequireWith(Requirement{ACRValues: []string{"urn:acr:mfa"}, MaxAge: 5 * time.Minute, Scopes: []string{"profile"}}), token: strong, wantStatus: 204},
		{name: "step_up_no_auth_time", mw: v.RequireWith(Requirement{MaxAge: time.Hour}), token: es.token(t, map[string]any{"jti": "t3"}), wantStatus: 401,
			wantChall: `Bearer realm="api", error="insufficient_user_authentication", max_age="3600"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, reached, _ := call(tt.mw, bearer(tt.token))
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			require.Equal(t, tt.wantStatus == 204, reached)
			require.Equal(t, tt.wantChall, rec.Header().Get("WWW-Authenticate"))
		})
	}
	require.Contains(t, logs.String(), `"reason":"insufficient_scope"`)
	require.Contains(t, logs.String(), `"reason":"step_up"`)
}

func TestRequireReusesHandlerResult(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.TokenCacheSize = -1 }, es)
	tok := es.token(t, nil)
	calls := 0
	inner := v.Require("profile")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls++ }))
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Expire the token between the two middleware: the inner one must
		// use the outer one's verdict rather than verify again.
		clk.Advance(time.Hour)
		inner.ServeHTTP(w, r)
	}))
	h.ServeHTTP(httptest.NewRecorder(), bearer(tok))
	require.Equal(t, 1, calls)
}

func TestTokenCache(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, _ := newTestVerifier(t, clk, nil, es)
	tok := es.token(t, nil)
	c1, err := v.VerifyToken(t.Context(), tok)
	require.NoError(t, err)
	c2, err := v.VerifyToken(t.Context(), tok)
	require.NoError(t, err)
	require.Same(t, c1, c2, "second verification is a cache hit")
	require.Equal(t, 1, v.cache.Len())

	clk.Advance(11 * time.Minute) // past exp + skew
	_, err = v.VerifyToken(t.Context(), tok)
	require.ErrorIs(t, err, ErrExpired, "exp re-checked on every hit with the clock")
	require.Equal(t, 0, v.cache.Len(), "expired entry dropped")
}

func TestCacheBounded(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.TokenCacheSize = 10 }, es)
	for i := range 50 {
		_, err := v.VerifyToken(t.Context(), es.token(t, map[string]any{"jti": fmt.Sprint(i)}))
		require.NoError(t, err)
	}
	require.Equal(t, 10, v.cache.Len())
}

func TestNewRejectsBadConfig(t *testing.T) {
	es := newSigner(t, jwa.ES256, "es-1")
	set := jwkSet(t, es)
	ok := Issuer{Issuer: testIssuer, Audience: []string{testAudience}, Keys: set}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no_issuers", cfg: Config{}, want: "Config.Issuers is required"},
		{name: "no_audience", cfg: Config{Issuers: []Issuer{{Issuer: testIssuer, Keys: set}}}, want: "Audience is required"},
		{name: "no_keys_issuer_not_discoverable", cfg: Config{Issuers: []Issuer{{Issuer: "issuer-1", Audience: []string{"a"}}}}, want: "must be an https URL (http only on loopback) without query or fragment to discover its jwks_uri"},
		{name: "both_keys", cfg: Config{Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{"a"}, Keys: set, JWKSURL: "https://x/jwks"}}}, want: "has both JWKSURL and Keys"},
		{name: "http_jwks", cfg: Config{Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{"a"}, JWKSURL: "http://idp.example.com/jwks"}}}, want: "https URL"},
		{name: "hs256_allowed", cfg: Config{Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{"a"}, Keys: set, Algorithms: []jwa.SignatureAlgorithm{jwa.HS256}}}}, want: "never none or HMAC"},
		{name: "none_allowed", cfg: Config{Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{"a"}, Keys: set, Algorithms: []jwa.SignatureAlgorithm{jwa.NoSignature}}}}, want: "never none or HMAC"},
		{name: "duplicate_issuer", cfg: Config{Issuers: []Issuer{ok, ok}}, want: "configured twice"},
		{name: "dpop_without_url", cfg: Config{Issuers: []Issuer{ok}, DPoP: DPoPAllowed}, want: "DPoPURL is required"},
		{name: "dpop_url_with_query", cfg: Config{Issuers: []Issuer{ok}, DPoP: DPoPAllowed, DPoPURL: "https://a/?q"}, want: "without query"},
		{name: "short_nonce_key", cfg: Config{Issuers: []Issuer{ok}, DPoP: DPoPAllowed, DPoPURL: "https://a", DPoPNonceKey: []byte("short")}, want: "at least 32 bytes"},
		{name: "negative_skew", cfg: Config{Issuers: []Issuer{ok}, ClockSkew: -1}, want: "auth: Config.ClockSkew must not be negative"},
		{name: "negative_dpop_future_skew", cfg: Config{Issuers: []Issuer{ok}, DPoPFutureSkew: -1}, want: "auth: Config.DPoPFutureSkew must not be negative"},
		{name: "negative_token_lifetime", cfg: Config{Issuers: []Issuer{ok}, MaxTokenLifetime: -1}, want: "auth: Config.MaxTokenLifetime must not be negative"},
		{name: "negative_token_size", cfg: Config{Issuers: []Issuer{ok}, MaxTokenSize: -1}, want: "auth: Config.MaxTokenSize must not be negative"},
		{name: "negative_fetch_timeout", cfg: Config{Issuers: []Issuer{ok}, FetchTimeout: -1}, want: "auth: Config.FetchTimeout must not be negative"},
		{name: "negative_jwks_size", cfg: Config{Issuers: []Issuer{ok}, MaxJWKSSize: -1}, want: "auth: Config.MaxJWKSSize must not be negative"},
		{name: "negative_min_key_refresh", cfg: Config{Issuers: []Issuer{ok}, MinKeyRefresh: -1}, want: "auth: Config.MinKeyRefresh must not be negative"},
		{name: "negative_max_key_refresh", cfg: Config{Issuers: []Issuer{ok}, MaxKeyRefresh: -1}, want: "auth: Config.MaxKeyRefresh must not be negative"},
		{name: "negative_key_staleness", cfg: Config{Issuers: []Issuer{ok}, MaxKeyStaleness: -1}, want: "auth: Config.MaxKeyStaleness must not be negative"},
		{name: "negative_proof_window", cfg: Config{Issuers: []Issuer{ok}, DPoPProofWindow: -1}, want: "auth: Config.DPoPProofWindow must not be negative"},
		{name: "negative_nonce_lifetime", cfg: Config{Issuers: []Issuer{ok}, DPoPNonceLifetime: -1}, want: "auth: Config.DPoPNonceLifetime must not be negative"},
		{name: "negative_replay_cache", cfg: Config{Issuers: []Issuer{ok}, ReplayCacheSize: -1}, want: "auth: Config.ReplayCacheSize must not be negative"},
		{name: "keys_stale_before_refresh", cfg: Config{Issuers: []Issuer{ok}, MaxKeyStaleness: 30 * time.Second}, want: "MaxKeyStaleness is below Config.MinKeyRefresh"},
		{name: "static_set_unusable", cfg: Config{Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{"a"}, Keys: jwkSet(t, newSigner(t, jwa.ES256, "x")), Algorithms: []jwa.SignatureAlgorithm{jwa.RS256}}}}, want: "no usable key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestHandlerPanicsOnNil(t *testing.T) {
	clk := testkit.NewClock(t0)
	v, _ := newTestVerifier(t, clk, nil, newSigner(t, jwa.ES256, "k"))
	require.PanicsWithValue(t, "auth: nil handler", func() { v.Handler(nil) })
}

func TestCustomErrorHandler(t *testing.T) {
	clk := testkit.NewClock(t0)
	var got error
	v, _ := newTestVerifier(t, clk, func(c *Config) {
		c.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			got = err
			w.WriteHeader(http.StatusTeapot)
		}
	}, newSigner(t, jwa.ES256, "k"))
	rec, reached, _ := call(v.Handler, bearer("a.b.c"))
	require.False(t, reached)
	require.Equal(t, http.StatusTeapot, rec.Code)
	require.ErrorIs(t, got, ErrMalformedToken)
}

func TestConcurrentVerify(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.TokenCacheSize = 8 }, es)
	toks := make([]string, 16)
	for i := range toks {
		toks[i] = es.token(t, map[string]any{"jti": fmt.Sprint(i)})
	}
	errs := make(chan error, 64)
	for g := range 8 {
		go func() {
			for i := range 40 {
				_, err := v.VerifyToken(t.Context(), toks[(g+i)%len(toks)])
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		require.NoError(t, <-errs)
	}
}

var _ = json.Marshal
