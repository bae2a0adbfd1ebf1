package grpcguard_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/grpc/grpcguard"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// authServer serves the echo service behind NewAuth, Admin requiring the
// admin scope.
func authServer(t *testing.T, v *auth.Verifier) *grpc.ClientConn {
	t.Helper()
	a, err := grpcguard.NewAuth(v, grpcguard.AuthConfig{
		Methods: map[string]auth.Requirement{methodAdmin: {Scopes: []string{"admin"}}},
	})
	require.NoError(t, err)
	return serve(t, a)
}

// callBoth makes the call unary (of method) and as a stream, with the
// metadata each of mk makes: a DPoP proof is single use, so each call
// gets its own.
func callBoth(conn *grpc.ClientConn, method string, mk func(htu string) []string) map[string]result {
	return map[string]result{
		"unary":  callUnary(conn, method, mk(apiBase+method)...),
		"stream": callStream(conn, mk(apiBase+methodStream)...),
	}
}

func TestAuth_ValidTokenReachesHandlerWithClaims(t *testing.T) {
	issuer, device := newKey(t, "k1"), newKey(t, "")
	conn := authServer(t, newVerifier(t, issuer, nil))
	bearer := issuer.token(t, nil)
	bound := issuer.token(t, map[string]any{"sub": "user-2", "cnf": map[string]any{"jkt": device.thumbprint(t)}})

	for transport, res := range callBoth(conn, methodUnary, func(string) []string { return []string{"authorization", "Bearer " + bearer} }) {
		require.NoError(t, res.err, transport)
		require.Contains(t, res.reply, "sub=user-1", transport)
	}
	for transport, res := range callBoth(conn, methodUnary, func(htu string) []string {
		return []string{"authorization", "DPoP " + bound, "dpop", device.proof(t, htu, bound)}
	}) {
		require.NoError(t, res.err, transport)
		require.Contains(t, res.reply, "sub=user-2", transport)
	}
	res := callStream(conn, "authorization", "Bearer "+bearer)
	require.Equal(t, "sub=user-1,sub=user-1", res.reply, "every message of the stream sees the claims")
}

func TestAuth_AttacksRefused(t *testing.T) {
	issuer, device, forger := newKey(t, "k1"), newKey(t, ""), newKey(t, "k1")
	conn := authServer(t, newVerifier(t, issuer, nil))
	valid := issuer.token(t, nil)
	bound := issuer.token(t, map[string]any{"cnf": map[string]any{"jkt": device.thumbprint(t)}})

	tests := []struct {
		name       string
		method     string
		give       func(htu string) []string
		wantCode   codes.Code
		wantMsg    string
		wantHeader string // in the www-authenticate trailer
	}{
		{"missing_token", methodUnary, func(string) []string { return nil },
			codes.Unauthenticated, "apiguard: unauthenticated", `Bearer`},
		{"bad_signature", methodUnary, func(string) []string { return []string{"authorization", "Bearer " + forger.token(t, nil)} },
			codes.Unauthenticated, "apiguard: unauthenticated", `error="invalid_token"`},
		{"expired", methodUnary, func(string) []string {
			return []string{"authorization", "Bearer " + issuer.token(t, map[string]any{"iat": t0.Add(-time.Hour).Unix(), "exp": t0.Add(-time.Minute).Unix()})}
		}, codes.Unauthenticated, "apiguard: unauthenticated", `error="invalid_token"`},
		{"wrong_audience", methodUnary, func(string) []string {
			return []string{"authorization", "Bearer " + issuer.token(t, map[string]any{"aud": "https://other.example.com"})}
		}, codes.Unauthenticated, "apiguard: unauthenticated", `error="invalid_token"`},
		{"dpop_proof_for_another_method", methodUnary, func(string) []string {
			return []string{"authorization", "DPoP " + bound, "dpop", device.proof(t, apiBase+methodAdmin, bound)}
		}, codes.Unauthenticated, "apiguard: unauthenticated", `DPoP error="invalid_dpop_proof"`},
		{"dpop_proof_for_another_host", methodUnary, func(htu string) []string {
			return []string{"authorization", "DPoP " + bound, "dpop", device.proof(t, strings.Replace(htu, "api.", "evil.", 1), bound)}
		}, codes.Unauthenticated, "apiguard: unauthenticated", `DPoP error="invalid_dpop_proof"`},
		{"dpop_bound_token_as_bearer", methodUnary, func(string) []string { return []string{"authorization", "Bearer " + bound} },
			codes.Unauthenticated, "apiguard: unauthenticated", `error="invalid_token"`},
		{"dpop_proof_of_another_key", methodUnary, func(htu string) []string {
			return []string{"authorization", "DPoP " + bound, "dpop", forger.proof(t, htu, bound)}
		}, codes.Unauthenticated, "apiguard: unauthenticated", `error="invalid_token"`},
		{"authorization_repeated", methodUnary, func(string) []string {
			return []string{"authorization", "Bearer " + valid, "authorization", "Bearer " + valid}
		}, codes.InvalidArgument, "apiguard: malformed request", `error="invalid_request"`},
		{"insufficient_scope", methodAdmin, func(string) []string { return []string{"authorization", "Bearer " + valid} },
			codes.PermissionDenied, "apiguard: permission denied", `error="insufficient_scope", scope="admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := callBoth(conn, tt.method, tt.give)
			if tt.method == methodAdmin {
				delete(results, "stream") // the stream method has no scope requirement
			}
			for transport, res := range results {
				st, ok := status.FromError(res.err)
				require.True(t, ok, transport)
				require.Equal(t, tt.wantCode, st.Code(), transport)
				require.Equal(t, tt.wantMsg, st.Message(), transport)
				require.Empty(t, res.reply, "the handler must not run: "+transport)
				require.Contains(t, strings.Join(res.trailer.Get("www-authenticate"), "\n"), tt.wantHeader, transport)
				for _, v := range append(res.trailer.Get("www-authenticate"), st.Message()) {
					require.NotContains(t, v, valid[:20], "never the token")
				}
			}
		})
	}
}

func TestAuth_ReplayedDPoPProofRefused(t *testing.T) {
	issuer, device := newKey(t, "k1"), newKey(t, "")
	conn := authServer(t, newVerifier(t, issuer, nil))
	bound := issuer.token(t, map[string]any{"cnf": map[string]any{"jkt": device.thumbprint(t)}})
	for _, tc := range []struct {
		transport string
		call      func(pairs ...string) result
		htu       string
	}{
		{"unary", func(p ...string) result { return callUnary(conn, methodUnary, p...) }, apiBase + methodUnary},
		{"stream", func(p ...string) result { return callStream(conn, p...) }, apiBase + methodStream},
	} {
		p := device.proof(t, tc.htu, bound)
		first := tc.call("authorization", "DPoP "+bound, "dpop", p)
		require.NoError(t, first.err, tc.transport)
		replay := tc.call("authorization", "DPoP "+bound, "dpop", p)
		require.Equal(t, codes.Unauthenticated, status.Code(replay.err), tc.transport)
		require.Empty(t, replay.reply, tc.transport)
		require.Contains(t, strings.Join(replay.trailer.Get("www-authenticate"), "\n"), `DPoP error="invalid_dpop_proof"`)
	}
}

func TestAuth_JWKSDownIsUnavailable(t *testing.T) {
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(jwks.Close)
	issuer := newKey(t, "k1")
	v := newVerifier(t, issuer, func(c *auth.Config) {
		c.Issuers = []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: jwks.URL}}
		c.MaxKeyWait = -1
	})
	conn := authServer(t, v)
	token := issuer.token(t, nil)
	for transport, res := range callBoth(conn, methodUnary, func(string) []string { return []string{"authorization", "Bearer " + token} }) {
		st, _ := status.FromError(res.err)
		require.Equal(t, codes.Unavailable, st.Code(), transport)
		require.Equal(t, "apiguard: service unavailable, retry later", st.Message(), transport)
		require.Len(t, st.Details(), 1, transport)
		info, ok := st.Details()[0].(*errdetails.RetryInfo)
		require.True(t, ok, transport)
		require.Positive(t, info.GetRetryDelay().AsDuration(), transport)
		require.NotEmpty(t, res.trailer.Get("retry-after"), transport)
	}
}

func TestAuth_PublicMethodNeedsNoToken(t *testing.T) {
	a, err := grpcguard.NewAuth(newVerifier(t, newKey(t, "k1"), nil), grpcguard.AuthConfig{Public: []string{methodAdmin}})
	require.NoError(t, err)
	conn := serve(t, a)
	res := callUnary(conn, methodAdmin)
	require.NoError(t, res.err)
	require.Equal(t, "anonymous", res.reply)
	require.Equal(t, codes.Unauthenticated, status.Code(callUnary(conn, methodUnary).err), "other methods still need a token")
}

func TestNewAuth_RefusesInvalidConfig(t *testing.T) {
	v := newVerifier(t, newKey(t, "k1"), nil)
	tests := []struct {
		name string
		give grpcguard.AuthConfig
	}{
		{"method_without_slash", grpcguard.AuthConfig{Methods: map[string]auth.Requirement{"pkg.Svc/M": {}}}},
		{"method_without_service", grpcguard.AuthConfig{Methods: map[string]auth.Requirement{"/M": {}}}},
		{"public_with_extra_segment", grpcguard.AuthConfig{Public: []string{"/pkg.Svc/M/x"}}},
		{"public_and_required", grpcguard.AuthConfig{Public: []string{methodAdmin}, Methods: map[string]auth.Requirement{methodAdmin: {}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := grpcguard.NewAuth(v, tt.give)
			require.Error(t, err)
		})
	}
	_, err := grpcguard.NewAuth(nil, grpcguard.AuthConfig{})
	require.Error(t, err)
}

func TestAuth_DPoPNonceRoundTrip(t *testing.T) {
	issuer, device := newKey(t, "k1"), newKey(t, "")
	v := newVerifier(t, issuer, func(c *auth.Config) { c.DPoPNonceKey = []byte("0123456789abcdef0123456789abcdef") }) // gitleaks:allow -- test nonce key
	conn := authServer(t, v)
	bound := issuer.token(t, map[string]any{"cnf": map[string]any{"jkt": device.thumbprint(t)}})
	htu := apiBase + methodUnary

	first := callUnary(conn, methodUnary, "authorization", "DPoP "+bound, "dpop", device.proof(t, htu, bound))
	require.Equal(t, codes.Unauthenticated, status.Code(first.err), "a proof without the server's nonce")
	require.Contains(t, strings.Join(first.trailer.Get("www-authenticate"), "\n"), `error="use_dpop_nonce"`)
	require.Len(t, first.trailer.Get("dpop-nonce"), 1, "the nonce to retry with is in the trailer")

	withNonce := device.sign(t, map[string]any{"typ": "dpop+jwt", "jwk": device.pub}, map[string]any{
		"jti": "nonce-1", "htm": "POST", "htu": htu, "iat": t0.Unix(), "ath": auth.AccessTokenHash(bound),
		"nonce": first.trailer.Get("dpop-nonce")[0]})
	retry := callUnary(conn, methodUnary, "authorization", "DPoP "+bound, "dpop", withNonce)
	require.NoError(t, retry.err)
	require.Equal(t, "sub=user-1", retry.reply)
}

func TestAuth_StepUpChallenge(t *testing.T) {
	issuer := newKey(t, "k1")
	a, err := grpcguard.NewAuth(newVerifier(t, issuer, nil), grpcguard.AuthConfig{
		Methods: map[string]auth.Requirement{methodAdmin: {ACRValues: []string{"urn:example:mfa"}}},
	})
	require.NoError(t, err)
	conn := serve(t, a)
	res := callUnary(conn, methodAdmin, "authorization", "Bearer "+issuer.token(t, map[string]any{"acr": "urn:example:pwd"}))
	require.Equal(t, codes.Unauthenticated, status.Code(res.err))
	require.Contains(t, strings.Join(res.trailer.Get("www-authenticate"), "\n"),
		`error="insufficient_user_authentication", acr_values="urn:example:mfa"`)
	ok := callUnary(conn, methodAdmin, "authorization", "Bearer "+issuer.token(t, map[string]any{"acr": "urn:example:mfa"}))
	require.NoError(t, ok.err)
}

func TestAuth_DPoPURLWithPathPrefix(t *testing.T) {
	issuer, device := newKey(t, "k1"), newKey(t, "")
	conn := authServer(t, newVerifier(t, issuer, func(c *auth.Config) { c.DPoPURL = apiBase + "/grpc" }))
	bound := issuer.token(t, map[string]any{"cnf": map[string]any{"jkt": device.thumbprint(t)}})
	res := callUnary(conn, methodUnary, "authorization", "DPoP "+bound, "dpop", device.proof(t, apiBase+"/grpc"+methodUnary, bound))
	require.NoError(t, res.err, "htu is DPoPURL joined with the full method name")
	res = callUnary(conn, methodUnary, "authorization", "DPoP "+bound, "dpop", device.proof(t, apiBase+methodUnary, bound))
	require.Equal(t, codes.Unauthenticated, status.Code(res.err), "a proof for the URL without the prefix")
}

// downReplayStore is a shared DPoP replay store that is down.
type downReplayStore struct{}

func (downReplayStore) Use(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("replay store down")
}

func TestAuth_ReplayStoreDownIsUnavailable(t *testing.T) {
	issuer, device := newKey(t, "k1"), newKey(t, "")
	conn := authServer(t, newVerifier(t, issuer, func(c *auth.Config) { c.ReplayStore = downReplayStore{} }))
	bound := issuer.token(t, map[string]any{"cnf": map[string]any{"jkt": device.thumbprint(t)}})
	for transport, res := range callBoth(conn, methodUnary, func(htu string) []string {
		return []string{"authorization", "DPoP " + bound, "dpop", device.proof(t, htu, bound)}
	}) {
		st, _ := status.FromError(res.err)
		require.Equal(t, codes.Unavailable, st.Code(), "fail closed, never accepted: "+transport)
		require.Equal(t, "apiguard: service unavailable, retry later", st.Message(), transport)
		require.Empty(t, res.reply, transport)
	}
}

// TestCheckMethods_MisspeltMethodFound: a Methods entry whose name the
// server does not serve (here "admin" for "Admin") would leave the real
// method with the default requirement; CheckMethods names it.
func TestCheckMethods_MisspeltMethodFound(t *testing.T) {
	v := newVerifier(t, newKey(t, "k1"), nil)
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, echo{})

	good, err := grpcguard.NewAuth(v, grpcguard.AuthConfig{
		Methods: map[string]auth.Requirement{methodAdmin: {Scopes: []string{"admin"}}},
		Public:  []string{methodUnary},
	})
	require.NoError(t, err)
	require.NoError(t, good.CheckMethods(srv))

	typo, err := grpcguard.NewAuth(v, grpcguard.AuthConfig{
		Methods: map[string]auth.Requirement{"/apiguard.test.Echo/admin": {Scopes: []string{"admin"}}},
		Public:  []string{"/apiguard.test.Ekho/Unary"},
	})
	require.NoError(t, err)
	err = typo.CheckMethods(srv)
	require.ErrorContains(t, err, "/apiguard.test.Echo/admin")
	require.ErrorContains(t, err, "/apiguard.test.Ekho/Unary")

}

// waitDesc is a stream that sends what its handler saw once, then stays
// open until its context ends.
var waitDesc = grpc.ServiceDesc{
	ServiceName: "apiguard.test.Wait",
	HandlerType: (*echoServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Wait",
		ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.SendMsg(wrapperspb.String(seen(ss.Context()))); err != nil {
				return err
			}
			<-ss.Context().Done()
			return ss.Context().Err()
		},
	}},
}

// revokerFunc is an auth.Config.Revocations answering f().
type revokerFunc func() bool

func (f revokerFunc) Revoked(_, _, _, _, _ string, _ time.Time) bool { return f() }

// TestAuth_OpenStreamEndsWhenItsTokenIsRevokedOrExpires: a stream admitted
// with a valid token does not outlive it: once the token is revoked, or
// expires, the next re-check ends the stream with Unauthenticated.
func TestAuth_OpenStreamEndsWhenItsTokenIsRevokedOrExpires(t *testing.T) {
	for _, tt := range []string{"revoked", "expired"} {
		t.Run(tt, func(t *testing.T) {
			issuer := newKey(t, "k1")
			clk := testkit.NewClock(t0)
			var revoked atomic.Bool
			v := newVerifier(t, issuer, func(c *auth.Config) {
				c.Now = clk.Now
				c.Revocations = revokerFunc(revoked.Load)
			})
			authn, err := grpcguard.NewAuth(v, grpcguard.AuthConfig{StreamRecheck: 5 * time.Millisecond})
			require.NoError(t, err)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			srv := grpc.NewServer(grpc.ChainStreamInterceptor(authn.Stream))
			srv.RegisterService(&waitDesc, echo{})
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })

			ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+issuer.token(t, nil))
			st, err := conn.NewStream(ctx, &waitDesc.Streams[0], "/apiguard.test.Wait/Wait")
			require.NoError(t, err)
			require.NoError(t, st.SendMsg(wrapperspb.String("open")))
			require.NoError(t, st.CloseSend())
			first := new(wrapperspb.StringValue)
			require.NoError(t, st.RecvMsg(first), "admitted")
			require.Equal(t, "sub=user-1", first.GetValue())

			if tt == "revoked" {
				revoked.Store(true)
			} else {
				clk.Advance(24 * time.Hour)
			}
			err = st.RecvMsg(new(wrapperspb.StringValue))
			require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
			require.Equal(t, "apiguard: unauthenticated", status.Convert(err).Message())
		})
	}
}
