package attest_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/apiguard/apiguard/attest"
	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// setup enrols one device of the app and returns the verifier and device.
func setup(clock *time.Time) (*appattest.Verifier, *attesttest.Device) {
	ca, _ := attesttest.NewCA(now.Add(-time.Hour), now.Add(24*time.Hour)) // a test root: no real device here
	a, err := appattest.New(appattest.Config{
		AppIDs: []string{"ABCDE12345.com.example.shop"},
		Roots:  ca.Roots(),
		Now:    func() time.Time { return *clock },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	dev, _ := attesttest.NewDevice("ABCDE12345.com.example.shop")
	challenge, _, _ := a.IssueChallenge(context.Background(), "")
	cdh := appattest.ClientDataHash([]byte(challenge))
	obj, _ := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	if _, err := a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh); err != nil {
		panic(err)
	}
	return a, dev
}

// A session is used from Paris, then from Sydney an hour later: the
// premium route steps up to MFA. The answer names the action, not the
// signal that fired (impossible_travel is in the log).
func ExampleVerifier_Require_impossibleTravel() {
	clock := now
	a, dev := setup(&clock)
	risk, _ := attest.New(attest.Config{
		AppAttest: a,
		Subject:   func(r *http.Request) (string, error) { return "user-42", nil },
		Locator:   &attest.HeaderLocator{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		StepUpACR: []string{"urn:example:mfa"},
		Now:       func() time.Time { return clock },
		Logger:    slog.New(slog.DiscardHandler),
	})
	premium := risk.Require(attest.Thresholds{Monitor: 20, StepUp: 50, Deny: 90})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "premium content") }))

	call := func(lat, lon string) *httptest.ResponseRecorder {
		challenge, _, _ := a.IssueChallenge(context.Background(), dev.KeyID)
		assertion, _ := dev.Assert(appattest.ClientData("GET", "/premium", "", nil, challenge))
		r := httptest.NewRequest("GET", "/premium", nil)
		r.RemoteAddr = "10.0.0.7:443" // the CDN, which adds the geo headers
		r.Header.Set("X-Geo-Latitude", lat)
		r.Header.Set("X-Geo-Longitude", lon)
		r.Header.Set(appattest.HeaderKeyID, dev.KeyID)
		r.Header.Set(appattest.HeaderChallenge, challenge)
		r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(assertion))
		rec := httptest.NewRecorder()
		premium.ServeHTTP(rec, r)
		return rec
	}
	rec := call("48.8566", "2.3522") // Paris
	fmt.Println(rec.Code, rec.Body.String())
	clock = clock.Add(time.Hour)
	rec = call("-33.8688", "151.2093") // Sydney, an hour later
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	fmt.Println(rec.Body.String())
	// Output:
	// 200 premium content
	// 401 Bearer error="insufficient_user_authentication", acr_values="urn:example:mfa"
	// {"action":"mfa","detail":"This request needs a stronger proof of the app, the device or the user.","status":401,"title":"Additional verification required","type":"urn:apiguard:problem:risk-step-up"}
}

// A caller outside net/http (here, a message on a WebSocket) fills in the
// Evidence itself: the app signs ClientData of the message as it would of
// a request, and Assess decides on it.
func ExampleVerifier_Assess() {
	clock := now
	a, dev := setup(&clock)
	risk, _ := attest.New(attest.Config{
		AppAttest: a,
		Subject:   func(*http.Request) (string, error) { return "", nil }, // unused by Assess
		Now:       func() time.Time { return clock },
		Logger:    slog.New(slog.DiscardHandler),
	})
	th := attest.Thresholds{Monitor: 20, StepUp: 50, Deny: 90}
	msg := []byte(`{"op":"transfer","amount":10}`)
	challenge, _, _ := a.IssueChallenge(context.Background(), dev.KeyID)
	assertion, _ := dev.Assert(appattest.ClientData("WS", "/v1/stream", "", msg, challenge))
	ev := attest.Evidence{
		Method: "WS", Path: "/v1/stream", Body: msg, Subject: "user-42",
		KeyID: dev.KeyID, Challenge: challenge, Assertion: base64.StdEncoding.EncodeToString(assertion),
	}
	r, err := risk.Assess(context.Background(), ev, th)
	fmt.Println(r.Band, r.Provider, err)
	r, err = risk.Assess(context.Background(), ev, th) // replayed: the challenge is spent
	fmt.Println(r.Band, r.Reasons, err)
	// Output:
	// allow app_attest <nil>
	// step_up [attestation_failed] <nil>
}
