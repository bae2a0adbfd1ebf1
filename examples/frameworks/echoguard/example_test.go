package echoguard_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/frameworks/echoguard"
	"github.com/apiguard/apiguard/examples/frameworks/internal/issuer"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/labstack/echo/v4"
)

// Telemetry and a per-IP limit guard every route; a route adds the scope
// it needs, and its handler reads the claims from the request's context.
func ExampleWrap() {
	iss, _ := issuer.New()
	tokens, _ := iss.Verifier(nil, slog.New(slog.DiscardHandler))
	defer tokens.Close()
	obs, _ := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler)})
	perIP, _ := ratelimit.New(ratelimit.Config{Name: "ip", Limit: ratelimit.Limit{Requests: 100, Per: time.Minute}, Key: ratelimit.KeyByIP(), Logger: obs.Logger()})

	e := echo.New()
	e.Use(echoguard.Wrap(obs.Handler), echoguard.Wrap(perIP.Handler))
	e.GET("/orders/:id", func(c echo.Context) error {
		claims, _ := auth.ClaimsFrom(c.Request().Context())
		return c.String(http.StatusOK, "order "+c.Param("id")+" of "+claims.Subject)
	}, echoguard.Wrap(tokens.Require("orders:read")))

	tok, _ := iss.Token("orders:read", time.Now())
	r := httptest.NewRequest(http.MethodGet, "/orders/7", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 200 order 7 of user-1
}

// A token without the route's scope gets auth's own answer, and the
// handler never runs.
func ExampleWrap_insufficientScope() {
	iss, _ := issuer.New()
	tokens, _ := iss.Verifier(nil, slog.New(slog.DiscardHandler))
	defer tokens.Close()

	e := echo.New()
	e.GET("/orders/:id", func(c echo.Context) error {
		fmt.Println("never reached")
		return nil
	}, echoguard.Wrap(tokens.Require("orders:read")))

	tok, _ := iss.Token("profile", time.Now())
	r := httptest.NewRequest(http.MethodGet, "/orders/7", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Println(rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 403 application/problem+json
	// Bearer error="insufficient_scope", scope="orders:read"
}
