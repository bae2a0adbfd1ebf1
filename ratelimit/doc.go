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
// # Namespaces
//
// Every bucket belongs to one limiter and one rule. In the in-memory
// stores each rule hashes its keys with a seed of its own; in a shared
// Store the HMAC covers the limiter's Name and the rule's name with the
// key. So two rules with the same key (per second and per hour) keep two
// buckets, a rule keyed by a client-chosen value (a device header) never
// reaches another rule's buckets (an address key), and two limiters on
// one Redis with one KeySecret never share a bucket. A shared store that
// implements [NamespaceClaimer] (the stores of this package and
// redisstore's) refuses at New a second Limiter, or FailureBudget, of a
// name it already serves in this process ([ErrNamespaceTaken]); the
// instances of one service in several processes share a name on
// purpose, and two different limiters of one name in several processes
// cannot be detected: give every limiter and budget its own Name. Within
// one rule, a KeyFunc that returns keys of several kinds (a subject, or
// an address when there is none) must tag each kind so that no two kinds
// give one key, as [KeyByIP]'s "ip4:" and "ip6:" do; [KeyJoin] combines
// keys without ambiguity.
//
// # Answers
//
// Rejections are 429 with Retry-After (whole seconds, rounded up, never
// before the RateLimit t) and the RateLimit-Policy and RateLimit fields
// of draft-ietf-httpapi-ratelimit-headers (-10 to -12), Structured Field
// Lists with one member per policy (`"api";q=100;w=60` and
// `"api";r=0;t=12`), and a problem+json body of type quota-exceeded whose
// violated-policies names the policy. Allowed responses carry the fields
// too, unless Config.QuietAllow. Each limiter in a chain adds its member
// to the lists already on the response, or replaces only the member of
// its own name, so a response behind an address limiter and a user
// limiter carries both (see Example (Chain)); policy names must be printable
// ASCII (New refuses others). The X-RateLimit fields of
// Config.LegacyHeaders hold one policy: the innermost limiter's. A request without a key is
// rejected with 400 (fail closed) unless Config.InsecureAllowNoKey. Every
// rejection is logged as event=rate_limited with the policy name, never
// the key. Config.Shadow decides and logs but never rejects.
//
// # Store outages
//
// A shared store that fails or exceeds Config.StoreTimeout is handled by
// Config.StorePolicy: FallbackLocal (default: a local in-memory limiter,
// per instance, until the store answers), FailOpen, or FailClosed (503).
// Each failure is logged as event=ratelimit_store_error. [Limiter.Ready]
// and [FailureBudget.Ready] report whether a shared store that has a
// Ready(context.Context) error method (redisstore's) answers, for a
// readiness endpoint; the in-memory stores are always ready.
//
// # Failure budgets
//
// [FailureBudget] counts only failures (401 and 403 from the wrapped
// handler, or explicit [Attempt.Fail] and [FailureBudget.Fail] calls) per
// key: Budget failures per Per, the failure that spends the budget locks
// the key out (event=failure_budget_exhausted), and each further lockout
// doubles up to MaxLockout. Every attempt reserves its place before the
// handler runs ([FailureBudget.Reserve]), so the failures recorded plus
// the attempts in flight never exceed the budget: of 200 guesses sent at
// once against a budget of 3, 3 reach the handler. A success gives its
// place back; an attempt whose outcome is unknown (the handler panicked,
// or wrote nothing after the client went away, or never settled within
// AttemptTimeout) counts as a failure, since a guess may have been
// checked.
//
// Keyed by account alone, a budget lets anyone lock that account out by
// failing on purpose. Key it by account and address or device
// ([KeyJoin]) to lock out only the client that fails, and bound
// distributed guessing with a second, larger budget per account (or a
// Limiter per account), which an attacker must then fail many times to
// exhaust.
//
// The default store is bounded (FailureConfig.MaxKeys) and never evicts a
// key that is still restricted (failures not refilled, a lockout,
// attempts in flight), so junk failures on other keys never hand a
// victim a fresh budget; only the lockout history of keys whose budget is
// whole again may go. When it is full of restricted keys, new keys follow
// FailureConfig.Overflow: OverflowReject (default) refuses their attempts
// (fail closed, for new keys only) until a key stops being restricted,
// OverflowShare makes them share one budget. A shared FailureStore
// (redisstore's) makes several instances enforce one budget instead of
// one each; when it fails, FailureConfig.StorePolicy applies: FailClosed
// by default (503), or FallbackLocal (one budget per instance until the
// store answers) or FailOpen (no budget).
//
// Limiter and FailureBudget are safe for concurrent use by multiple
// goroutines.
package ratelimit
