package grpcguard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/grpc/grpcguard"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const (
	incomingTrace  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	incomingTrcID  = "4bf92f3577b34da6a3ce929d0e0e4736"
	validRequestID = "req-42"
)

// observed is a server behind Telemetry, an IP limiter of burst 3 and
// NewAuth, all logging through the observer's logger into logs.
type observed struct {
	conn   *grpc.ClientConn
	reader *sdkmetric.ManualReader
	logs   *testkit.LogSink
	issuer *key
}

func newObserved(t *testing.T) *observed {
	t.Helper()
	o := &observed{reader: sdkmetric.NewManualReader(), logs: &testkit.LogSink{}, issuer: newKey(t, "k1")}
	obs, err := telemetry.New(telemetry.Config{
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader)),
		Logger:        slog.New(slog.NewJSONHandler(o.logs, nil)),
	})
	require.NoError(t, err)
	v := newVerifier(t, o.issuer, func(c *auth.Config) { c.Logger = obs.Logger() })
	a, err := grpcguard.NewAuth(v, grpcguard.AuthConfig{})
	require.NoError(t, err)
	lim, err := ratelimit.New(ratelimit.Config{Name: "ip", Limit: ratelimit.Limit{Requests: 3, Per: time.Hour, Burst: 3},
		Key: ratelimit.KeyByIP(), Now: testkit.NewClock(t0).Now, Logger: obs.Logger()})
	require.NoError(t, err)
	o.conn = serve(t, grpcguard.Telemetry(obs), grpcguard.RateLimit(lim), a)
	o.logs.Reset()
	return o
}

// records returns the log records that carry an event.
func (o *observed) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(o.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		if rec["event"] != nil {
			out = append(out, rec)
		}
	}
	return out
}

// durations returns the duration histogram's counts by "route status".
func (o *observed) durations(t *testing.T) map[string]uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, o.reader.Collect(context.Background(), &rm))
	out := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != telemetry.MetricRequestDuration {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				route, _ := dp.Attributes.Value(attribute.Key("http.route"))
				code, _ := dp.Attributes.Value(attribute.Key("http.response.status_code"))
				out[route.AsString()+" "+code.String()] += dp.Count
			}
		}
	}
	return out
}

func TestTelemetry_CorrelationIDAndTraceContextInMetadata(t *testing.T) {
	o := newObserved(t)
	token := o.issuer.token(t, nil)

	res := callUnary(o.conn, methodUnary, "authorization", "Bearer "+token, "x-request-id", validRequestID, "traceparent", incomingTrace)
	require.NoError(t, res.err)
	require.Equal(t, "sub=user-1 id="+validRequestID, res.reply, "the handler sees claims and correlation ID")
	require.Equal(t, []string{validRequestID}, res.header.Get("x-request-id"))
	require.Len(t, res.header.Get("traceparent"), 1)
	require.True(t, strings.HasPrefix(res.header.Get("traceparent")[0], "00-"+incomingTrcID+"-"), "the incoming trace is continued")

	stream := callStream(o.conn, "authorization", "Bearer "+token, "x-request-id", "req-43")
	require.NoError(t, stream.err)
	require.Equal(t, "sub=user-1 id=req-43,sub=user-1 id=req-43", stream.reply)
	require.Equal(t, []string{"req-43"}, stream.header.Get("x-request-id"))

	fresh := callUnary(o.conn, methodUnary, "authorization", "Bearer "+token, "x-request-id", "bad id; <script>")
	require.NoError(t, fresh.err)
	require.Len(t, fresh.header.Get("x-request-id"), 1)
	id := fresh.header.Get("x-request-id")[0]
	require.True(t, telemetry.ValidID(id) && id != "bad id; <script>", "an invalid incoming ID is replaced")
	require.Equal(t, "sub=user-1 id="+id, fresh.reply)
	require.Len(t, fresh.header.Get("traceparent"), 1, "a call without traceparent gets the root trace telemetry started")
}

func TestTelemetry_SecurityEventsCarryCorrelationID(t *testing.T) {
	o := newObserved(t)
	res := callUnary(o.conn, methodUnary, "x-request-id", validRequestID, "traceparent", incomingTrace)
	require.Equal(t, codes.Unauthenticated, status.Code(res.err))
	recs := o.records(t)
	require.Len(t, recs, 1)
	require.Equal(t, "auth_failed", recs[0]["event"])
	require.Equal(t, "no_token", recs[0]["reason"])
	require.Equal(t, validRequestID, recs[0]["correlation_id"])
	require.Equal(t, incomingTrcID, recs[0]["trace_id"])
	id := append(res.header.Get("x-request-id"), res.trailer.Get("x-request-id")...)
	require.Contains(t, id, validRequestID, "a refused call still gets its correlation ID back")
}

func TestTelemetry_DurationMetricPerMethodAndOutcome(t *testing.T) {
	o := newObserved(t)
	token := o.issuer.token(t, nil)
	require.NoError(t, callUnary(o.conn, methodUnary, "authorization", "Bearer "+token).err)
	require.Equal(t, codes.Unauthenticated, status.Code(callUnary(o.conn, methodUnary).err))
	require.NoError(t, callStream(o.conn, "authorization", "Bearer "+token).err)
	require.Equal(t, codes.ResourceExhausted, status.Code(callUnary(o.conn, methodAdmin, "authorization", "Bearer "+token).err))
	require.Equal(t, map[string]uint64{
		methodUnary + " 200":  1,
		methodUnary + " 401":  1,
		methodStream + " 200": 1,
		methodAdmin + " 429":  1,
	}, o.durations(t))
}

func TestTelemetry_MetricStatusOfEveryHandlerCode(t *testing.T) {
	want := map[codes.Code]string{
		codes.OK: "200", codes.Canceled: "499", codes.Unknown: "500", codes.InvalidArgument: "400",
		codes.DeadlineExceeded: "504", codes.NotFound: "404", codes.AlreadyExists: "409",
		codes.PermissionDenied: "403", codes.ResourceExhausted: "429", codes.FailedPrecondition: "400",
		codes.Aborted: "409", codes.OutOfRange: "400", codes.Unimplemented: "501", codes.Internal: "500",
		codes.Unavailable: "503", codes.DataLoss: "500", codes.Unauthenticated: "401",
	}
	for c, status := range want {
		reader := sdkmetric.NewManualReader()
		obs, err := telemetry.New(telemetry.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Logger: quiet})
		require.NoError(t, err)
		o := &observed{reader: reader}
		handler := func(context.Context, any) (any, error) {
			if c == codes.OK {
				return "ok", nil
			}
			return nil, statusErr(c)
		}
		_, err = grpcguard.Telemetry(obs).Unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: methodUnary}, handler)
		require.Equal(t, c, statusCode(err), c.String())
		require.Equal(t, map[string]uint64{methodUnary + " " + status: 1}, o.durations(t), c.String())
	}
}

func statusErr(c codes.Code) error    { return status.Error(c, "handler says so") }
func statusCode(err error) codes.Code { return status.Code(err) }

// With grpc.UnknownServiceHandler (a gRPC proxy, say), anyone can call
// any method name. Those names must not become route labels: 1024 of them
// would fill telemetry's route table, and every real method first seen
// after would be counted as "other", out of sight of its metrics and drift
// events.
func TestTelemetry_UnknownMethodNamesAreNotRouteLabels(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	obs, err := telemetry.New(telemetry.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Logger: quiet})
	require.NoError(t, err)
	tel := grpcguard.Telemetry(obs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.UnaryInterceptor(tel.Unary), grpc.StreamInterceptor(tel.Stream),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error { return status.Error(codes.Unimplemented, "unknown") }))
	srv.RegisterService(&echoDesc, echo{})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(); srv.Stop(); <-done })

	for i := range 3 {
		res := callUnary(conn, fmt.Sprintf("/scan.Junk%d/Probe", i))
		require.Equal(t, codes.Unimplemented, status.Code(res.err))
	}
	require.NoError(t, callUnary(conn, methodUnary).err)
	require.NoError(t, callStream(conn).err)

	o := &observed{reader: reader}
	require.Equal(t, map[string]uint64{
		telemetry.UnmatchedRoute + " 501": 3,
		methodUnary + " 200":              1,
		methodStream + " 200":             1,
	}, o.durations(t))
}
