package grpcguard_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/grpc/grpcguard"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

var quiet = slog.New(slog.DiscardHandler)

// newLimiter returns a Limiter of burst requests per hour on a fixed
// clock: nothing refills during a test.
func newLimiter(t testing.TB, name string, burst int, key ratelimit.KeyFunc) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(ratelimit.Config{
		Name:   name,
		Limit:  ratelimit.Limit{Requests: burst, Per: time.Hour, Burst: burst},
		Key:    key,
		Now:    testkit.NewClock(t0).Now,
		Logger: quiet,
	})
	require.NoError(t, err)
	return l
}

// requireLimited checks a rejection by a limiter of burst requests per hour.
func requireLimited(t *testing.T, res result, burst int, msg string) {
	t.Helper()
	st, _ := status.FromError(res.err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), msg)
	require.Equal(t, "apiguard: rate limit exceeded", st.Message(), msg)
	require.Empty(t, res.reply, "the handler must not run: "+msg)
	require.Len(t, st.Details(), 1, msg)
	info, ok := st.Details()[0].(*errdetails.RetryInfo)
	require.True(t, ok, msg)
	wait := time.Hour / time.Duration(burst)
	require.Equal(t, []string{strconv.Itoa(int(wait.Seconds()))}, res.trailer.Get("retry-after"), msg)
	require.Equal(t, wait, info.GetRetryDelay().AsDuration(), msg)
	require.NotEmpty(t, res.trailer.Get("ratelimit-policy"), msg)
}

func TestRateLimit_FloodLimitedWithRetryInfo(t *testing.T) {
	conn := serve(t, grpcguard.RateLimit(newLimiter(t, "ip", 2, ratelimit.KeyByIP())))
	first := callUnary(conn, methodUnary)
	require.NoError(t, first.err)
	require.Equal(t, "anonymous", first.reply)
	require.NotEmpty(t, first.header.Get("ratelimit"), "allowed calls carry the RateLimit fields")
	require.NoError(t, callStream(conn).err)
	requireLimited(t, callUnary(conn, methodUnary), 2, "unary")
	requireLimited(t, callStream(conn), 2, "stream")
}

func TestRateLimit_KeyByPeerThroughTrustedProxies(t *testing.T) {
	t.Run("xff_from_trusted_proxy", func(t *testing.T) {
		conn := serve(t, grpcguard.RateLimit(newLimiter(t, "ip", 1, ratelimit.KeyByIP(netip.MustParsePrefix("127.0.0.0/8")))))
		require.NoError(t, callUnary(conn, methodUnary, "x-forwarded-for", "203.0.113.7").err)
		require.NoError(t, callUnary(conn, methodUnary, "x-forwarded-for", "203.0.113.8").err, "another client behind the proxy")
		requireLimited(t, callUnary(conn, methodUnary, "x-forwarded-for", "198.51.100.1, 203.0.113.7"), 1, "the client is the rightmost untrusted address")
	})
	t.Run("xff_spoofed_by_untrusted_peer", func(t *testing.T) {
		conn := serve(t, grpcguard.RateLimit(newLimiter(t, "ip", 1, ratelimit.KeyByIP(netip.MustParsePrefix("10.0.0.0/8")))))
		require.NoError(t, callUnary(conn, methodUnary, "x-forwarded-for", "203.0.113.7").err)
		requireLimited(t, callUnary(conn, methodUnary, "x-forwarded-for", "203.0.113.8"), 1, "a peer that is no proxy cannot pick its key")
	})
}

func TestRateLimit_KeyByMetadata(t *testing.T) {
	conn := serve(t, grpcguard.RateLimit(newLimiter(t, "device", 1, ratelimit.KeyByHeader("X-Device-ID"))))
	require.NoError(t, callUnary(conn, methodUnary, "x-device-id", "dev-a").err)
	requireLimited(t, callUnary(conn, methodUnary, "x-device-id", "dev-a"), 1, "same device")
	require.NoError(t, callUnary(conn, methodUnary, "x-device-id", "dev-b").err)
	st, _ := status.FromError(callUnary(conn, methodUnary).err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "no key: fail closed, as HTTP's 400")
	require.Equal(t, "apiguard: malformed request", st.Message())
}

func TestRateLimit_KeyByVerifiedClaims(t *testing.T) {
	issuer := newKey(t, "k1")
	a, err := grpcguard.NewAuth(newVerifier(t, issuer, nil), grpcguard.AuthConfig{})
	require.NoError(t, err)
	bySubject := func(r *http.Request) (string, error) {
		if c, ok := auth.ClaimsFrom(r.Context()); ok {
			return "sub:" + c.Subject, nil
		}
		return "", ratelimit.ErrNoKey
	}
	conn := serve(t, a, grpcguard.RateLimit(newLimiter(t, "user", 1, bySubject)))
	user1, user2 := issuer.token(t, nil), issuer.token(t, map[string]any{"sub": "user-2"})
	require.NoError(t, callUnary(conn, methodUnary, "authorization", "Bearer "+user1).err)
	requireLimited(t, callStream(conn, "authorization", "Bearer "+user1), 1, "same subject, other transport")
	res := callUnary(conn, methodUnary, "authorization", "Bearer "+user2)
	require.NoError(t, res.err)
	require.Equal(t, "sub=user-2", res.reply)
}

func TestRateLimit_ConcurrentCallsExactCount(t *testing.T) {
	const burst, workers, perWorker = 25, 20, 10
	conn := serve(t, grpcguard.RateLimit(newLimiter(t, "ip", burst, ratelimit.KeyByIP())))
	codesSeen := make(chan codes.Code, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				if w%2 == 0 {
					codesSeen <- status.Code(callUnary(conn, methodUnary).err)
				} else {
					codesSeen <- status.Code(callStream(conn).err)
				}
			}
		}()
	}
	wg.Wait()
	close(codesSeen)
	counts := map[codes.Code]int{}
	for c := range codesSeen {
		counts[c]++
	}
	require.Equal(t, map[codes.Code]int{codes.OK: burst, codes.ResourceExhausted: workers*perWorker - burst}, counts)
}

// failingStore is a shared rate-limit store that is down.
type failingStore struct{}

func (failingStore) Take(context.Context, string, time.Duration, int, time.Time) (bool, int, time.Duration, error) {
	return false, 0, 0, errors.New("store down")
}

func (failingStore) Refund(context.Context, string, time.Duration, int, time.Time) error {
	return errors.New("store down")
}

func TestRateLimit_StoreOutageUnderFailClosedIsUnavailable(t *testing.T) {
	l, err := ratelimit.New(ratelimit.Config{
		Limit: ratelimit.Limit{Requests: 10, Per: time.Minute}, Key: ratelimit.KeyByIP(),
		Store: failingStore{}, KeySecret: []byte("0123456789abcdef0123456789abcdef"), // gitleaks:allow -- test key of a fake store
		StorePolicy: ratelimit.FailClosed, Logger: quiet,
	})
	require.NoError(t, err)
	conn := serve(t, grpcguard.RateLimit(l))
	for transport, res := range map[string]result{"unary": callUnary(conn, methodUnary), "stream": callStream(conn)} {
		st, _ := status.FromError(res.err)
		require.Equal(t, codes.Unavailable, st.Code(), transport)
		require.Equal(t, "apiguard: service unavailable, retry later", st.Message(), transport)
		require.NotContains(t, st.Message(), "store down", transport)
		require.Empty(t, res.reply, transport)
	}
}

func TestRateLimit_ConcurrencySlotHeldWhileHandlerRuns(t *testing.T) {
	c, err := ratelimit.NewConcurrency(ratelimit.ConcurrencyConfig{Limit: 1, Key: ratelimit.KeyByIP(), Logger: quiet})
	require.NoError(t, err)
	i := grpcguard.RateLimit(c)
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}})
	info := &grpc.UnaryServerInfo{FullMethod: methodUnary}
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := i.Unary(ctx, nil, info, func(context.Context, any) (any, error) {
			close(entered)
			<-release
			return "done", nil
		})
		first <- err
	}()
	<-entered
	_, err = i.Unary(ctx, nil, info, func(context.Context, any) (any, error) { return "second", nil })
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "one call in flight per key")
	close(release)
	require.NoError(t, <-first)
	_, err = i.Unary(ctx, nil, info, func(context.Context, any) (any, error) { return "third", nil })
	require.NoError(t, err, "the slot is given back when the handler returns")
}

func TestRateLimit_FailureBudgetLocksOutGuessing(t *testing.T) {
	b, err := ratelimit.NewFailureBudget(ratelimit.FailureConfig{Budget: 3, Per: time.Hour, Key: ratelimit.KeyByIP(),
		Now: testkit.NewClock(t0).Now, Logger: quiet})
	require.NoError(t, err)
	i := grpcguard.RateLimit(b)
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}})
	info := &grpc.UnaryServerInfo{FullMethod: methodUnary}
	reached := 0
	wrongPIN := func(context.Context, any) (any, error) {
		reached++
		return nil, status.Error(codes.PermissionDenied, "wrong PIN")
	}
	for range 3 {
		_, err := i.Unary(ctx, nil, info, wrongPIN)
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	}
	_, err = i.Unary(ctx, nil, info, wrongPIN)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "the budget is spent: the key is locked out")
	require.Equal(t, 3, reached)
}
