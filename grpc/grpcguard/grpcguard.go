package grpcguard

import (
	"context"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Interceptor is one apiguard middleware as gRPC server interceptors: its
// method values Interceptor.Unary and Interceptor.Stream are a
// grpc.UnaryServerInterceptor and a grpc.StreamServerInterceptor. It is
// safe for concurrent use by multiple goroutines. Create one with
// [Telemetry], [RateLimit] or [NewAuth]; the zero value is not usable.
type Interceptor struct {
	// handler returns the middleware, wrapped around serveNext, that
	// decides a call of the full method; nil lets the call through
	// undecided (a public method).
	handler func(fullMethod string) http.Handler
	// enter runs in the middleware's next handler before the gRPC handler.
	// route is the full method name, or "" for a call grpc-go routes to
	// its UnknownServiceHandler, whose name the caller chose.
	enter func(w http.ResponseWriter, r *http.Request, route string)
	// named are the full method names NewAuth was given; nil otherwise.
	named []string
	// watch, set by NewAuth, derives the context of an admitted stream,
	// ended when its token stops being valid; stop ends the watch and
	// returns the error the stream ends with instead (nil if it did not
	// end it).
	watch func(ctx context.Context, r *http.Request) (_ context.Context, stop func() error)
}

var (
	_ grpc.UnaryServerInterceptor  = (*Interceptor)(nil).Unary
	_ grpc.StreamServerInterceptor = (*Interceptor)(nil).Stream
)

// Unary is a grpc.UnaryServerInterceptor: it decides the call as the
// middleware decides an HTTP request, and either calls handler with a
// context that carries the middleware's results, or returns the rejection
// as a status error (see the package documentation).
func (i *Interceptor) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var resp any
	err := i.intercept(ctx, info.FullMethod, info.FullMethod,
		func(md metadata.MD) error { return grpc.SetHeader(ctx, md) },
		func(md metadata.MD) error { return grpc.SetTrailer(ctx, md) },
		func(ctx context.Context) error {
			var err error
			resp, err = handler(ctx, req)
			return err
		})
	return resp, err
}

// Stream is a grpc.StreamServerInterceptor: [Interceptor.Unary] for
// streams. The decision is made once, when the stream opens; the handler's
// stream returns the context that carries the middleware's results. A
// call grpc-go hands to its UnknownServiceHandler (srv is nil) is decided
// under its name but never names a route: telemetry counts it as
// unmatched, so that callers cannot fill the route table with names.
func (i *Interceptor) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	route := info.FullMethod
	if srv == nil {
		route = ""
	}
	return i.interceptCall(ss.Context(), info.FullMethod, route, true, ss.SetHeader,
		func(md metadata.MD) error { ss.SetTrailer(md); return nil },
		func(ctx context.Context) error { return handler(srv, &stream{ServerStream: ss, ctx: ctx}) })
}

// stream is a grpc.ServerStream whose Context carries the middleware's
// results.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// call is the state of one intercepted call, in the synthetic request's
// context, where the middleware's next handler finds it.
type call struct {
	method    string // the full method name
	route     string // method, or "" when the service does not know it
	stream    bool
	run       func(context.Context) error
	setHeader func(metadata.MD) error
	reached   bool
	err       error
}

type callKey struct{}

func (i *Interceptor) intercept(ctx context.Context, fullMethod, route string, setHeader, setTrailer func(metadata.MD) error, run func(context.Context) error) error {
	return i.interceptCall(ctx, fullMethod, route, false, setHeader, setTrailer, run)
}

func (i *Interceptor) interceptCall(ctx context.Context, fullMethod, route string, isStream bool, setHeader, setTrailer func(metadata.MD) error, run func(context.Context) error) error {
	h := i.handler(fullMethod)
	if h == nil {
		return run(ctx)
	}
	c := &call{method: fullMethod, route: route, stream: isStream, run: run, setHeader: setHeader}
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, newRequest(context.WithValue(ctx, callKey{}, c), fullMethod))
	if c.reached {
		return c.err
	}
	if md := toMetadata(rec.header); len(md) > 0 {
		_ = setTrailer(md) // fails only when the stream has ended: nothing to tell
	}
	return rejection(rec.status, rec.header)
}

// serveNext is the next handler of every middleware: it forwards the
// header fields the middleware set (RateLimit, DPoP-Nonce, the
// correlation ID) as header metadata, runs the rest of the gRPC chain with
// the middleware's context, and writes the HTTP status of its outcome, for
// the middleware that watch it (telemetry's metrics, a failure budget).
func (i *Interceptor) serveNext(w http.ResponseWriter, r *http.Request) {
	c := r.Context().Value(callKey{}).(*call)
	c.reached = true
	if i.enter != nil {
		i.enter(w, r, c.route)
	}
	if md := toMetadata(w.Header()); len(md) > 0 {
		_ = c.setHeader(md) // fails only once headers are sent: the handler's choice
	}
	ctx, stop := r.Context(), func() error { return nil }
	if c.stream && i.watch != nil {
		ctx, stop = i.watch(ctx, r)
	}
	c.err = c.run(ctx)
	if err := stop(); err != nil {
		c.err = err
	}
	w.WriteHeader(httpStatus(status.Code(c.err)))
}

// newRequest returns the request the middleware decides: POST to the full
// method's path, the incoming metadata as header fields (pseudo-headers
// and binary -bin keys left out), the peer's address as RemoteAddr.
func newRequest(ctx context.Context, fullMethod string) *http.Request {
	md, _ := metadata.FromIncomingContext(ctx)
	h := make(http.Header, len(md))
	host := ""
	for k, vs := range md {
		switch {
		case k == ":authority" && len(vs) > 0:
			host = vs[0]
		case strings.HasPrefix(k, ":"), strings.HasSuffix(k, "-bin"):
		default:
			h[textproto.CanonicalMIMEHeaderKey(k)] = vs
		}
	}
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	r := &http.Request{
		Method:     http.MethodPost,
		URL:        &url.URL{Path: fullMethod},
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RemoteAddr: remote,
		RequestURI: fullMethod,
	}
	return r.WithContext(ctx)
}

// recorder is the ResponseWriter the middleware answers a rejection on.
// The body (problem+json) is dropped: gRPC clients get a fixed message.
type recorder struct {
	header http.Header
	status int
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

// toMetadata converts header fields to metadata, leaving out the body's
// fields and those HTTP/2 or gRPC reserve.
func toMetadata(h http.Header) metadata.MD {
	var md metadata.MD
	for k, vs := range h {
		k = strings.ToLower(k)
		switch {
		case strings.HasPrefix(k, "grpc-"), strings.HasPrefix(k, "content-"),
			k == "connection", k == "keep-alive", k == "proxy-connection", k == "te",
			k == "trailer", k == "transfer-encoding", k == "upgrade", k == "x-content-type-options":
			continue
		}
		if md == nil {
			md = metadata.MD{}
		}
		md[k] = append(md[k], vs...)
	}
	return md
}

// Fixed messages, one per code: what was wrong in detail goes to the log,
// never to the client.
const (
	msgInvalid       = "apiguard: malformed request"
	msgUnauth        = "apiguard: unauthenticated"
	msgDenied        = "apiguard: permission denied"
	msgExhausted     = "apiguard: rate limit exceeded"
	msgUnavailable   = "apiguard: service unavailable, retry later"
	msgInternal      = "apiguard: internal error"
	msgUnknownRefuse = "apiguard: request refused"
)

// rejection returns the status error for a middleware's HTTP answer,
// with google.rpc.RetryInfo from Retry-After for ResourceExhausted and
// Unavailable.
func rejection(code int, h http.Header) error {
	var st *status.Status
	switch {
	case code == http.StatusBadRequest:
		st = status.New(codes.InvalidArgument, msgInvalid)
	case code == http.StatusUnauthorized:
		st = status.New(codes.Unauthenticated, msgUnauth)
	case code == http.StatusForbidden:
		st = status.New(codes.PermissionDenied, msgDenied)
	case code == http.StatusTooManyRequests:
		st = status.New(codes.ResourceExhausted, msgExhausted)
	case code == http.StatusServiceUnavailable:
		st = status.New(codes.Unavailable, msgUnavailable)
	case code >= 500:
		st = status.New(codes.Internal, msgInternal)
	default:
		st = status.New(codes.Unknown, msgUnknownRefuse)
	}
	if c := st.Code(); c == codes.ResourceExhausted || c == codes.Unavailable {
		if secs, err := strconv.Atoi(h.Get("Retry-After")); err == nil && secs >= 0 {
			d := &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)}
			if withInfo, err := st.WithDetails(d); err == nil {
				st = withInfo
			}
		}
	}
	return st.Err()
}

// httpStatus returns the HTTP status that stands for a gRPC code in the
// middleware's view of a call (telemetry's http.response.status_code, a
// failure budget's IsFailure): OK 200, InvalidArgument, FailedPrecondition
// and OutOfRange 400, Unauthenticated 401, PermissionDenied 403, NotFound
// 404, AlreadyExists and Aborted 409, ResourceExhausted 429, Canceled 499,
// Unimplemented 501, Unavailable 503, DeadlineExceeded 504, any other 500.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled:
		return 499 // client closed request, as proxies log it
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}
