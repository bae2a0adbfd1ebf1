package grpcguard_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/grpc/grpcguard"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stack is one transport's set of apiguard instances, configured alike
// for both: telemetry, a limiter by address, auth (Admin needs the admin
// scope), a limiter by device of burst 1.
type stack struct {
	obs      *telemetry.Observer
	byIP     *ratelimit.Limiter
	verifier *auth.Verifier
	byDevice *ratelimit.Limiter
}

func newStack(t *testing.T, issuer *key) stack {
	t.Helper()
	obs, err := telemetry.New(telemetry.Config{Logger: quiet})
	require.NoError(t, err)
	byDevice, err := ratelimit.New(ratelimit.Config{Name: "device", Limit: ratelimit.Limit{Requests: 1, Per: time.Hour},
		Key: ratelimit.KeyByHeader("X-Device-ID"), InsecureAllowNoKey: true, Logger: quiet})
	require.NoError(t, err)
	return stack{obs: obs, byIP: newLimiter(t, "ip", 1000, ratelimit.KeyByIP()), verifier: newVerifier(t, issuer, nil), byDevice: byDevice}
}

// httpStatusCode is the gRPC code the package documents for an HTTP
// rejection status.
var httpStatusCode = map[int]codes.Code{
	http.StatusOK: codes.OK, http.StatusBadRequest: codes.InvalidArgument, http.StatusUnauthorized: codes.Unauthenticated,
	http.StatusForbidden: codes.PermissionDenied, http.StatusTooManyRequests: codes.ResourceExhausted,
	http.StatusServiceUnavailable: codes.Unavailable,
}

func TestSameDecisionOverHTTPAndGRPC(t *testing.T) {
	issuer, device, forger := newKey(t, "k1"), newKey(t, ""), newKey(t, "k1")
	valid := issuer.token(t, map[string]any{"scope": "orders:read"})
	admin := issuer.token(t, map[string]any{"scope": "admin"})
	bound := issuer.token(t, map[string]any{"cnf": map[string]any{"jkt": device.thumbprint(t)}})
	none := func() string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + enc([]byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"x","iat":1,"exp":9999999999}`)) + "."
	}()

	tests := []struct {
		name   string
		method string
		calls  int // the last call's answer is compared
		give   func(htu string) []string
		want   int
	}{
		{"bearer_valid", methodUnary, 1, func(string) []string { return []string{"authorization", "Bearer " + valid} }, 200},
		{"dpop_valid", methodUnary, 1, func(htu string) []string {
			return []string{"authorization", "DPoP " + bound, "dpop", device.proof(t, htu, bound)}
		}, 200},
		{"scope_granted", methodAdmin, 1, func(string) []string { return []string{"authorization", "Bearer " + admin} }, 200},
		{"missing_token", methodUnary, 1, func(string) []string { return nil }, 401},
		{"basic_scheme", methodUnary, 1, func(string) []string { return []string{"authorization", "Basic dXNlcjpwYXNz"} }, 401},
		{"malformed_token", methodUnary, 1, func(string) []string { return []string{"authorization", "Bearer abc"} }, 401},
		{"alg_none", methodUnary, 1, func(string) []string { return []string{"authorization", "Bearer " + none} }, 401},
		{"bad_signature", methodUnary, 1, func(string) []string { return []string{"authorization", "Bearer " + forger.token(t, nil)} }, 401},
		{"expired", methodUnary, 1, func(string) []string {
			return []string{"authorization", "Bearer " + issuer.token(t, map[string]any{"iat": t0.Add(-time.Hour).Unix(), "exp": t0.Add(-time.Minute).Unix()})}
		}, 401},
		{"wrong_audience", methodUnary, 1, func(string) []string {
			return []string{"authorization", "Bearer " + issuer.token(t, map[string]any{"aud": "https://other.example.com"})}
		}, 401},
		{"authorization_repeated", methodUnary, 1, func(string) []string {
			return []string{"authorization", "Bearer " + valid, "authorization", "Bearer " + valid}
		}, 400},
		{"dpop_bound_token_as_bearer", methodUnary, 1, func(string) []string { return []string{"authorization", "Bearer " + bound} }, 401},
		{"dpop_proof_for_another_method", methodUnary, 1, func(string) []string {
			return []string{"authorization", "DPoP " + bound, "dpop", device.proof(t, apiBase+methodAdmin, bound)}
		}, 401},
		{"dpop_proof_with_htm_get", methodUnary, 1, func(htu string) []string {
			p := device.sign(t, map[string]any{"typ": "dpop+jwt", "jwk": device.pub}, map[string]any{
				"jti": "get-" + htu, "htm": "GET", "htu": htu, "iat": t0.Unix(), "ath": auth.AccessTokenHash(bound)})
			return []string{"authorization", "DPoP " + bound, "dpop", p}
		}, 401},
		{"dpop_proof_missing", methodUnary, 1, func(string) []string { return []string{"authorization", "DPoP " + bound} }, 401},
		{"insufficient_scope", methodAdmin, 1, func(string) []string { return []string{"authorization", "Bearer " + valid} }, 403},
		{"device_flood", methodUnary, 2, func(string) []string {
			return []string{"authorization", "Bearer " + valid, "x-device-id", "dev-flood"}
		}, 429},
	}

	// HTTP: the middleware chain in front of a mux with the same routes.
	hs := newStack(t, issuer)
	app := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux := http.NewServeMux()
	mux.Handle("POST "+methodUnary, hs.verifier.Handler(hs.byDevice.Handler(app)))
	mux.Handle("POST "+methodAdmin, hs.verifier.Require("admin")(hs.byDevice.Handler(app)))
	httpChain := hs.obs.Handler(hs.byIP.Handler(mux))

	// gRPC: the interceptors in the same order.
	gs := newStack(t, issuer)
	a, err := grpcguard.NewAuth(gs.verifier, grpcguard.AuthConfig{Methods: map[string]auth.Requirement{methodAdmin: {Scopes: []string{"admin"}}}})
	require.NoError(t, err)
	conn := serve(t, grpcguard.Telemetry(gs.obs), grpcguard.RateLimit(gs.byIP), a, grpcguard.RateLimit(gs.byDevice))

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			htu := apiBase + tt.method
			var rec *httptest.ResponseRecorder
			var res result
			for range tt.calls {
				r := httptest.NewRequest(http.MethodPost, htu, nil)
				pairs := tt.give(htu)
				for i := 0; i+1 < len(pairs); i += 2 {
					r.Header.Add(pairs[i], pairs[i+1])
				}
				rec = httptest.NewRecorder()
				httpChain.ServeHTTP(rec, r)
				res = callUnary(conn, tt.method, tt.give(htu)...)
			}
			require.Equal(t, tt.want, rec.Code, "HTTP")
			require.Equal(t, httpStatusCode[tt.want], status.Code(res.err), "gRPC")
			if tt.want != http.StatusOK {
				require.Equal(t, rec.Header().Values("WWW-Authenticate"), res.trailer.Get("www-authenticate"), "same challenge")
				require.Equal(t, rec.Header().Values("Retry-After"), res.trailer.Get("retry-after"), "same Retry-After")
				require.Empty(t, res.reply, "the handler must not run")
			} else {
				require.True(t, strings.HasPrefix(res.reply, "sub="), "the handler ran with claims")
			}
		})
	}
}
