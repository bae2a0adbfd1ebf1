package playintegrity_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/playintegrity"
)

// A captured standard token replayed with its request is refused: the
// verdict is single use.
func ExampleVerifier_VerifyStandard() {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	hash := playintegrity.RequestHash("POST", "/v1/transfer", "to=alice&amount=10", []byte("{}"))
	// A stand-in for Google's decodeIntegrityToken API.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verdict := attesttest.Verdict("com.example.shop", "", hash, now.Add(-time.Second).UnixMilli(), "cert-digest")
		_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": verdict})
	}))
	defer api.Close()
	play, _ := playintegrity.New(playintegrity.Config{
		Policy:     playintegrity.Policy{PackageName: "com.example.shop", CertificateDigests: []string{"cert-digest"}},
		APIBaseURL: api.URL, HTTPClient: api.Client(),
		Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler),
	})
	v, err := play.VerifyStandard(context.Background(), "token", hash)
	fmt.Println(v.Device == playintegrity.DeviceIntegrity, err)
	_, err = play.VerifyStandard(context.Background(), "token", hash) // replayed
	fmt.Println(errors.Is(err, playintegrity.ErrPolicy), err)
	// Output:
	// true <nil>
	// true attest: integrity verdict refused: token used before
}
