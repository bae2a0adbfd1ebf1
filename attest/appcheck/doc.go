// Package appcheck verifies Firebase App Check tokens: RS256 JWTs of type
// JWT, issuer https://firebaseappcheck.googleapis.com/<project number>,
// audience containing projects/<project number>, signed by a key of the
// App Check key set (JWKS).
//
//	ac, err := appcheck.New(appcheck.Config{ProjectNumber: "123456789"})
//	defer ac.Close()
//	tok, err := ac.Verify(ctx, r.Header.Get(appcheck.Header))
//
// App Check vouches for the app, not the device, and binds nothing of
// the request: weighed in a risk decision (set the Verifier as
// attest.Config.AppCheck) it counts for less than device attestation.
//
// # The key set
//
// No flood of requests becomes a flood of fetches. The key set is
// fetched on first use, in the background, one fetch at a time and at
// most one per Config.MinRefresh (longer, with jitter, after failures),
// before the first load as after it. A request waits on a fetch at most
// Config.MaxWait. A set is refreshed in the background once older than
// its Cache-Control max-age (at most 6 hours), and is used for up to 24
// hours after its fetch while refreshes fail. A token whose kid the set
// lacks triggers a refresh when one is allowed; while one is due, it is
// answered as a vendor outage ([UnavailableError], whose RetryAfter is
// when the next fetch will be), never as an invalid token, so that a
// valid token is not refused because the verifier has not caught up with
// a rotation.
//
// # Limited-use tokens
//
// A token the app got with getLimitedUseToken is meant for one call.
// [Verifier.VerifyLimitedUse] (or Verify with Config.LimitedUse, or an
// attest.Route with LimitedUse for the routes that ask it) records its
// jti in Config.Replay until its expiry plus 30s of skew, under a digest
// of project and jti, and refuses a second use ([ErrTokenReplayed]) and a
// token without a jti ([ErrToken]). Instances share one store
// (redisstore.ReplayStore); the in-memory default holds one process's.
// A store that does not answer refuses the token ([ErrStore]; on an
// attest route, an outage, failing closed unless the route says
// otherwise). An optional [Consumer] also consumes the token at
// Firebase, so that other backends refuse it too.
//
// Events: attestation_failed (reason token, replay, store or vendor),
// appcheck_jwks_error, appcheck_jwks_refresh.
package appcheck
