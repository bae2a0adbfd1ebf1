package grpcguard_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/grpc/grpcguard"
	"github.com/apiguard/apiguard/ratelimit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// The cost of a decision through the interceptor next to the same
// decision through the HTTP middleware, with no network on either side.

func benchLimiter(b *testing.B) *ratelimit.Limiter {
	l, err := ratelimit.New(ratelimit.Config{Limit: ratelimit.Limit{Requests: 1 << 30, Per: time.Second}, Key: ratelimit.KeyByIP(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func BenchmarkRateLimit_GRPCUnary(b *testing.B) {
	i := grpcguard.RateLimit(benchLimiter(b))
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer x", "x-request-id", "r1"))
	ctx = grpc.NewContextWithServerTransportStream(ctx, transportStream{})
	info := &grpc.UnaryServerInfo{FullMethod: methodUnary}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := i.Unary(ctx, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRateLimit_HTTP(b *testing.B) {
	h := benchLimiter(b).Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodPost, methodUnary, nil)
	r.Header.Set("Authorization", "Bearer x")
	r.Header.Set("X-Request-Id", "r1")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// transportStream stands for the server's stream, which takes header and
// trailer metadata.
type transportStream struct{}

func (transportStream) Method() string               { return methodUnary }
func (transportStream) SetHeader(metadata.MD) error  { return nil }
func (transportStream) SendHeader(metadata.MD) error { return nil }
func (transportStream) SetTrailer(metadata.MD) error { return nil }
