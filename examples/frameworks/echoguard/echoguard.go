// Package echoguard runs apiguard middleware in echo.
//
// [Wrap] turns any func(http.Handler) http.Handler (auth, signing,
// ratelimit, attest, telemetry) into an [echo.MiddlewareFunc]:
//
//	e := echo.New()
//	e.Use(echoguard.Wrap(obs.Handler), echoguard.Wrap(perIP.Handler), echoguard.Wrap(tokens.Handler))
//	e.GET("/orders/:id", orders, echoguard.Wrap(tokens.Require("orders:read")))
//
// Handlers read results from c.Request().Context():
// auth.ClaimsFrom(c.Request().Context()). Register the middleware with
// e.Use or on routes and groups, not with e.Pre: before routing, c.Path()
// is not yet known. Every wrapped middleware names the route after echo's
// pattern (c.Path(), "/orders/:id") for telemetry's metrics.
package echoguard

import (
	"context"
	"net/http"

	"github.com/apiguard/apiguard/telemetry"
	"github.com/labstack/echo/v4"
)

// Wrap returns mw as echo middleware. It builds mw's handler once and, per
// request:
//
//   - when mw passes the request on, makes the request mw passed (whose
//     context carries the claims, key ID, risk or correlation ID) the
//     context's request with c.SetRequest, sends the rest of the chain's
//     writes through the ResponseWriter mw passed (so telemetry sees the
//     status), names the route for telemetry's metrics after c.Path()
//     through [telemetry.SetRoute], and runs the rest of the chain. An
//     error the chain returns is handed to c.Error there, inside mw, so
//     that mw sees the answer echo's HTTPErrorHandler writes; Wrap then
//     returns nil.
//   - when mw answers the request itself (a rejection from an
//     ErrorHandler: its status, WWW-Authenticate or Retry-After and
//     problem+json body, untouched), returns nil without calling the rest
//     of the chain.
//
// mw must call its next handler, if at all, on the request's goroutine
// before it returns, with a request whose context derives from the one it
// got, as every apiguard middleware does. The returned middleware is safe
// for concurrent use by multiple goroutines. It panics if mw is nil.
func Wrap(mw func(http.Handler) http.Handler) echo.MiddlewareFunc {
	if mw == nil {
		panic("echoguard: nil middleware")
	}
	h := mw(http.HandlerFunc(serveNext))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			st := &state{c: c, next: next}
			r := c.Request()
			h.ServeHTTP(c.Response(), r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
			return nil
		}
	}
}

type stateKey struct{}

// state carries the echo context and the rest of the chain to serveNext,
// through the request context.
type state struct {
	c       echo.Context
	next    echo.HandlerFunc
	reached bool
}

// serveNext is the next handler of every wrapped middleware: it continues
// the echo chain inside the middleware.
func serveNext(w http.ResponseWriter, r *http.Request) {
	st, _ := r.Context().Value(stateKey{}).(*state)
	if st == nil || st.reached {
		panic("echoguard: the middleware called next twice or with a request context not derived from its own")
	}
	st.reached = true
	c := st.c
	c.SetRequest(r)
	if route := c.Path(); route != "" {
		telemetry.SetRoute(r.Context(), route)
	}
	if orig := c.Response(); w != http.ResponseWriter(orig) {
		resp := echo.NewResponse(w, c.Echo())
		resp.Status = orig.Status
		c.SetResponse(resp)
		defer c.SetResponse(orig)
	}
	if err := st.next(c); err != nil {
		c.Error(err)
	}
}
