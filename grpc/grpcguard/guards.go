package grpcguard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// AuthConfig says what each gRPC method requires of the caller's access
// token. A zero field takes the default in its comment.
type AuthConfig struct {
	// Methods maps full method names ("/pkg.Service/Method") to what they
	// require beyond a valid token: scopes, and for step-up an acr or a
	// recent sign-in. Default: a valid token only, for every method.
	Methods map[string]auth.Requirement
	// Public lists the full method names served without a token (health
	// checks, say). Default: none, every method needs a valid token.
	Public []string
	// StreamRecheck is how often the token of an open stream is verified
	// again ([auth.Verifier.VerifyToken]: expiry and Config.Revocations,
	// at the cost of a verified-token cache hit). A token that is refused
	// ends the stream with Unauthenticated; an outage (keys unavailable)
	// does not. Negative: never, the stream is decided only when it
	// opens. Default: 10s.
	StreamRecheck time.Duration
}

// NewAuth returns interceptors that verify the access token of each call
// with v, exactly as v's HTTP middleware ([auth.Verifier.RequireWith])
// does, on a request built from the call (see the package
// documentation): a call with a valid token that meets its method's
// requirement reaches the handler with the claims in its context
// ([auth.ClaimsFrom]). A DPoP proof's htm is POST and its htu is v's
// Config.DPoPURL joined with the full method name. It returns an error for
// a nil v, a method name that is not of the form "/service/method", or a
// method both public and in Methods.
func NewAuth(v *auth.Verifier, cfg AuthConfig) (*Interceptor, error) {
	if v == nil {
		return nil, errors.New("grpcguard: NewAuth needs a Verifier")
	}
	i := &Interceptor{}
	handlers := make(map[string]http.Handler, len(cfg.Methods)+len(cfg.Public))
	for m, req := range cfg.Methods {
		if !validMethod(m) {
			return nil, fmt.Errorf("grpcguard: AuthConfig.Methods: %q is not a full method name", m)
		}
		handlers[m] = v.RequireWith(req)(i.next())
	}
	public := make(map[string]bool, len(cfg.Public))
	for _, m := range cfg.Public {
		if !validMethod(m) {
			return nil, fmt.Errorf("grpcguard: AuthConfig.Public: %q is not a full method name", m)
		}
		if _, ok := handlers[m]; ok {
			return nil, fmt.Errorf("grpcguard: %q is both public and in AuthConfig.Methods", m)
		}
		public[m] = true
	}
	for m := range handlers {
		i.named = append(i.named, m)
	}
	i.named = append(i.named, cfg.Public...)
	slices.Sort(i.named)
	every := cfg.StreamRecheck
	if every == 0 {
		every = 10 * time.Second
	}
	if every > 0 {
		i.watch = func(ctx context.Context, r *http.Request) (context.Context, func() error) {
			return watchToken(ctx, v, r, every)
		}
	}
	dflt := v.Handler(i.next())
	i.handler = func(m string) http.Handler {
		if h, ok := handlers[m]; ok {
			return h
		}
		if public[m] {
			return nil
		}
		return dflt
	}
	return i, nil
}

// CheckMethods returns an error naming every method of NewAuth's
// AuthConfig (Methods and Public) that srv does not serve. Call it once
// the services are registered: a misspelt name in Methods leaves the real
// method with the default requirement (any valid token), and nothing else
// would notice. It returns nil for interceptors NewAuth did not make.
func (i *Interceptor) CheckMethods(srv interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}) error {
	info := srv.GetServiceInfo()
	var unknown []string
	for _, m := range i.named {
		svc, meth, _ := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		if !slices.ContainsFunc(info[svc].Methods, func(mi grpc.MethodInfo) bool { return mi.Name == meth }) {
			unknown = append(unknown, m)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("grpcguard: AuthConfig names methods the server does not serve: %s", strings.Join(unknown, ", "))
	}
	return nil
}

// errTokenEnded is the cause of an open stream's end when its token is
// refused on a re-check.
var errTokenEnded = errors.New("grpcguard: the stream's token was refused on a re-check")

// watchToken verifies the token of r again every interval while the
// stream runs, and cancels the returned context when v refuses it (an
// outage does not count). stop ends the watch; it returns Unauthenticated
// when the watch ended the stream.
func watchToken(ctx context.Context, v *auth.Verifier, r *http.Request, every time.Duration) (context.Context, func() error) {
	_, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || token == "" {
		return ctx, func() error { return nil }
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := v.VerifyToken(ctx, token); err != nil && !errors.Is(err, auth.ErrKeysUnavailable) && ctx.Err() == nil {
					cancel(errTokenEnded)
					return
				}
			}
		}
	}()
	return ctx, func() error {
		close(done)
		<-ended
		refused := errors.Is(context.Cause(ctx), errTokenEnded)
		cancel(nil)
		if refused {
			return status.Error(codes.Unauthenticated, msgUnauth)
		}
		return nil
	}
}

// validMethod reports whether m is a full method name, "/service/method".
func validMethod(m string) bool {
	svc, meth, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	return strings.HasPrefix(m, "/") && ok && svc != "" && meth != "" && !strings.Contains(meth, "/")
}

// RateLimit returns interceptors that decide each call with l, exactly
// as l's HTTP middleware (its Handler) does, on a request built from the
// call; l is a [ratelimit.Limiter], [ratelimit.Concurrency] or
// [ratelimit.FailureBudget]. So l's Config.Key keys calls as it keys
// requests: [ratelimit.KeyByIP] by the peer's address (through trusted
// proxies, from x-forwarded-for metadata), [ratelimit.KeyByHeader] by a
// metadata value, a KeyFunc reading [auth.ClaimsFrom] by the claims of a
// NewAuth interceptor earlier in the chain. A limited call gets
// ResourceExhausted with google.rpc.RetryInfo, a store outage under
// FailClosed Unavailable; the RateLimit fields of an allowed call are
// header metadata. A Concurrency slot is held while the handler runs, and
// a FailureBudget counts the handler's Unauthenticated and PermissionDenied
// (401 and 403) as failures. It panics if l is nil.
func RateLimit(l interface {
	Handler(next http.Handler) http.Handler
}) *Interceptor {
	if l == nil {
		panic("grpcguard: RateLimit needs a limiter")
	}
	i := &Interceptor{}
	h := l.Handler(i.next())
	i.handler = func(string) http.Handler { return h }
	return i
}

// The ratelimit types RateLimit takes.
var (
	_ interface {
		Handler(http.Handler) http.Handler
	} = (*ratelimit.Limiter)(nil)
	_ interface {
		Handler(http.Handler) http.Handler
	} = (*ratelimit.Concurrency)(nil)
	_ interface {
		Handler(http.Handler) http.Handler
	} = (*ratelimit.FailureBudget)(nil)
)

// Telemetry returns interceptors that give each call what o's HTTP
// middleware ([telemetry.Observer.Handler]) gives a request: a
// correlation ID from the metadata named by o's Config.Header (default
// x-request-id) or a fresh one, the W3C trace context from traceparent and
// tracestate metadata, the security events of the call counted, and the
// duration metric with the full method name as the route and the HTTP
// status that stands for the call's gRPC code; a method the server does
// not know (an UnknownServiceHandler's call) counts as unmatched. The
// correlation ID, traceparent and tracestate of the call go back as
// header metadata.
// Put it first in the chain. It panics if o is nil.
func Telemetry(o *telemetry.Observer) *Interceptor {
	if o == nil {
		panic("grpcguard: Telemetry needs an Observer")
	}
	i := &Interceptor{enter: enterTelemetry}
	h := o.Handler(i.next())
	i.handler = func(string) http.Handler { return h }
	return i
}

// next returns the middleware's next handler.
func (i *Interceptor) next() http.Handler { return http.HandlerFunc(i.serveNext) }

// enterTelemetry names the route and adds the trace context to the
// response, as telemetry.NewTransport would send it on an outgoing
// request: the trace the call continues, or the root telemetry started.
func enterTelemetry(w http.ResponseWriter, r *http.Request, route string) {
	if route != "" {
		telemetry.SetRoute(r.Context(), route)
	}
	var capture headerCapture
	out := (&http.Request{Method: http.MethodGet, URL: r.URL, Header: http.Header{}}).WithContext(r.Context())
	_, _ = telemetry.NewTransport(&capture).RoundTrip(out)
	for _, k := range []string{"Traceparent", "Tracestate"} {
		if v := capture.header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
}

// headerCapture is a RoundTripper that keeps the header of the request it
// is given and sends nothing.
type headerCapture struct{ header http.Header }

var errCaptured = errors.New("grpcguard: captured, not sent")

func (c *headerCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	c.header = r.Header
	return nil, errCaptured
}
