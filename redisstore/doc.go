// Package redisstore implements apiguard's store interfaces on Redis or
// Valkey (go-redis v9 UniversalClient: standalone, Sentinel or Cluster),
// for services that run more than one instance.
//
//	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
//		Addrs:                 []string{"127.0.0.1:6379"},
//		ContextTimeoutEnabled: true, // so that Options.Timeout bounds every call
//	})
//	replays := redisstore.NewReplayStore(rdb, redisstore.Options{})
//	v, err := auth.New(auth.Config{..., DPoP: auth.DPoPRequired, ReplayStore: replays})
//
// Every call touches one key, so every command is Redis Cluster safe, and
// every call is bounded by Options.Timeout.
//
// # Outages
//
// A replay store that cannot answer returns an error, and the packages
// that use it reject the request (auth answers 503 with Retry-After): a
// replay check fails closed. The store never answers "fresh" without
// Redis having recorded the id.
package redisstore
