// Package ginguard runs apiguard middleware in gin.
//
// [Wrap] turns any func(http.Handler) http.Handler (auth, signing,
// ratelimit, attest, telemetry) into a [gin.HandlerFunc]; [Use] adds
// several to an engine and turns on ContextWithFallback:
//
//	engine := gin.New()
//	ginguard.Use(engine, obs.Handler, perIP.Handler, tokens.Handler)
//	engine.GET("/orders/:id", ginguard.Wrap(tokens.Require("orders:read")), orders)
//
// # The context trap
//
// A *gin.Context is a context.Context, but it looks values up in the
// request's context only when the engine's ContextWithFallback is on; gin
// leaves it off. With it off, auth.ClaimsFrom(c) silently reports false
// (and so do signing.KeyIDFrom(c), attest.RiskFrom(c), telemetry.IDFrom(c))
// even on a request the middleware verified. [Use] turns it on. With [Wrap]
// alone, read results from c.Request.Context(), which is always right:
// Wrap makes the request the middleware enriched the framework's request.
//
// # Metrics
//
// Every wrapped middleware names the route after gin's pattern
// (c.FullPath(), "/orders/:id"), so telemetry never labels a matched route
// "unmatched". Telemetry may run inside gin, as above, or wrap the engine,
// http.Server{Handler: obs.Handler(engine)}, which also measures the answers
// gin gives without running middleware (trailing-slash redirects).
package ginguard

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"

	"github.com/apiguard/apiguard/telemetry"
	"github.com/gin-gonic/gin"
)

// Use turns on e.ContextWithFallback, so that auth.ClaimsFrom(c) and the
// other accessors work on the *gin.Context, and adds mws, each wrapped by
// [Wrap], to e's global middleware in order (the first is outermost). Call
// it before registering routes: gin copies the global chain into a route
// when the route is registered, so a route registered earlier is served
// without mws, unauthenticated. It panics if a middleware is nil.
func Use(e *gin.Engine, mws ...func(http.Handler) http.Handler) {
	e.ContextWithFallback = true
	for _, mw := range mws {
		e.Use(Wrap(mw))
	}
}

// Wrap returns mw as gin middleware. It builds mw's handler once and, per
// request:
//
//   - when mw passes the request on, sets c.Request to the request mw
//     passed (whose context carries the claims, key ID, risk or
//     correlation ID), sends the rest of the chain's writes through the
//     ResponseWriter mw passed (so telemetry sees the status), names the
//     route for telemetry's metrics after c.FullPath() through
//     [telemetry.SetRoute], and runs the rest of the chain;
//   - when mw answers the request itself (a rejection from an
//     ErrorHandler: its status, WWW-Authenticate or Retry-After and
//     problem+json body, untouched), aborts the chain.
//
// mw must call its next handler, if at all, on the request's goroutine
// before it returns, with a request whose context derives from the one it
// got, as every apiguard middleware does. The returned handler is safe for
// concurrent use by multiple goroutines. It panics if mw is nil.
func Wrap(mw func(http.Handler) http.Handler) gin.HandlerFunc {
	if mw == nil {
		panic("ginguard: nil middleware")
	}
	h := mw(http.HandlerFunc(serveNext))
	return func(c *gin.Context) {
		st := &state{c: c}
		r := c.Request
		h.ServeHTTP(c.Writer, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
		if !st.reached {
			c.Abort()
		}
	}
}

type stateKey struct{}

// state carries the gin context to serveNext, through the request context,
// and back whether mw passed the request on.
type state struct {
	c       *gin.Context
	reached bool
}

// serveNext is the next handler of every wrapped middleware: it continues
// the gin chain inside the middleware.
func serveNext(w http.ResponseWriter, r *http.Request) {
	st, _ := r.Context().Value(stateKey{}).(*state)
	if st == nil || st.reached {
		panic("ginguard: the middleware called next twice or with a request context not derived from its own")
	}
	st.reached = true
	c := st.c
	c.Request = r
	if route := c.FullPath(); route != "" {
		telemetry.SetRoute(r.Context(), route)
	}
	orig := c.Writer
	if w == http.ResponseWriter(orig) {
		c.Next()
		return
	}
	c.Writer = &writer{ResponseWriter: orig, w: w}
	defer func() { c.Writer = orig }()
	c.Next()
	if !orig.Written() {
		// gin may still write a status it holds (its 404 and 405 answers
		// do, after the chain returns): tell mw now, while it watches.
		// gin's own WriteHeader only records the status.
		w.WriteHeader(orig.Status())
	}
}

// writer is gin's ResponseWriter with the writes sent through the
// middleware's writer, which ends in gin's.
type writer struct {
	gin.ResponseWriter
	w http.ResponseWriter
}

func (w *writer) Header() http.Header               { return w.w.Header() }
func (w *writer) WriteHeader(code int)              { w.w.WriteHeader(code) }
func (w *writer) Write(b []byte) (int, error)       { return w.w.Write(b) }
func (w *writer) WriteString(s string) (int, error) { return io.WriteString(w.w, s) }
func (w *writer) Unwrap() http.ResponseWriter       { return w.w }
func (w *writer) Flush()                            { _ = http.NewResponseController(w.w).Flush() }
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.w).Hijack()
}

func (w *writer) WriteHeaderNow() {
	if !w.ResponseWriter.Written() {
		w.w.WriteHeader(w.ResponseWriter.Status())
	}
	w.ResponseWriter.WriteHeaderNow()
}
