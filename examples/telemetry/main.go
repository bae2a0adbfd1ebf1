// Command telemetry shows the telemetry package alone: correlation IDs,
// the slog handler, client reports.
//
//	go run ./examples/telemetry
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"

	"github.com/apiguard/apiguard/examples/internal/serve"
	"github.com/apiguard/apiguard/telemetry"
)

func newHandler(out *slog.Logger) (http.Handler, error) {
	obs, err := telemetry.New(telemetry.Config{Logger: out})
	if err != nil {
		return nil, err
	}
	logger := obs.Logger() // out, with IDs on request records and events counted
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "hello") // carries correlation_id and trace_id
		id, _ := telemetry.IDFrom(r.Context())
		_, _ = w.Write([]byte("hello, " + id + "\n"))
	})
	mux.Handle("POST /reports", obs.ReportHandler())
	return obs.Handler(mux), nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	h, err := newHandler(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve.Run(*addr, h,
		"curl -i -H 'X-Request-ID: app-1' %s/hello",
		`curl -i -H 'Content-Type: application/reports+json' --data '[{"type":"pinning-failure","age":0,"url":"https://api.example.com/","user_agent":"curl","body":{}}]' %s/reports`))
}
