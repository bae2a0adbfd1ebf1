package grpcguard_test

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/grpcguard"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
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
