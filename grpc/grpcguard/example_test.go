package grpcguard_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/grpc/grpcguard"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// orders is the application's service; its handler reads what the
// interceptors put in the context.
type orders struct {
	healthpb.UnimplementedHealthServer
}

func (orders) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	claims, _ := auth.ClaimsFrom(ctx)
	id, _ := telemetry.IDFrom(ctx)
	fmt.Printf("handler: sub=%s scopes=%v correlation=%s\n", claims.Subject, claims.Scopes, id)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// A gRPC server behind telemetry, auth and a per-user rate limit; an
// anonymous call, an accepted one and a flood.
func Example() {
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	signingKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := jwk.FromRaw(&signingKey.PublicKey)
	_ = pub.Set(jwk.KeyIDKey, "k1")
	keys := jwk.NewSet()
	_ = keys.AddKey(pub)

	obs, _ := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler)})
	verifier, _ := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: "https://login.example.com/", Audience: []string{"https://api.example.com"}, Keys: keys}},
		Now:     now,
		Logger:  obs.Logger(),
	})
	defer verifier.Close()
	perUser, _ := ratelimit.New(ratelimit.Config{
		Name:  "user",
		Limit: ratelimit.Limit{Requests: 1, Per: time.Minute},
		Key: func(r *http.Request) (string, error) {
			if c, ok := auth.ClaimsFrom(r.Context()); ok {
				return "sub:" + c.Subject, nil
			}
			return "", ratelimit.ErrNoKey
		},
		Now:    now,
		Logger: obs.Logger(),
	})

	tel := grpcguard.Telemetry(obs)
	authn, _ := grpcguard.NewAuth(verifier, grpcguard.AuthConfig{
		Methods: map[string]auth.Requirement{"/grpc.health.v1.Health/Check": {Scopes: []string{"orders:read"}}},
	})
	limit := grpcguard.RateLimit(perUser)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(tel.Unary, authn.Unary, limit.Unary),
		grpc.ChainStreamInterceptor(tel.Stream, authn.Stream, limit.Stream))
	healthpb.RegisterHealthServer(srv, orders{})

	lis := bufconn.Listen(1 << 20) // in memory, for the example; a server listens on TCP
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, _ := grpc.NewClient("passthrough:///api", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)

	payload, _ := json.Marshal(map[string]any{
		"iss": "https://login.example.com/", "aud": "https://api.example.com", "sub": "user-1",
		"scope": "orders:read", "iat": now().Unix(), "exp": now().Add(5 * time.Minute).Unix(),
	})
	hdr := jws.NewHeaders()
	_ = hdr.Set("typ", "at+jwt")
	_ = hdr.Set("kid", "k1")
	token, _ := jws.Sign(payload, jws.WithKey(jwa.ES256, signingKey, jws.WithProtectedHeaders(hdr)))

	call := func(md ...string) {
		var trailer metadata.MD
		ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs(md...))
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
		if err != nil {
			st := status.Convert(err)
			fmt.Printf("refused: %s %q %v", st.Code(), st.Message(), trailer.Get("www-authenticate"))
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.RetryInfo); ok {
					fmt.Printf(" retry in %s", info.GetRetryDelay().AsDuration())
				}
			}
			fmt.Println()
			return
		}
		fmt.Println("answer:", resp.GetStatus())
	}
	call()
	call("authorization", "Bearer "+string(token), "x-request-id", "req-1")
	call("authorization", "Bearer "+string(token), "x-request-id", "req-2")
	// Output:
	// refused: Unauthenticated "apiguard: unauthenticated" [Bearer]
	// handler: sub=user-1 scopes=[orders:read] correlation=req-1
	// answer: SERVING
	// refused: ResourceExhausted "apiguard: rate limit exceeded" [] retry in 1m0s
}
