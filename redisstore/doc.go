// Package redisstore implements apiguard's store interfaces on Redis or
// Valkey (go-redis v9 UniversalClient: standalone, Sentinel or Cluster),
// for services that run more than one instance.
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"127.0.0.1:6379"},
//		ContextTimeoutEnabled: true, // required: see Client configuration
//		MaxRetries:            -1,
//		DialerRetries:         1,
//		DialTimeout:           100 * time.Millisecond,
//		PoolTimeout:           100 * time.Millisecond,
//	})
//	opts := redisstore.Options{Breaker: redisstore.NewBreaker(redisstore.BreakerConfig{})}
//	replays := redisstore.NewReplayStore(rdb, opts)
//	v, err := auth.New(auth.Config{..., DPoP: auth.DPoPRequired, ReplayStore: replays})
//
// Every call touches one key, so every command is Redis Cluster safe, and
// every call is bounded by Options.Timeout.
//
// It needs Redis 6.2 or later, or any Valkey (7.2 or later): the scripts
// call TIME before they write (allowed from Redis 5, where scripts
// replicate their effects by default; Redis 7 always does) and set
// absolute expiries with PXAT, and the attest store uses GETDEL, both
// from Redis 6.2.
//
// Rate limits: [LimitStore] decides each request in Redis (one round
// trip); [LeaseStore] leases each instance a share of a busy key's tokens
// (a fraction of a round trip per request, over-admission bounded by
// LeaseConfig); [ConcurrencyStore] bounds requests in flight with leases
// that expire when an instance dies.
//
// Device keys: [DeviceKeyStore] keeps enrolled device public keys for
// signing (the application adapts it to signing.KeyStore in a few lines:
// see its example), with revocation that every instance sees on its next
// lookup, and rotation.
//
// Opaque tokens: [IntrospectionCache] shares auth's introspection answers
// and makes instances take turns, so that N instances make one call to
// the identity provider per token, not N.
//
// Revocations: [RevocationStore] carries revoke.List's revocations to
// every instance (publish/subscribe) and keeps them in a durable set that
// a starting or reconnecting instance reads, so none is missed.
//
// Where each promise is kept: whose clock decides ([Options] and its
// MaxClockSkew), how long a call may take (Options.Timeout), what a key
// name reveals (Options.KeySecret), and what an outage costs ([Breaker]).
//
// # Client configuration
//
// go-redis's defaults suit a cache, not a security check that sits on
// every request. Make the client as above:
//
//   - ContextTimeoutEnabled: true is required. Without it go-redis ignores
//     the call's deadline on the socket, and a hung Redis holds each call
//     for the client's ReadTimeout (5 s by default) whatever
//     Options.Timeout or the request's deadline say.
//   - MaxRetries: -1 (no retries). The stores' commands are not
//     idempotent (SET NX, GETDEL, and Lua scripts that take a token or
//     swap a counter): a retry after a lost reply turns a first use into a
//     "replay", spends a token twice or fails a counter swap that had
//     succeeded. A retry also spends the request's deadline; the Breaker,
//     not the client, handles a Redis that is down.
//   - DialerRetries: 1 and DialTimeout no longer than Options.Timeout.
//     go-redis dials up to 5 times, 100 ms apart, by default: a Redis that
//     refuses connections then costs each call its whole timeout.
//   - PoolTimeout no longer than Options.Timeout, so that a call waiting
//     for a free connection gives up with its deadline.
//
// The same fields exist on redis.Options and redis.ClusterOptions.
//
// # Outages
//
// Every store call goes through a [Breaker]: a Redis found down fails at
// once with [ErrUnavailable] instead of costing each request
// Options.Timeout. Share one Breaker between the stores on one Redis.
//
// # Readiness
//
// Every store has Ready(ctx) error: a PING through the store's Breaker,
// bounded by Options.Timeout, whose error wraps [ErrUnavailable] and
// names the Redis address and the cause (never a password). ratelimit's
// Limiter and FailureBudget delegate their Ready to such a store, and
// other packages' types can do the same through the structural interface
// interface{ Ready(context.Context) error }, so that an application's
// readiness endpoint reports a Redis that is down before traffic does.
//
// A replay store that cannot answer returns an error, and the packages
// that use it reject the request (auth answers 503 with Retry-After): a
// replay check fails closed. The store never answers "fresh" without
// Redis having recorded the id.
package redisstore
