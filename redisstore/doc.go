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
// # Clocks
//
// Instances sharing one Redis share one time: the Redis server's.
// Rate-limit buckets (GCRA) and failure budgets are decided in Lua on the
// server's clock (TIME), and the now that ratelimit passes to
// [LimitStore] and [FailureStore] is not used, so an instance whose clock
// runs ahead can neither see the others' failures as refilled or their
// lockouts as over, nor see a drained bucket as full. A replay id
// ([ReplayStore]) is kept until an absolute time on the server's clock,
// its expiry plus Options.MaxClockSkew (1 s by default), however far
// ahead the clock of the instance that recorded it runs: an instance
// whose clock lags the server's by up to MaxClockSkew still finds the id
// until the id expires on its own clock. Keep every instance and every
// Redis node within MaxClockSkew of true time (NTP), and raise it if they
// can drift further. On a Cluster each key is decided by the clock of the
// master that owns it (after a failover, the promoted replica's), so the
// nodes need synchronised clocks too.
//
// The instance's own clock (Options.Now) still decides what is local to
// it: the Breaker's cool-down, and refusing without a round trip an id
// whose expiry has passed on it. The verifiers in auth and signing judge
// a proof's or signature's age on their own clocks, so an instance whose
// clock runs far off refuses honest traffic (or accepts it late) whatever
// the store does. Options.InsecureTrustCallerClock makes the stores use
// the callers' clocks instead, for tests with a fake clock only.
//
// # Deadlines
//
// Each store call ends at the earlier of its caller's context deadline and
// Options.Timeout from its start: the timeout never extends a deadline the
// caller set. A middleware that makes several store calls for one request
// (a risk check reads and writes history, looks a key up, advances its
// counter) should give the request one deadline for all of them, with
// context.WithTimeout on the request's context before the first call, so
// that a slow Redis costs the request that one budget and not one
// Options.Timeout per call. A call whose caller's deadline has already
// passed fails at once without touching the network.
//
// # Keys
//
// Every key is Options.Prefix, a tag naming its purpose ("replay",
// "nonce", "mark", "rl", "fb", "aa-key", "aa-ch", "aa-hist"), ':' and the hex
// SHA-256 of the identifying values, each prefixed with its length (an
// HMAC-SHA-256 under Options.KeySecret when set). Keys of different
// purposes cannot collide, a value chosen by a client cannot move the
// boundary between two values, and no subject, token, jti, nonce,
// challenge or device or key ID appears in a key name. Without a
// KeySecret, whoever can list the keys can still confirm a guessed value
// by hashing it; with one they cannot, at the cost of sharing the secret
// between instances and of losing every key when it changes (see
// Options.KeySecret). Stores of different services on one Redis need
// different Prefixes.
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
// Every store call goes through a [Breaker]. After BreakerConfig.Failures
// consecutive failures (Redis refused the connection, timed out, or
// answered an error; a missing key is an answer) the breaker opens and
// every call fails at once with [ErrBreakerOpen], which wraps
// [ErrUnavailable], without a dial or a command; after
// BreakerConfig.CoolDown one probe call at a time goes through, and its
// success closes the breaker. A Redis that refuses connections thus costs
// a request nothing but the error, instead of Options.Timeout and
// go-redis's dial retries. Share one Breaker between the stores on one
// Redis (Options.Breaker), so that one store's failures spare the others
// the wait too. The breaker counts consecutive failures of the whole
// client: on a Cluster with one master down, the calls that reach the
// healthy masters keep it closed, and calls for the lost slots pay
// Options.Timeout (or the request's deadline) until the cluster fails
// over.
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
