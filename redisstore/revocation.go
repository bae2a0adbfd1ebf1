package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrRevocationsFull is the error of [RevocationStore.Publish] when the
// durable set holds its maximum of unexpired revocations: none is
// dropped to make room.
var ErrRevocationsFull = errors.New("redisstore: revocation set full")

// RevocationStore shares revocations between instances, for revoke's
// List (it implements revoke.Store): Publish adds a record to a durable
// sorted set (one key, scored by expiry) and publishes it on a channel
// in one script; Watch subscribes to the channel, then reads the set,
// then applies what is published. Every instance thus holds every
// revocation within a round trip of its publication, and an instance
// that starts, or whose subscription drops and comes back, reads the set
// again: a message it missed is still applied.
//
// # Outages
//
// While Redis is down, each instance keeps refusing the revocations it
// holds (they live in its revoke.List), its List's Ready fails, and
// Publish fails with [ErrUnavailable] (revoke.List.Revoke then holds the
// revocation on its own instance and returns revoke.ErrStore: retry it).
// When Redis answers again, each instance resubscribes (within 5s) and
// reads the set. A Redis restarted without persistence comes back with an
// empty set: the instances still hold what they had, but an instance
// started afterwards does not; run Redis with persistence (appendonly) or
// replicas if that matters, as for any store here.
//
// Watch reads the whole set in one command bounded by ten times
// Options.Timeout (at least 5s): about 15 MB for 100000 records.
//
// Records are kept until their expiry (at most the revoke.List's
// MaxTokenLifetime plus ClockSkew) plus Options.MaxClockSkew on the Redis
// server's clock. They hold the revoked issuer and subject, session, token
// or client ID in the clear (the key name holds none). The store is
// Cluster safe (one key per script; PUBLISH reaches every node's
// subscribers) and safe for concurrent use.
type RevocationStore struct {
	rdb        redis.UniversalClient
	opts       Options
	load       Options // opts with the longer timeout of reading the whole set
	maxEntries int
	set, ch    string
	// health is how long a subscription may be silent before it is
	// pinged; a ping unanswered for as long again drops it, so a hung
	// Redis is noticed within two of it.
	health time.Duration
}

// NewRevocationStore returns a RevocationStore on rdb holding at most
// maxEntries unexpired revocations (0: 100000; match the revoke.List's
// MaxEntries). It panics if rdb is nil or maxEntries is negative.
func NewRevocationStore(rdb redis.UniversalClient, opts Options, maxEntries int) *RevocationStore {
	if rdb == nil {
		panic("redisstore: nil client")
	}
	if maxEntries < 0 {
		panic("redisstore: negative maxEntries")
	}
	if maxEntries == 0 {
		maxEntries = 100_000
	}
	opts.defaults()
	load := opts
	// The whole set is read in one call (paging by offset could skip
	// records as expired ones leave): up to maxEntries records of a few
	// hundred bytes, more than Options.Timeout allows for a command.
	load.Timeout = max(10*opts.Timeout, 5*time.Second)
	return &RevocationStore{
		rdb: rdb, opts: opts, load: load, maxEntries: maxEntries,
		set: opts.key(purposeRevoke, "set"), ch: opts.key(purposeRevoke, "channel"),
		health: time.Second,
	}
}

// publishScript drops the expired members of KEYS[1], then adds ARGV[2]
// scored ARGV[3] (its expiry, ms) unless the set holds ARGV[4] members,
// keeps the key until its last member expires, and publishes ARGV[2] on
// channel ARGV[5]. It returns 1, or 0 when full.
var publishScript = redis.NewScript(luaClock + `
local nowms = math.floor(now / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowms)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
expire(KEYS[1], tonumber(last[2]) * 1000)
redis.call('PUBLISH', ARGV[5], ARGV[2])
return 1
`)

// Publish keeps rec until expires (plus Options.MaxClockSkew) and
// publishes it to every Watch. It returns an error wrapping
// [ErrUnavailable], or [ErrRevocationsFull].
func (s *RevocationStore) Publish(ctx context.Context, rec []byte, expires time.Time) error {
	score := strconv.FormatInt(expires.Add(s.opts.MaxClockSkew).UnixMilli(), 10)
	n, err := call(ctx, &s.opts, func(ctx context.Context) (int64, error) {
		return publishScript.Run(ctx, s.rdb, []string{s.set}, s.opts.clock(s.opts.Now()), rec, score, s.maxEntries, s.ch).Int64()
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %d unexpired revocations", ErrRevocationsFull, s.maxEntries)
	}
	return nil
}

// Watch subscribes, then passes every unexpired record of the durable
// set to apply and calls synced, then passes every published record to
// apply, until ctx ends (it returns ctx's error) or the subscription
// drops or goes silent (it returns the cause, wrapping
// [ErrUnavailable]). revoke.List calls it again after a drop, so the set
// is read again.
func (s *RevocationStore) Watch(ctx context.Context, apply func(rec []byte), synced func()) error {
	ps := s.rdb.Subscribe(ctx)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // ends a blocked receive
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	err := ps.Subscribe(sctx, s.ch)
	if err == nil {
		// The subscription is confirmed before the set is read, so a
		// record published meanwhile arrives as a message if it is not
		// in what is read.
		_, err = ps.ReceiveTimeout(sctx, s.opts.Timeout)
	}
	cancel()
	if err != nil {
		return s.dropped(ctx, "subscribe", err)
	}
	recs, err := call(ctx, &s.load, func(ctx context.Context) ([]string, error) {
		// Expired records (scores include MaxClockSkew) are skipped
		// here, and by the List in any case.
		from := "(" + strconv.FormatInt(s.opts.Now().UnixMilli(), 10)
		return s.rdb.ZRangeByScore(ctx, s.set, &redis.ZRangeBy{Min: from, Max: "+inf"}).Result()
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for _, r := range recs {
		apply([]byte(r))
	}
	synced()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.health)
		var nerr interface{ Timeout() bool }
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &nerr) && nerr.Timeout() && !pinged:
			if err := ps.Ping(ctx); err != nil {
				return s.dropped(ctx, "ping", err)
			}
			pinged = true
			continue
		default:
			return s.dropped(ctx, "receive", err)
		}
		switch m := msg.(type) {
		case *redis.Message:
			apply([]byte(m.Payload))
		case *redis.Pong:
			pinged = false
		case *redis.Subscription:
			// go-redis resubscribed on a new connection: messages may
			// have been lost meanwhile, so the set must be read again.
			return s.dropped(ctx, "resubscribed", errors.New("connection replaced"))
		}
	}
}

func (s *RevocationStore) dropped(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: revocation subscription: %s: %w", ErrUnavailable, op, err)
}

// Ready reports whether Redis answers a PING in time; see
// [LimitStore.Ready]. revoke.List's Ready also reports whether its
// subscription has read the durable set.
func (s *RevocationStore) Ready(ctx context.Context) error { return ready(ctx, s.rdb, &s.opts) }
