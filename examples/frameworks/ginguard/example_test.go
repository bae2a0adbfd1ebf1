package ginguard_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/frameworks/ginguard"
	"github.com/apiguard/apiguard/examples/frameworks/internal/issuer"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/gin-gonic/gin"
)

// Use puts telemetry and a per-IP limit in front of every route and turns on
// ContextWithFallback, so that handlers may pass the *gin.Context to
// auth.ClaimsFrom; Wrap adds the scope a route needs.
func ExampleUse() {
	iss, _ := issuer.New()
	tokens, _ := iss.Verifier(nil, slog.New(slog.DiscardHandler))
	defer tokens.Close()
	obs, _ := telemetry.New(telemetry.Config{Logger: slog.New(slog.DiscardHandler)})
	perIP, _ := ratelimit.New(ratelimit.Config{Name: "ip", Limit: ratelimit.Limit{Requests: 100, Per: time.Minute}, Key: ratelimit.KeyByIP(), Logger: obs.Logger()})

	engine := gin.New()
	ginguard.Use(engine, obs.Handler, perIP.Handler)
	engine.GET("/orders/:id", ginguard.Wrap(tokens.Require("orders:read")), func(c *gin.Context) {
		claims, _ := auth.ClaimsFrom(c)
		c.String(http.StatusOK, "order %s of %s", c.Param("id"), claims.Subject)
	})

	tok, _ := iss.Token("orders:read", time.Now())
	r := httptest.NewRequest(http.MethodGet, "/orders/7", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	engine.ServeHTTP(rec, r)
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 200 order 7 of user-1
}

// A request without a token gets auth's own answer, and the gin chain stops.
func ExampleWrap_missingToken() {
	iss, _ := issuer.New()
	tokens, _ := iss.Verifier(nil, slog.New(slog.DiscardHandler))
	defer tokens.Close()

	engine := gin.New()
	engine.GET("/orders/:id", ginguard.Wrap(tokens.Require("orders:read")), func(c *gin.Context) {
		fmt.Println("never reached")
	})

	rec := httptest.NewRecorder()
	engine.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders/7", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Println(rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 401 application/problem+json
	// Bearer
}

// Without ContextWithFallback, read results from c.Request.Context(), which
// Wrap always makes the request the middleware enriched.
func ExampleWrap() {
	iss, _ := issuer.New()
	tokens, _ := iss.Verifier(nil, slog.New(slog.DiscardHandler))
	defer tokens.Close()

	engine := gin.New() // ContextWithFallback is off
	engine.GET("/me", ginguard.Wrap(tokens.Handler), func(c *gin.Context) {
		_, onGin := auth.ClaimsFrom(c)
		claims, _ := auth.ClaimsFrom(c.Request.Context())
		fmt.Println("ClaimsFrom(c):", onGin)
		fmt.Println("ClaimsFrom(c.Request.Context()):", claims.Subject)
	})

	tok, _ := iss.Token("profile", time.Now())
	r := httptest.NewRequest(http.MethodGet, "/me", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	engine.ServeHTTP(httptest.NewRecorder(), r)
	// Output:
	// ClaimsFrom(c): false
	// ClaimsFrom(c.Request.Context()): user-1
}
