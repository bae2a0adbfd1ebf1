// Command attest shows the attest package alone: App Attest enrolment and
// assertions, weighed into a risk decision on a premium endpoint.
//
// No iPhone is at hand, so the attestation root is a test CA of
// attest/attesttest; a real service leaves AppAttestConfig.Roots unset
// (Apple's root is embedded).
//
//	go run ./examples/attest
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/apiguard/apiguard/attest"
	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/examples/internal/serve"
)

const appID = "ABCDE12345.com.example.shop"

func newHandler(ca *attesttest.CA, logger *slog.Logger) (http.Handler, *appattest.Verifier, error) {
	a, err := appattest.New(appattest.Config{AppIDs: []string{appID}, Roots: ca.Roots(), Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	risk, err := attest.New(attest.Config{
		AppAttest: a,
		Subject:   func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil }, // use auth.ClaimsFrom in a real API
		Logger:    logger,
	})
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /attest/challenge", a.ChallengeHandler())
	mux.HandleFunc("POST /attest/enroll", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ KeyID, Attestation, Challenge string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		obj, err := base64.StdEncoding.DecodeString(in.Attestation)
		if err != nil || a.ConsumeChallenge(r.Context(), in.Challenge, "") != nil {
			http.Error(w, "bad attestation", http.StatusUnauthorized)
			return
		}
		if _, err := a.VerifyAttestation(r.Context(), in.KeyID, obj, appattest.ClientDataHash([]byte(in.Challenge))); err != nil {
			http.Error(w, "bad attestation", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	mux.Handle("POST /premium", risk.Require(attest.Thresholds{Monitor: 20, StepUp: 50, Deny: 90})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rk, _ := attest.RiskFrom(r.Context())
			_ = json.NewEncoder(w).Encode(map[string]any{"premium": true, "risk": rk.Score})
		})))
	return mux, a, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	ca, err := attesttest.NewCA(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	h, _, err := newHandler(ca, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve.Run(*addr, h,
		"curl -i -X POST %s/attest/challenge",
		"curl -i -X POST -H 'X-User: u1' %s/premium   # no attestation: risk 40, served in the monitor band"))
}
