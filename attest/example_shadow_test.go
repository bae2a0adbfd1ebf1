package attest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/apiguard/apiguard/attest"
	"github.com/apiguard/apiguard/attest/appattest"
)

// In shadow mode a replayed assertion is decided as in enforce mode (the
// challenge is spent: deny) and logged as risk_denied with shadow=true,
// counted as would-deny by telemetry; the request still reaches the
// handler, with its Risk.
func ExampleConfig_shadow() {
	clock := now
	a, dev := setup(&clock)
	keep := func(_ []string, at slog.Attr) slog.Attr {
		switch at.Key {
		case "event", "reason", "shadow":
			return at
		}
		return slog.Attr{}
	}
	risk, _ := attest.New(attest.Config{
		AppAttest: a,
		Subject:   func(*http.Request) (string, error) { return "", nil },
		Shadow:    true,
		Now:       func() time.Time { return clock },
		Logger:    slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: keep})),
	})
	premium := risk.Require(attest.Thresholds{Monitor: 20, StepUp: 40, Deny: 70})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rk, _ := attest.RiskFrom(r.Context())
			fmt.Println("reached:", rk.Band)
		}))
	challenge, _, _ := a.IssueChallenge(context.Background(), dev.KeyID)
	assertion, _ := dev.Assert(appattest.ClientData("GET", "/premium", "", nil, challenge))
	for range 2 { // the second is a replay
		r := httptest.NewRequest("GET", "/premium", nil)
		r.Header.Set(appattest.HeaderKeyID, dev.KeyID)
		r.Header.Set(appattest.HeaderChallenge, challenge)
		r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(assertion))
		premium.ServeHTTP(httptest.NewRecorder(), r)
	}
	// Output:
	// reached: allow
	// event=risk_denied reason=attestation_failed shadow=true
	// reached: deny
}
