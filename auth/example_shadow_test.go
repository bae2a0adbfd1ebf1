package auth_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// In shadow mode a forged token is decided and logged as a refusal
// (shadow=true, counted as would-deny by telemetry), and the request
// still reaches the handler, without claims.
func ExampleConfig_shadow() {
	pub, _ := jwk.FromRaw(issuerKey.Public())
	_ = pub.Set(jwk.KeyIDKey, "2026-03")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	keep := func(_ []string, a slog.Attr) slog.Attr {
		switch a.Key {
		case "event", "reason", "shadow":
			return a
		}
		return slog.Attr{}
	}
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: "https://login.example.com/", Audience: []string{"https://api.example.com"}, Keys: set}},
		Shadow:  true,
		Now:     func() time.Time { return now },
		Logger:  slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: keep})),
	})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := auth.ClaimsFrom(r.Context())
		fmt.Println("reached, claims:", ok)
	}))
	tok := mint(nil)
	rec := get(h, tok[:len(tok)-4]+"AAAA") // signature tampered
	fmt.Println(rec.Code)
	// Output:
	// event=auth_failed reason=signature shadow=true
	// reached, claims: false
	// 200
}
