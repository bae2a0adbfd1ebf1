package grpcguard_test

import (
	"context"
	"net"
	"testing"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/grpc/grpcguard"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// FuzzInterceptorsUntrustedMetadata sends arbitrary metadata, method names
// and peer addresses through the whole chain: no panic, and a refusal is
// one of the documented codes with its fixed message.
func FuzzInterceptorsUntrustedMetadata(f *testing.F) {
	issuer, device := newKey(f, "k1"), newKey(f, "")
	bound := issuer.token(f, map[string]any{"cnf": map[string]any{"jkt": device.thumbprint(f)}})
	f.Add(methodUnary, "Bearer "+issuer.token(f, nil), "", "203.0.113.1", "req-1", "192.0.2.1")
	f.Add(methodUnary, "DPoP "+bound, device.proof(f, apiBase+methodUnary, bound), "", "", "192.0.2.1")
	f.Add("/a/../apiguard.test.Echo/Unary", "DPoP "+bound, device.proof(f, apiBase+methodUnary, bound), "", "", "10.0.0.1")
	f.Add("/%2e%2e/x", "Bearer a.b.c", "x.y.z", "1.2.3.4, ::1", "bad id", "::1")
	f.Add("", "Basic \x00\xff", "", "unknown", "", "not-an-ip")

	obs, err := telemetry.New(telemetry.Config{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	v := newVerifier(f, issuer, nil)
	a, err := grpcguard.NewAuth(v, grpcguard.AuthConfig{Methods: map[string]auth.Requirement{methodAdmin: {Scopes: []string{"admin"}}}})
	if err != nil {
		f.Fatal(err)
	}
	lim, err := ratelimit.New(ratelimit.Config{Limit: ratelimit.Limit{Requests: 1 << 20, Per: 1e9}, Key: ratelimit.KeyByIP(mustPrefix("10.0.0.0/8")), Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	chain := []*grpcguard.Interceptor{grpcguard.Telemetry(obs), grpcguard.RateLimit(lim), a}
	messages := map[codes.Code]string{
		codes.InvalidArgument: "apiguard: malformed request", codes.Unauthenticated: "apiguard: unauthenticated",
		codes.PermissionDenied: "apiguard: permission denied", codes.ResourceExhausted: "apiguard: rate limit exceeded",
		codes.Unavailable: "apiguard: service unavailable, retry later",
	}

	f.Fuzz(func(t *testing.T, method, authz, dpop, xff, requestID, peerIP string) {
		md := metadata.MD{}
		for k, v := range map[string]string{"authorization": authz, "dpop": dpop, "x-forwarded-for": xff, "x-request-id": requestID} {
			if v != "" {
				md[k] = []string{v}
			}
		}
		ctx := metadata.NewIncomingContext(context.Background(), md)
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(peerIP), Port: 1}})
		ctx = grpc.NewContextWithServerTransportStream(ctx, transportStream{})
		info := &grpc.UnaryServerInfo{FullMethod: method}
		handler := grpc.UnaryHandler(func(ctx context.Context, _ any) (any, error) {
			if _, ok := auth.ClaimsFrom(ctx); !ok {
				t.Error("the handler ran without claims")
			}
			return "ok", nil
		})
		for i := len(chain) - 1; i >= 0; i-- {
			ic, next := chain[i], handler
			handler = func(ctx context.Context, req any) (any, error) {
				return ic.Unary(ctx, req, info, next)
			}
		}
		_, err := handler(ctx, nil)
		if err == nil {
			return
		}
		st, _ := status.FromError(err)
		if want, ok := messages[st.Code()]; !ok || st.Message() != want {
			t.Errorf("refusal %v %q is not a documented one", st.Code(), st.Message())
		}
	})
}
