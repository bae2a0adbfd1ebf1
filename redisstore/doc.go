// Package redisstore implements apiguard's store interfaces on Redis or
// Valkey (go-redis v9 UniversalClient: standalone, Sentinel or Cluster),
// for services that run more than one instance.
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"127.0.0.1:6379"},
//		ContextTimeoutEnabled: true, // so that Options.Timeout bounds every call
//	})
//	opts := redisstore.Options{Breaker: redisstore.NewBreaker(redisstore.BreakerConfig{})}
//	replays := redisstore.NewReplayStore(rdb, opts)
//	v, err := auth.New(auth.Config{..., DPoP: auth.DPoPRequired, ReplayStore: replays})
//
// Every call touches one key, so every command is Redis Cluster safe, and
// every call is bounded by Options.Timeout.
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
// the wait too.
//
// A replay store that cannot answer returns an error, and the packages
// that use it reject the request (auth answers 503 with Retry-After): a
// replay check fails closed. The store never answers "fresh" without
// Redis having recorded the id.
package redisstore
