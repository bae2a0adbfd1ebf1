// Package auth verifies OAuth 2.0 access tokens for APIs that mobile apps
// call: JWT access tokens (RFC 9068) checked against the issuer's JWKS,
// or opaque tokens checked by introspection (RFC 7662),
// with audience, short lifetimes and scopes; DPoP sender-constrained
// tokens (RFC 9449); step-up challenges (RFC 9470); and PKCE helpers
// (RFC 7636) for the authorization server side. An issuer given by its
// URL alone has its JWKS discovered (see [Issuer]); with Config.Resource,
// [Verifier.MetadataHandler] serves RFC 9728 metadata.
//
//	v, err := auth.New(auth.Config{Issuers: []auth.Issuer{{
//		Issuer:   "https://login.example.com/",
//		Audience: []string{"https://api.example.com"},
//		JWKSURL:  "https://login.example.com/.well-known/jwks.json",
//	}}})
//	if err != nil { ... }
//	defer v.Close()
//	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	err = v.WaitReady(ctx) // a JWKS URL that answers 404 stops start-up here
//	cancel()
//	if err != nil { log.Fatal(err) }
//	mux.Handle("GET /orders", v.Require("orders:read")(orders))
//	mux.Handle("POST /payouts", v.RequireWith(auth.Requirement{
//		Scopes: []string{"payouts"}, ACRValues: []string{"urn:example:mfa"}, MaxAge: 5 * time.Minute,
//	})(payouts))
//	// in a handler: claims, ok := auth.ClaimsFrom(r.Context())
//
// # Place in the chain
//
// telemetry outermost, then a rate limiter keyed by client IP (it shields
// the signature checks from floods), then auth, then limiters keyed by
// subject or device, which read [ClaimsFrom].
//
// # What is checked
//
// Before any parsing, the token's size (Config.MaxTokenSize) and shape
// (three parts). Then: alg from the issuer's allow-list only (never none,
// never HMAC); jku, x5u and crit refused; typ at+jwt (or, with
// Issuer.InsecureAllowJWTType, JWT without ID-token claims); iss exactly
// one of the configured issuers, chosen before any key lookup; the key by
// kid within that issuer's set, usable only for algorithms that fit its
// type; the signature; exp (required), nbf and iat with Config.ClockSkew;
// exp - iat within Config.MaxTokenLifetime; aud containing one of the
// issuer's audiences.
//
// # Errors
//
// Rejections match the sentinels (errors.Is) and are answered per RFC 6750:
// 400 invalid_request, 401 invalid_token, 403 insufficient_scope, and 401
// insufficient_user_authentication for step-up, with a WWW-Authenticate
// challenge and a problem+json body whose text is fixed per kind: a client
// learns "invalid token", never which check failed. The log gets the
// reason (event=auth_failed) and the error, which names the setting behind
// a refusal an operator can fix (Issuer.InsecureAllowJWTType for typ,
// Config.MaxTokenLifetime) and, for an unknown issuer, the token's iss
// (capped, control characters removed) beside the configured ones; never
// the token. When an issuer's keys cannot settle a token (JWKS down and
// nothing fresher than Config.MaxKeyStaleness cached, or a kid the key set
// lacks, or its key there failing the signature, while a refresh is due)
// the answer is 503 with Retry-After, never 401.
//
// # Keys
//
// A remote JWKS is fetched in the background on one schedule per issuer
// whatever the traffic, and a key rotation never gets valid tokens refused:
// see [Issuer] for the schedule and the rules. [Verifier.Close] stops the
// background work.
//
// # Readiness
//
// [Verifier.Ready] answers a readiness probe: nil while every key set is
// loaded and within MaxKeyStaleness (and an introspection endpoint has
// answered, and not failed for longer than its CacheTTL), else an error naming the issuer and the cause (the JWKS's or
// endpoint's status, the dial error). Probes ask for fetches as
// requests do, on the same schedule, so they never add any.
// [Verifier.WaitReady] waits for it at start-up, bounded by its context.
// [Verifier.KeySetAge] gives the age of the oldest key set and the last
// refresh error, for gauges and alerts.
//
// # Opaque tokens
//
// An issuer with an [Introspection] endpoint checks the tokens that are
// not JWTs (at most one issuer may have one: an opaque token names no
// issuer), or all of its tokens with Introspection.JWTs. The answer is
// held to the rules for JWTs (active, exp, iss, aud, no refresh token)
// and yields the same [Claims], scopes, step-up and DPoP binding
// (cnf.jkt) included. Answers are cached by the token's SHA-256 (never
// the token) until its exp or Introspection.CacheTTL (5 minutes: the
// longest a revoked token is still accepted), inactive ones for 10s;
// concurrent requests with a new token make one call, and with a shared
// Introspection.Cache (redisstore) one call across instances. An endpoint
// that gives no answer means 503 with Retry-After and back-off, as for
// key sets, never 401; [Verifier.Ready] names it.
//
// # DPoP
//
// With Config.DPoP set, tokens bound to a key (cnf.jkt) need the DPoP scheme
// and a proof that passes every check of RFC 9449 §4.3: see [DPoPMode].
//
// # Shadow mode
//
// With Config.Shadow a Verifier decides and logs as it would enforce, but
// passes refused requests on (without claims), counted as would-deny: see
// the rollout recipe in ops/RUNBOOKS.md.
//
// A Verifier is safe for concurrent use by multiple goroutines.
package auth
