// Package attest weighs what Apple and Google say about the app and the
// device, and how the user behaves, into a risk decision that monitors or
// steps up before it blocks. The attestations are verified by its vendor
// packages — [github.com/apiguard/apiguard/attest/appattest] (Apple App
// Attest), [github.com/apiguard/apiguard/attest/playintegrity] (Google
// Play Integrity), [github.com/apiguard/apiguard/attest/appcheck]
// (Firebase App Check) — each usable alone; the behaviour signals are
// impossible travel, OS version, SIM swaps, key churn and assertion
// counter jumps.
//
//	aa, err := appattest.New(appattest.Config{AppIDs: []string{"ABCDE12345.com.example.shop"}})
//	risk, err := attest.New(attest.Config{
//		AppAttest: aa,
//		Subject: func(r *http.Request) (string, error) {
//			if c, ok := auth.ClaimsFrom(r.Context()); ok {
//				return c.Subject, nil
//			}
//			return "", nil // no token: assessed on its attestation alone
//		},
//		Locator: &attest.HeaderLocator{TrustedProxies: cdnPrefixes},
//	})
//	mux.Handle("POST /attest/challenge", aa.ChallengeHandler())
//	mux.Handle("POST /v1/premium", tokens.Handler(risk.Require(attest.Thresholds{Monitor: 20, StepUp: 50, Deny: 90})(premium)))
//	// in a handler: if r, ok := attest.RiskFrom(ctx); ok && r.Band == attest.BandMonitor { serve less }
//
// It goes after telemetry, the IP limiter and auth (the history is keyed
// by subject), before the handler. It reads the body whole (up to
// Config.MaxBodyBytes) to check what the evidence binds, and hands it on
// intact. [Verifier.Assess] is the decision without HTTP.
//
// Each reason adds its weight (see the Reason constants) to a score
// capped at 100; [Thresholds] map it to allow, monitor, step-up (401
// insufficient_user_authentication, RFC 9470, with an action: reattest,
// mfa or fresh_auth) or deny (403). Which signals fired goes to the log
// and to [RiskFrom], never to the client, so that an answer never tells
// an attacker what to evade.
//
// When a vendor or a store cannot be asked, the [OutagePolicy] decides:
// fail open with a vendor_outage penalty, as much as no evidence
// (default), or fail closed with 503 and Retry-After. Routes that must not
// serve an unverified device (a key store that is down cannot tell an
// attested key from a forged one) fail closed: Route.Outage with
// [Verifier.RequireRoute], or Config.Outage for every route. The store
// calls of one request share one deadline, Config.StoreTimeout.
//
// Events: risk_step_up, risk_denied, impossible_travel, and the
// providers' own. Every type here is safe for concurrent use by multiple
// goroutines.
package attest
