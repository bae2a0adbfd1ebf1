// Package auth verifies OAuth 2.0 access tokens for APIs that mobile apps
// call: JWT access tokens (RFC 9068) checked against the issuer's JWKS,
// or opaque tokens checked by introspection (RFC 7662),
// with audience, short lifetimes and scopes; DPoP sender-constrained
// tokens (RFC 9449); step-up challenges (RFC 9470); and PKCE helpers
// (RFC 7636) for the authorization server side.
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
// Rejections match the sentinels (errors.Is) and are answered per RFC 6750
// (400 invalid_request, 401 invalid_token, 403 insufficient_scope, 401
// insufficient_user_authentication for step-up) with a WWW-Authenticate
// challenge and a problem+json body fixed per kind: a client learns
// "invalid token", never which check failed. The log gets the reason
// (event=auth_failed) and an error naming the setting an operator can
// fix; never the token. When keys or an introspection endpoint cannot
// settle a token the answer is 503 with Retry-After, never 401.
//
// # Keys, opaque tokens, readiness
//
// A remote JWKS (configured, or discovered from an issuer given by its URL
// alone) is fetched in the background on one schedule per issuer whatever
// the traffic, and a rotation never gets valid tokens refused: see
// [Issuer]. Opaque tokens are checked by RFC 7662 introspection, held to
// the rules for JWTs and cached by hash: see [Introspection]. Revoked
// tokens are refused on every request, cached ones included, through
// Config.Revocations. [Verifier.Ready] answers a readiness probe naming
// the issuer and the cause; [Verifier.WaitReady] waits for it at start-up;
// [Verifier.KeySetAge] feeds gauges. With Config.Resource,
// [Verifier.MetadataHandler] serves RFC 9728 metadata.
//
// # DPoP and shadow mode
//
// With Config.DPoP set, tokens bound to a key (cnf.jkt) need the DPoP scheme
// and a proof that passes every check of RFC 9449 §4.3: see [DPoPMode].
// With Config.Shadow a Verifier decides and logs as it would enforce, but
// passes refused requests on (without claims), counted as would-deny: see
// the rollout recipe in ops/RUNBOOKS.md.
//
// A Verifier is safe for concurrent use by multiple goroutines.
package auth
