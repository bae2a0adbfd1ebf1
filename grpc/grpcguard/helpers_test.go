package grpcguard_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	testIssuer   = "https://issuer.example.com/"
	testAudience = "https://api.example.com"
	apiBase      = "https://api.example.com"

	methodUnary  = "/apiguard.test.Echo/Unary"
	methodStream = "/apiguard.test.Echo/Stream"
	methodAdmin  = "/apiguard.test.Echo/Admin"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// key is a private ES256 key and its public JWK.
type key struct {
	priv *ecdsa.PrivateKey
	pub  jwk.Key
}

func newKey(t testing.TB, kid string) *key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub, err := jwk.FromRaw(&k.PublicKey)
	require.NoError(t, err)
	if kid != "" {
		require.NoError(t, pub.Set(jwk.KeyIDKey, kid))
	}
	return &key{priv: k, pub: pub}
}

func (k *key) sign(t testing.TB, hdr, claims map[string]any) string {
	t.Helper()
	h := jws.NewHeaders()
	for name, v := range hdr {
		require.NoError(t, h.Set(name, v))
	}
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, k.priv, jws.WithProtectedHeaders(h)))
	require.NoError(t, err)
	return string(out)
}

func (k *key) set(t testing.TB) jwk.Set {
	t.Helper()
	s := jwk.NewSet()
	require.NoError(t, s.AddKey(k.pub))
	return s
}

// token makes an access token of issuer key k: typ at+jwt, claims over the
// defaults (a nil value removes one).
func (k *key) token(t testing.TB, over map[string]any) string {
	t.Helper()
	claims := map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "user-1", "client_id": "mobile-app",
		"iat": t0.Unix(), "exp": t0.Add(10 * time.Minute).Unix(), "jti": "tok-1", "scope": "orders:read",
	}
	for name, v := range over {
		if v == nil {
			delete(claims, name)
		} else {
			claims[name] = v
		}
	}
	kid, _ := k.pub.Get(jwk.KeyIDKey)
	return k.sign(t, map[string]any{"typ": "at+jwt", "kid": kid}, claims)
}

var jtiSeq atomic.Int64

// proof makes a DPoP proof of device key k for a POST to htu.
func (k *key) proof(t testing.TB, htu, token string) string {
	t.Helper()
	return k.sign(t, map[string]any{"typ": "dpop+jwt", "jwk": k.pub}, map[string]any{
		"jti": fmt.Sprintf("p-%d", jtiSeq.Add(1)), "htm": "POST", "htu": htu, "iat": t0.Unix(),
		"ath": auth.AccessTokenHash(token),
	})
}

func (k *key) thumbprint(t testing.TB) string {
	t.Helper()
	tp, err := auth.Thumbprint(k.pub)
	require.NoError(t, err)
	return tp
}

// newVerifier returns a Verifier over issuer's static keys on the fixed
// clock, with DPoP allowed.
func newVerifier(t testing.TB, issuer *key, mod func(*auth.Config)) *auth.Verifier {
	t.Helper()
	cfg := auth.Config{
		Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: issuer.set(t)}},
		DPoP:    auth.DPoPAllowed,
		DPoPURL: apiBase,
		Now:     testkit.NewClock(t0).Now,
		Logger:  quiet,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := auth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// The test service: Unary answers with what the handler saw, Stream sends
// it twice; Admin is Unary under another name.
type echoServer interface{}

type echo struct{}

// seen is what the handler found in its context.
func seen(ctx context.Context) string {
	out := "anonymous"
	if c, ok := auth.ClaimsFrom(ctx); ok {
		out = "sub=" + c.Subject
	}
	if id, ok := telemetry.IDFrom(ctx); ok {
		out += " id=" + id
	}
	return out
}

func unaryHandler(name string) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) { return wrapperspb.String(seen(ctx)), nil }
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: name}, h)
	}
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "apiguard.test.Echo",
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Unary", Handler: unaryHandler(methodUnary)},
		{MethodName: "Admin", Handler: unaryHandler(methodAdmin)},
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			for range 2 {
				if err := ss.SendMsg(wrapperspb.String(seen(ss.Context()))); err != nil {
					return err
				}
			}
			return nil
		},
	}},
}

// serve starts a gRPC server on loopback TCP with the interceptors, in
// chain order, and returns a client connection to it.
func serve(t testing.TB, chain ...interface {
	Unary(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error)
	Stream(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error
}) *grpc.ClientConn {
	t.Helper()
	var unary []grpc.UnaryServerInterceptor
	var streams []grpc.StreamServerInterceptor
	for _, i := range chain {
		unary = append(unary, i.Unary)
		streams = append(streams, i.Stream)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(streams...))
	srv.RegisterService(&echoDesc, echo{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return conn
}

// result is what a client got from one call.
type result struct {
	reply   string
	err     error
	header  metadata.MD
	trailer metadata.MD
}

// callUnary makes a unary call of method with the metadata pairs.
func callUnary(conn *grpc.ClientConn, method string, pairs ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(pairs...))
	var res result
	out := new(wrapperspb.StringValue)
	res.err = conn.Invoke(ctx, method, wrapperspb.String("hi"), out, grpc.Header(&res.header), grpc.Trailer(&res.trailer))
	res.reply = out.GetValue()
	return res
}

// callStream opens the server stream with the metadata pairs and reads it
// to its end; reply holds the messages joined by ",".
func callStream(conn *grpc.ClientConn, pairs ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(pairs...))
	var res result
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, methodStream)
	if err != nil {
		res.err = err
		return res
	}
	if err := cs.SendMsg(wrapperspb.String("hi")); err != nil {
		res.err = err
		return res
	}
	_ = cs.CloseSend()
	for {
		out := new(wrapperspb.StringValue)
		if err := cs.RecvMsg(out); err != nil {
			if !errors.Is(err, io.EOF) {
				res.err = err
			}
			break
		}
		if res.reply != "" {
			res.reply += ","
		}
		res.reply += out.GetValue()
	}
	res.header, _ = cs.Header()
	res.trailer = cs.Trailer()
	return res
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
