// Package attest verifies what Apple and Google say about the app and the
// device — Apple App Attest, Google Play Integrity, Firebase App Check —
// binds it to requests, and combines it with behaviour signals (impossible
// travel, OS version, SIM swaps, key churn, assertion counter anomalies)
// into a risk decision that monitors or steps up before it blocks.
//
//	appAttest, err := attest.NewAppAttest(attest.AppAttestConfig{
//		AppIDs: []string{"ABCDE12345.com.example.shop"},
//	})
//	risk, err := attest.New(attest.Config{
//		AppAttest: appAttest,
//		Subject: func(r *http.Request) (string, error) {
//			c, ok := auth.ClaimsFrom(r.Context())
//			if !ok {
//				return "", nil // no token: assessed on its attestation alone
//			}
//			return c.Subject, nil
//		},
//		Locator: &attest.HeaderLocator{TrustedProxies: cdnPrefixes},
//	})
//	mux.Handle("POST /attest/challenge", appAttest.ChallengeHandler())
//	mux.Handle("POST /v1/premium", tokens.Handler(risk.Require(attest.Thresholds{Monitor: 20, StepUp: 50, Deny: 90})(premium)))
//	// in a handler: if r, ok := attest.RiskFrom(ctx); ok && r.Band == attest.BandMonitor { serve less }
//
// # Place in the chain
//
// After telemetry, the IP limiter and auth (the risk history is keyed by
// subject), before the handler. It reads the body whole (up to
// Config.MaxBodyBytes, 1 MiB by default; a larger one is 413) to bind
// assertions to it, and hands it on intact. Rejections go to
// Config.ErrorHandler, problem+json by default ([Verifier.WriteError]).
// [Verifier.Assess] is the same decision without HTTP, on the
// [Evidence] that [Verifier.EvidenceFrom] gathers from a request.
//
// # App Attest
//
// [AppAttest.VerifyAttestation] decodes the attestation with strict CBOR
// (size caps, no duplicate or unknown keys), checks fmt apple-appattest,
// verifies the x5c chain to the pinned Apple App Attestation Root CA at
// the injected time with an explicit usage policy (leaves issued since
// January 2026 carry an Apple-specific extended key usage that x509's
// default refuses), checks the nonce extension against
// SHA-256(authData ‖ clientDataHash), the key ID against SHA-256 of the
// public key and the credential ID, the rpIdHash against the App IDs, a
// counter of 0 and the AAGUID against the allowed environments, keeps the
// OS version as a signal, and enrols the key. Authenticator data is read by
// fixed offsets; trailing extensions (iOS and macOS 27) are tolerated.
// [AppAttest.VerifyAssertion] checks the signature over
// SHA-256(authData ‖ SHA-256(clientData)), the rpIdHash and a counter
// greater than the stored one, stored by compare-and-swap; unknown keys are
// never enrolled implicitly. Challenges are single use, with a TTL, bound
// to a key. [ParseReceipt] verifies receipts to Apple Root CA - G3.
//
// # Binding to the request
//
// Under the HTTP profile ([AppAttest.Handler] and the risk assessment) an
// assertion signs [ClientData] of the request: the method, the path and
// the query exactly as sent, a digest of the body and the challenge; a
// standard Play Integrity token carries [RequestHash], the digest of the
// same client data without a challenge. A proxy that rewrites any of them
// (?to=alice&amount=10 into ?to=mallory&amount=1000) makes the request
// fail. App versions that signed the first profile, which left the query
// out, are admitted only under AppAttestConfig.InsecureAllowLegacyClientData
// and PlayIntegrityConfig.InsecureAllowLegacyRequestHash, for a phase-out.
//
// # Play Integrity and App Check
//
// Classic Play Integrity tokens are decrypted and verified locally (JWE
// A256KW/A256GCM wrapping JWS ES256, algorithms pinned, two keys for
// rotation); standard ones go through Google's decodeIntegrityToken API.
// An [IntegrityPolicy] checks the package, nonce or request hash (either
// kind of token is single use: the nonce, or a digest of the standard
// token's verdict, its requestHash and timestamp, whatever the token's
// encoding, is recorded until the verdict is stale), freshness, testing
// responses, app recognition, signing certificates, version, device
// verdict and licensing. App Check tokens
// are RS256 JWTs checked against the App Check JWKS.
//
// # Calls to vendors
//
// No flood of requests becomes a flood of calls to Google. The App Check
// key set is fetched in the background, one fetch at a time and at most
// one per AppCheckConfig.MinRefresh in every state (before the first load
// as after it), backed off with jitter after failures; a request waits on
// a fetch at most AppCheckConfig.MaxWait. Play Integrity API calls are
// capped (PlayIntegrityConfig.MaxConcurrentCalls), shared by concurrent
// requests with one token, bounded by APITimeout, and backed off with
// jitter after a failure, then probed one at a time. A request turned away
// gets an [UnavailableError] whose RetryAfter is when the next call will
// be made: it is the Retry-After of a 503 on a route that fails closed.
//
// # Risk
//
// Each reason adds a documented weight (see the Reason constants) to a
// score capped at 100; [Thresholds] map it to allow, monitor, step-up (401
// insufficient_user_authentication with acr_values and max_age, RFC 9470,
// and a problem+json body with a generic detail and an action: reattest,
// mfa or fresh_auth) or deny (403). Which signals fired goes to the log
// and to [RiskFrom], never to the client (Config.InsecureExposeReasons
// opts in), so that an answer never tells an attacker what to evade.
// Config.MonitorOnly assesses without rejecting, for rollout.
//
// When a vendor or a store cannot be asked, the evidence cannot be
// checked, and the outage policy decides: fail open with a vendor_outage
// penalty, as much as no evidence (default), or fail closed with 503 and
// Retry-After. While the key store is down, failing open admits (with the
// penalty) an assertion from a key that was never attested, so routes that
// must not serve an unverified device fail closed: one line,
// Route.Outage = OutageFailClosed with [Verifier.RequireRoute], or
// Config.Outage for every route.
//
// The store calls of one request (key, counter, challenge, single use of
// a token, history) share one deadline, Config.StoreTimeout, so a slow
// store costs a request one timeout, not one per call. Each decision that
// reads and writes is one atomic store step (counter compare-and-swap,
// challenge take, first enrolment, history swap, key count), and store ids
// are namespaced by app and service (AppAttestConfig.Namespace,
// Config.Namespace).
//
// Events: attestation_failed, attestation_legacy_binding, risk_step_up,
// risk_denied, impossible_travel, appcheck_jwks_error,
// appcheck_jwks_refresh.
//
// Every type here is safe for concurrent use by multiple goroutines.
package attest
