// Package signing verifies that each critical request was signed by a key
// bound to one device, is fresh, has never been seen before, and carries
// the body it claims: RFC 9421 HTTP Message Signatures with per-device
// keys, RFC 9530 Content-Digest, and a replay defence that holds under
// eviction and restarts.
//
//	v, err := signing.New(signing.Config{
//		Keys: signing.DerivedKeys(masterSecret, []byte("shop-api")), // one master secret, a secret per device
//	})
//	if err != nil { ... }
//	mux.Handle("POST /v1/pay", v.Handler(pay))
//	// in a handler: keyID, _ := signing.KeyIDFrom(r.Context())
//
// Clients sign with [Signer] (or [NewTransport]) in Go, or with any RFC 9421
// library: the default profile asks for @method and @target-uri,
// content-digest when there is a body, authorization when that header is
// present, and the parameters created, keyid and nonce.
//
// # Device keys
//
// An HMAC secret is only as safe as the app binary. A device key is
// safer: a P-256 key made in the Secure Enclave or Android Keystore
// (ecdsa-p256-sha256, the signature r || s, not ASN.1), or an Ed25519
// key. The enrolment service verifies the platform's evidence for it
// (attest/androidkey on Android) and stores its public key as a [Key];
// the Verifier's KeyStore returns it. The key's Algorithm decides how a
// signature is checked: a signature's alg must match it, and an HMAC
// secret and a public key are never used in each other's place.
//
// # Place in the chain
//
// telemetry outermost, then an IP-keyed rate limiter (verification costs a
// MAC and a body read), then auth and signing, then limiters keyed by
// subject or device ([KeyIDFrom]).
//
// # Order of checks
//
// 1. Signature-Input and Signature are parsed as RFC 8941 structured
// fields (a repeated label is refused) and checked against the endpoint's
// [Profile]; a signature covering more than [MaxComponents] components is
// refused as malformed, so the work done before the MAC stays small. 2.
// The signature base is built (RFC 9421 §2.5): a covered component the
// request lacks is refused as malformed here, before any key is looked
// up. 3. The key is looked up. 4. The MAC or signature is verified in
// constant time; then the body is read, up to Config.MaxBodyBytes, and
// checked against Content-Digest, and handed on intact ([Verifier.Handler]
// reads it into a recycled buffer, which next reads as r.Body until it
// returns, as with any net/http body). 5. Only then freshness and replay:
// created at most Config.FutureSkew ahead and less than Config.Window
// behind, expires not passed, created not older than the newest accepted
// created of the key minus Config.ReorderSlack, and the nonce single use.
// Unauthenticated traffic never reaches the replay store.
//
// # Key existence
//
// Whether a key ID exists never shows in the answer: everything that can
// be checked without the key is checked before it is looked up, and an
// unknown key, a revoked key, a key of another algorithm and a signature
// that does not verify all get the same 401, headers and body. The log
// keeps the reason (unknown_key, revoked_key, algorithm, signature).
//
// # Replay store and failure policy
//
// The default [MemoryReplayStore] is bounded and keeps nonces per key; an
// eviction or a restart never reopens a replay (see its doc for the floors
// and what they cost a client). Several instances share redisstore's store.
// When a key store or replay store cannot answer, the request is refused
// with 503 and Retry-After (fail closed).
//
// # Events
//
// Mismatches are logged as event=signature_mismatch with the key ID, a
// device model (Config.DeviceModelHeader) and, through the request
// context, the correlation ID, so that emulator farms show up as
// clusters, and with the scheme and authority the server put in
// @scheme, @authority and @target-uri (Config.Scheme and
// Config.Authority), the usual cause when every client mismatches;
// replays as event=replay; everything else as
// event=signature_rejected with a reason. Secrets, signatures and nonces
// are never logged.
//
// # Shadow mode
//
// With Config.Shadow a Verifier decides and logs as it would enforce, but
// passes refused requests on (without a Result, with their whole body),
// counted as would-deny: see the rollout recipe in ops/RUNBOOKS.md.
//
// A Verifier is safe for concurrent use by multiple goroutines.
package signing
