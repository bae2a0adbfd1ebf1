// Package appattest verifies Apple App Attest: attestations, which enrol
// an app instance's key ([Verifier.VerifyAttestation]), and assertions,
// which that key signs over each request ([Verifier.VerifyAssertion],
// [Verifier.Handler]). Receipts are verified by [ParseReceipt].
//
//	aa, err := appattest.New(appattest.Config{AppIDs: []string{"ABCDE12345.com.example.shop"}})
//	mux.Handle("POST /attest/challenge", ipLimiter.Handler(aa.ChallengeHandler()))
//	mux.Handle("POST /v1/transfer", aa.Handler(transfer)) // appattest.AssertionFrom(r.Context())
//
// To weigh assertions in a risk decision instead of refusing every
// request without one, set the Verifier as attest.Config.AppAttest.
//
// # Binding to the request
//
// Under the HTTP profile ([Verifier.Handler], and the risk assessment)
// an assertion signs [ClientData] of the request: the method, the path
// and the query exactly as sent, a digest of the body and the challenge.
// A proxy that rewrites any of them (?to=alice&amount=10 into
// ?to=mallory&amount=1000) makes the request fail. App versions that
// signed the first profile, which left the query out, are admitted only
// under Config.InsecureAllowLegacyClientData, for a phase-out.
//
// # Stores
//
// A request's store calls share one deadline, Config.StoreTimeout; each
// read-and-write is one atomic store step; store ids are namespaced by
// App ID and service. The default stores are bounded and in memory;
// redisstore implements [KeyStore] and [ChallengeStore] on Redis.
//
// # Device keys
//
// App Attest keys sign only assertions. [Verifier.EnrolHandler] enrols a
// second key, a Secure Enclave P-256 key that signs requests
// (ecdsa-p256-sha256, verified by signing), bound to the App Attest key
// by an assertion over [EnrolClientData]: a digest of the key and a
// challenge. It goes to the application's store under the App Attest
// key ID.
//
// Events: attestation_failed, attestation_legacy_binding.
//
// With Config.Shadow, [Verifier.Handler] decides and logs as it would
// enforce, but passes refused requests on (without an Assertion, with
// their whole body), counted as would-deny: see ops/RUNBOOKS.md.
//
// Every type here is safe for concurrent use by multiple goroutines.
package appattest
