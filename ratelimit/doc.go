// Package ratelimit limits requests with token buckets keyed by whatever
// identifies the caller (access-token subject, device, client address),
// with several limits at once, limits that change per key at run time,
// failure budgets that lock out guessing, the IETF RateLimit header
// fields, bounded memory, and a Redis backend so that several instances
// enforce one limit.
//
//	perIP, err := ratelimit.New(ratelimit.Config{
//		Name:  "ip",
//		Limit: ratelimit.Limit{Requests: 300, Per: time.Minute, Burst: 50},
//		Key:   ratelimit.KeyByIP(netip.MustParsePrefix("10.0.0.0/8")), // your load balancers
//	})
//	perUser, err := ratelimit.New(ratelimit.Config{
//		Name:  "user",
//		Limit: ratelimit.Limit{Requests: 100, Per: time.Minute, Burst: 20},
//		Key: func(r *http.Request) (string, error) {
//			if c, ok := auth.ClaimsFrom(r.Context()); ok {
//				return "sub:" + c.Subject, nil
//			}
//			return "", ratelimit.ErrNoKey
//		},
//	})
//	h := obs.Handler(perIP.Handler(tokens.Handler(perUser.Handler(mux))))
//
// # Order in the chain
//
// telemetry outermost; then a limiter keyed by client address, before the
// cryptographic checks, to shield them from floods; then auth and
// signing; then limiters keyed by subject or device, which read their
// results from the context (auth.ClaimsFrom, signing.KeyIDFrom). One
// Limiter can hold several limits ([Config.Rules]): they are consumed all
// or nothing, so a request rejected by one charges none.
//
// # Answers
//
// Rejections are 429 with Retry-After and the RateLimit-Policy and RateLimit
// fields of draft-ietf-httpapi-ratelimit-headers (-10 to -12), one member per
// policy (`"api";q=100;w=60`, `"api";r=0;t=12`), and a problem+json body whose
// violated-policies names the policy. Allowed responses carry the fields too,
// unless Config.QuietAllow; each limiter in a chain adds its own member (see
// Example (Chain)). A request without a key is rejected with 400 (fail
// closed). Every rejection is logged as event=rate_limited with the policy
// name, never the key. Shadow mode (the Shadow field of Config,
// FailureConfig and ConcurrencyConfig) decides, changes state and logs as
// enforce mode, events marked shadow=true, but never rejects.
//
// # Where each promise is kept
//
//   - Bounded memory, and no fresh bucket for a flood of new keys: [Store].
//   - Rules and limiters never share buckets: [NamespaceClaimer], [KeyJoin].
//   - Store outages: [StorePolicy]; readiness: [Limiter.Ready].
//   - Guessing, credential stuffing and lockouts: [FailureBudget].
//   - Requests in flight per key (slow endpoints, exports): [Concurrency],
//     in memory or in Redis with leases that expire when an instance dies.
//
// Limiter, FailureBudget and Concurrency are safe for concurrent use by
// multiple goroutines.
package ratelimit
