// Package attest weighs what Apple and Google say about the app and the
// device, and how the user behaves (impossible travel, OS version, SIM
// swaps, key churn, assertion counter jumps), into a risk decision that
// monitors or steps up before it blocks. Its vendor packages verify the
// attestations, each usable alone: attest/appattest (Apple App Attest),
// attest/playintegrity (Google Play Integrity), attest/appcheck (Firebase
// App Check).
//
//	aa, err := appattest.New(appattest.Config{AppIDs: []string{"ABCDE12345.com.example.shop"}})
//	risk, err := attest.New(attest.Config{AppAttest: aa,
//		Subject: func(r *http.Request) (string, error) {
//			if c, ok := auth.ClaimsFrom(r.Context()); ok {
//				return c.Subject, nil
//			}
//			return "", nil // no token: assessed on its attestation alone
//		},
//		Locator: &attest.HeaderLocator{TrustedProxies: cdnPrefixes}})
//	mux.Handle("POST /attest/challenge", aa.ChallengeHandler())
//	mux.Handle("POST /v1/premium", tokens.Handler(risk.Require(attest.Thresholds{Monitor: 20, StepUp: 50, Deny: 90})(premium)))
//
// It goes after telemetry, the IP limiter and auth (the history is keyed
// by subject). Each reason adds its weight (the Reason constants) to a
// score capped at 100; [Thresholds] map it to allow, monitor ([RiskFrom]:
// serve less), step-up (401, RFC 9470, with an action: reattest, mfa or
// fresh_auth) or deny (403). The signals that fired go to the log and
// [RiskFrom], never to the client, which would learn what to evade.
//
// When a vendor or a store cannot be asked, the [OutagePolicy] decides:
// fail open with a penalty as large as no evidence (default), or fail
// closed with 503. A key store that is down cannot tell an attested key
// from a forged one: routes that must not serve an unverified device fail
// closed ([Route].Outage, or Config.Outage for all). A route with
// [Route].LimitedUse uses each App Check token once, and fails closed by
// default.
//
// Events: risk_step_up, risk_denied, impossible_travel,
// attestation_failed (a body that cannot be read whole),
// attestation_unavailable (a fail-closed outage), and the vendors'.
//
// With Config.Shadow (appattest.Config.Shadow for its Handler) every
// refusal is decided and logged as in enforce mode, with shadow=true, and
// the request is passed on, counted as would-deny: see the rollout recipe
// in ops/RUNBOOKS.md.
//
// Every type here is safe for concurrent use by multiple goroutines.
package attest
