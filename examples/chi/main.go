// Command chi shows the apiguard chain on go-chi/chi routers: every
// middleware's Handler method fits r.Use.
//
//	go run ./examples/chi
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/examples/internal/serve"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/signing"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/go-chi/chi/v5"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

type app struct {
	handler http.Handler
	tokens  *auth.Verifier
	priv    ed25519.PrivateKey
	master  []byte // the signing master secret: each device's is derived from it
}

func newApp(logger *slog.Logger) (*app, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	k, _ := jwk.FromRaw(pub)
	_ = k.Set(jwk.KeyIDKey, "k")
	set := jwk.NewSet()
	_ = set.AddKey(k)

	obs, err := telemetry.New(telemetry.Config{Logger: logger})
	if err != nil {
		return nil, err
	}
	perIP, err := ratelimit.New(ratelimit.Config{Name: "ip", Limit: ratelimit.Limit{Requests: 600, Per: time.Minute}, Key: ratelimit.KeyByIP(), Logger: logger})
	if err != nil {
		return nil, err
	}
	tokens, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: "https://login.example.com/", Audience: []string{"api"}, Keys: set}},
		Logger:  logger,
	})
	if err != nil {
		return nil, err
	}
	// Per-device request signatures, for the routes that move money. The
	// master secret comes from your secret store; here it is fresh.
	master := make([]byte, 32)
	if _, err := rand.Read(master); err != nil {
		return nil, err
	}
	signed, err := signing.New(signing.Config{Keys: signing.DerivedKeys(master, []byte("chi-example")), Logger: logger})
	if err != nil {
		return nil, err
	}
	perUser, err := ratelimit.New(ratelimit.Config{
		Name: "user", Limit: ratelimit.Limit{Requests: 100, Per: time.Minute, Burst: 10},
		Key: func(r *http.Request) (string, error) {
			if c, ok := auth.ClaimsFrom(r.Context()); ok {
				return "sub:" + c.Subject, nil
			}
			return "", ratelimit.ErrNoKey
		},
		Logger: logger,
	})
	if err != nil {
		return nil, err
	}

	r := chi.NewRouter()
	r.Use(obs.Handler, perIP.Handler) // outermost: telemetry, then the IP limit
	r.Get("/health", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Group(func(r chi.Router) {
		r.Use(tokens.Handler, perUser.Handler, routeName)
		r.With(tokens.Require("orders:read")).Get("/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
			c, _ := auth.ClaimsFrom(r.Context())
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "order %s of %s\n", chi.URLParam(r, "id"), c.Subject) // #nosec G705 -- text/plain, never rendered as HTML
		})
		r.With(tokens.Require("payments"), signed.Handler).Post("/payments", func(w http.ResponseWriter, r *http.Request) {
			device, _ := signing.KeyIDFrom(r.Context())
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "payment signed by %s\n", device) // #nosec G705 -- text/plain, never rendered as HTML
		})
	})
	return &app{handler: r, tokens: tokens, priv: priv, master: master}, nil
}

// routeName gives telemetry chi's route pattern for its metrics.
func routeName(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if rc := chi.RouteContext(r.Context()); rc != nil {
			telemetry.SetRoute(r.Context(), rc.RoutePattern())
		}
	})
}

func (a *app) token(scope string) string {
	payload, _ := json.Marshal(map[string]any{"iss": "https://login.example.com/", "aud": "api", "sub": "user-1",
		"scope": scope, "iat": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix()})
	hdr := jws.NewHeaders()
	_ = hdr.Set("typ", "at+jwt")
	_ = hdr.Set("kid", "k")
	b, _ := jws.Sign(payload, jws.WithKey(jwa.EdDSA, a.priv, jws.WithProtectedHeaders(hdr)))
	return string(b)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	a, err := newApp(slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil))))
	if err != nil {
		log.Fatal(err)
	}
	defer a.tokens.Close()
	log.Fatal(serve.Run(*addr, a.handler, "curl -i -H 'Authorization: Bearer "+a.token("orders:read")+"' %s/orders/7"))
}
