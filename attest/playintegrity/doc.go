// Package playintegrity verifies Google Play Integrity tokens: classic
// ones locally ([Verifier.VerifyClassic]: JWE A256KW/A256GCM wrapping JWS
// ES256, algorithms pinned, two keys for rotation), standard ones through
// Google's decodeIntegrityToken API ([Verifier.VerifyStandard]).
//
//	play, err := playintegrity.New(playintegrity.Config{
//		Policy:     playintegrity.Policy{PackageName: "com.example.shop", CertificateDigests: digests},
//		HTTPClient: googleOAuthClient, // a service account's oauth2 client
//	})
//	verdict, err := play.VerifyStandard(ctx, token, playintegrity.RequestHash("POST", "/v1/transfer", r.URL.RawQuery, body))
//
// To weigh verdicts in a risk decision, set the Verifier as
// attest.Config.PlayIntegrity: a request then carries its standard token
// in the [Header], over [RequestHash] of the request.
//
// A [Policy] checks the package, the nonce or request hash, freshness,
// testing responses, app recognition, signing certificates, version,
// device verdict and licensing. Either kind of token is single use: the
// nonce, or a digest of the standard token's verdict (its requestHash and
// timestamp, whatever the token's encoding), is recorded until the
// verdict is stale.
//
// No flood of requests becomes a flood of calls to Google: API calls are
// capped (Config.MaxConcurrentCalls), shared by concurrent requests with
// one token, bounded by Config.APITimeout, and backed off with jitter
// after a failure, then probed one at a time. A request turned away gets
// an [UnavailableError] whose RetryAfter is when the next call will be
// made.
//
// Events: attestation_failed, attestation_legacy_binding. A Verifier is
// safe for concurrent use by multiple goroutines.
package playintegrity
