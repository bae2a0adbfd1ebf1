// Command ratelimit shows the ratelimit package alone: a limit per client
// address, and a failure budget on a login.
//
//	go run ./examples/ratelimit
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/examples/internal/serve"
	"github.com/apiguard/apiguard/ratelimit"
)

func newHandler(logger *slog.Logger) (http.Handler, error) {
	perIP, err := ratelimit.New(ratelimit.Config{
		Name:   "ip",
		Limit:  ratelimit.Limit{Requests: 60, Per: time.Minute, Burst: 5},
		Key:    ratelimit.KeyByIP(), // add your proxies' prefixes when behind one
		Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	// Failures per account and client address: an attacker who fails on
	// purpose locks out its own address, not the account's owner.
	account := func(r *http.Request) (string, error) { return "acct:" + r.FormValue("user"), nil }
	logins, err := ratelimit.NewFailureBudget(ratelimit.FailureConfig{
		Name:   "login",
		Key:    ratelimit.KeyJoin(account, ratelimit.KeyByIP()),
		Budget: 3, Per: 15 * time.Minute, Lockout: time.Minute,
		Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /catalogue", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("items\n")) })
	mux.Handle("POST /login", logins.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") != "open sesame" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("welcome\n"))
	})))
	return perIP.Handler(mux), nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	h, err := newHandler(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve.Run(*addr, h,
		"for i in $(seq 8); do curl -s -o /dev/null -w '%%{http_code} ' %s/catalogue; done   # 429 after the burst",
		"curl -i -d user=alice -d password=guess %s/login   # the third failure locks alice out from this address"))
}
