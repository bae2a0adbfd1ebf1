// Command signing shows the signing package alone: an endpoint that only
// accepts requests signed by an enrolled device, fresh and never replayed.
//
//	go run ./examples/signing
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"

	"github.com/apiguard/apiguard/examples/internal/serve"
	"github.com/apiguard/apiguard/signing"
)

// master is the server's one secret; each device's secret is derived
// from it. A real service loads it from its secret store.
var (
	master = bytes.Repeat([]byte{0x42}, 32)
	salt   = []byte("example")
)

func newHandler(logger *slog.Logger, scheme string) (http.Handler, error) {
	v, err := signing.New(signing.Config{Keys: signing.DerivedKeys(master, salt), Scheme: scheme, Logger: logger})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /transfer", v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		device, _ := signing.KeyIDFrom(r.Context())
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s: %s\n", device, body)
	})))
	return mux, nil
}

// client returns an http.Client that signs as device, with the secret the
// enrolment service derived for it.
func client(device string) (*http.Client, error) {
	secret, err := signing.DeriveSecret(master, salt, device)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: signing.NewTransport(nil, signing.NewSigner(device, secret))}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	h, err := newHandler(slog.New(slog.NewJSONHandler(os.Stderr, nil)), "http")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve.Run(*addr, h,
		"curl -i -X POST --data '{\"amount\":1}' %s/transfer   # 401: unsigned; sign with signing.NewTransport"))
}
