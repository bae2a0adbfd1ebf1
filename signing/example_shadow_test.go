package signing_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/signing"
)

// In shadow mode a replayed payment is decided and logged as a replay
// (shadow=true, counted as would-deny by telemetry), and still reaches
// the handler, with its body and without a verified key ID.
func ExampleConfig_shadow() {
	start := now.Add(-time.Minute)
	keep := func(_ []string, a slog.Attr) slog.Attr {
		switch a.Key {
		case "event", "reason", "shadow":
			return a
		}
		return slog.Attr{}
	}
	v, err := signing.New(signing.Config{
		Keys:        signing.DerivedKeys(master, salt),
		ReplayStore: signing.NewMemoryReplayStore(10_000, 5*time.Minute, func() time.Time { return start }),
		Shadow:      true,
		Now:         func() time.Time { return now },
		Logger:      slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: keep})),
	})
	if err != nil {
		panic(err)
	}
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, verified := signing.KeyIDFrom(r.Context())
		fmt.Printf("reached: %s, verified: %v\n", body, verified)
	}))
	payment := signedRequest(`{"amount":100}`)
	body, _ := io.ReadAll(payment.Body)
	for range 2 { // the capture is replayed
		r := payment.Clone(payment.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		deliver(h, r)
	}
	// Output:
	// reached: {"amount":100}, verified: true
	// event=replay reason=nonce_reused shadow=true
	// reached: {"amount":100}, verified: false
}
