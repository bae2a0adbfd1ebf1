package ginguard_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/examples/frameworks/ginguard"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/gin-gonic/gin"
)

// BenchmarkWrap measures what Wrap adds to a gin route: gin alone, gin with
// a limiter through Wrap, and the same limiter on plain net/http.
func BenchmarkWrap(b *testing.B) {
	lim, err := ratelimit.New(ratelimit.Config{
		Limit: ratelimit.Limit{Requests: 1 << 30, Per: time.Second}, Key: ratelimit.KeyByIP(),
		QuietAllow: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ok := func(c *gin.Context) { c.Status(http.StatusNoContent) }
	bare := gin.New()
	bare.GET("/orders/:id", ok)
	wrapped := gin.New()
	wrapped.GET("/orders/:id", ginguard.Wrap(lim.Handler), ok)
	plain := lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for _, bb := range []struct {
		name string
		h    http.Handler
	}{{"gin", bare}, {"gin_wrap_ratelimit", wrapped}, {"nethttp_ratelimit", plain}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest(http.MethodGet, "/orders/7", nil)
				w := httptest.NewRecorder()
				for pb.Next() {
					bb.h.ServeHTTP(w, r)
				}
			})
		})
	}
}
