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
// # Buckets and memory
//
// The default store keeps golang.org/x/time/rate limiters, made once and
// shared by every Handler wrap, in a bounded structure of Config.MaxKeys
// buckets keyed by a per-process seeded hash (raw keys are never stored).
// Only buckets that have refilled completely are evicted, so a flood of
// new keys cannot hand an attacker a fresh bucket; when every bucket is
// still refilling, new keys follow Config.Overflow (reject, or share one
// overflow bucket). A shared Store (redisstore's GCRA store) receives keys
// as HMACs under Config.KeySecret.
//
// # Answers
//
// Rejections are 429 with Retry-After (whole seconds, rounded up) and the
// RateLimit-Policy and RateLimit fields of draft-ietf-httpapi-ratelimit-headers
// (`"api";q=100;w=60` and `"api";r=0;t=12`), and a problem+json body of
// type quota-exceeded with violated-policies. Allowed responses carry the
// fields too, unless Config.QuietAllow. A request without a key is
// rejected with 400 (fail closed) unless Config.InsecureAllowNoKey. Every
// rejection is logged as event=rate_limited with the policy name, never
// the key. Config.Shadow decides and logs but never rejects.
//
// # Store outages
//
// A shared store that fails or exceeds Config.StoreTimeout is handled by
// Config.StorePolicy: FallbackLocal (default: a local in-memory limiter,
// per instance, until the store answers), FailOpen, or FailClosed (503).
// Each failure is logged as event=ratelimit_store_error.
//
// # Failure budgets
//
// [FailureBudget] counts only failures (401 and 403 from the wrapped
// handler, or explicit [FailureBudget.Fail] calls) per key, and locks the
// key out with growing back-off once its budget is spent
// (event=failure_budget_exhausted).
//
// Limiter and FailureBudget are safe for concurrent use by multiple
// goroutines.
package ratelimit
