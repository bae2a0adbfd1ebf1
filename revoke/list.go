package revoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/internal/events"
)

// Errors of [List.Revoke] and [List.Ready], matched with errors.Is.
var (
	// ErrInvalid: a Revocation names no issuer, not exactly one of
	// Subject, SessionID, TokenID and ClientID, an At in the future, or an
	// ExpiresAt that has already passed.
	ErrInvalid = errors.New("revoke: invalid revocation")
	// ErrFull: the List holds Config.MaxEntries unexpired revocations;
	// the new one is refused (and counted), none is dropped.
	ErrFull = errors.New("revoke: revocation list full")
	// ErrStore: the revocation holds on this instance but could not be
	// shared through Config.Store; retry the call.
	ErrStore = errors.New("revoke: revocation not shared")
	// ErrNotSynced: the List has not read the store's durable set since
	// its subscription (re)started, or holds fewer revocations than the
	// store sent it (it was full).
	ErrNotSynced = errors.New("revoke: revocations not synchronised")
)

// Revocation revokes the access tokens of one subject, session, token or
// client of one issuer. Exactly one of Subject, SessionID, TokenID and
// ClientID is set.
type Revocation struct {
	// Issuer is the iss of the tokens revoked. Required.
	Issuer string
	// Subject revokes the tokens whose sub it is and whose iat is at or
	// before At, compared in whole seconds: a login in a second after At's
	// gets working tokens.
	Subject string
	// SessionID revokes every token whose sid claim it is.
	SessionID string
	// TokenID revokes the token whose jti it is.
	TokenID string
	// ClientID revokes the tokens whose client_id it is and whose iat is at
	// or before At.
	ClientID string
	// At is when the revocation took effect. Default: now. It may not lie
	// more than Config.ClockSkew ahead.
	At time.Time
	// ExpiresAt is when the revocation may be forgotten. Default and
	// ceiling: now + Config.MaxTokenLifetime + Config.ClockSkew, by which
	// time every token it refuses has expired; a later one is clamped
	// (logged as event=revocation_clamped).
	ExpiresAt time.Time
}

// Store shares revocations between instances; redisstore.RevocationStore
// implements it on Redis. Records are opaque to the store.
type Store interface {
	// Publish keeps rec durably until expires and delivers it to every
	// Watch of every instance. It returns an error when it did not.
	Publish(ctx context.Context, rec []byte, expires time.Time) error
	// Watch subscribes to published records, then passes every durably
	// kept unexpired record to apply and calls synced, then passes each
	// newly published record to apply, until ctx ends or the
	// subscription drops; it returns the cause. apply and synced are
	// called from Watch's goroutine only.
	Watch(ctx context.Context, apply func(rec []byte), synced func()) error
}

// Config configures a [List]. A zero field takes the default in its
// comment.
type Config struct {
	// MaxTokenLifetime is the longest lifetime of the tokens revoked; keep
	// it equal to auth's Config.MaxTokenLifetime. Default: 1 hour.
	MaxTokenLifetime time.Duration
	// ClockSkew is the leeway of the token verifier. Default: 30s.
	ClockSkew time.Duration
	// MaxEntries caps the revocations held. When every one is unexpired,
	// a new one is refused with [ErrFull]: none is ever dropped to make
	// room. An entry costs about 100 bytes with its strings (10 MB for
	// 100000 subject revocations, measured). Default: 100000.
	MaxEntries int
	// Store, when set, shares revocations with the other instances.
	// Default: none (this instance only).
	Store Store
	// StoreTimeout bounds one Publish. Default: 1s.
	StoreTimeout time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives the events revocation_clamped, revocation_refused,
	// revocation_dropped, revocation_invalid, revocation_sync and
	// revocation_sync_lost. Default: slog.Default().
	Logger *slog.Logger
}

// Stats are a List's counters since New.
type Stats struct {
	Entries int    // revocations held, expired ones not yet swept included
	Refused uint64 // Revoke calls refused with ErrFull
	Dropped uint64 // records from the store not held because the List was full
	Invalid uint64 // records from the store that did not decode
	Clamped uint64 // revocations whose ExpiresAt was clamped
	Syncs   uint64 // durable sets read from the store
}

type kind uint8

const (
	kindSubject kind = iota + 1
	kindSession
	kindToken
	kindClient
)

type entryKey struct {
	kind     kind
	iss, val string
}

type entry struct{ at, exp int64 } // unix nanoseconds

// List is the local copy of the revocations, checked on every request
// by [List.Revoked]. It is safe for concurrent use by multiple
// goroutines. Create one with [New]; stop its store subscription with
// [List.Close].
type List struct {
	cfg Config
	n   atomic.Int64 // len(m), read without the lock

	mu     sync.RWMutex
	m      map[entryKey]entry
	minExp int64 // no entry expires before; sweeping earlier frees nothing

	refused, dropped, invalid, clamped, syncs atomic.Uint64
	synced                                    atomic.Bool
	droppedAtSync                             atomic.Uint64
	lastErr                                   atomic.Pointer[error]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New validates cfg, fills in its defaults and returns a List. With a
// Store it starts watching it at once; [List.Ready] reports when the
// durable set has been read.
func New(cfg Config) (*List, error) {
	if cfg.MaxTokenLifetime < 0 || cfg.ClockSkew < 0 || cfg.MaxEntries < 0 || cfg.StoreTimeout < 0 {
		return nil, errors.New("revoke: Config durations and MaxEntries must not be negative")
	}
	if cfg.MaxTokenLifetime == 0 {
		cfg.MaxTokenLifetime = time.Hour
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = 30 * time.Second
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &List{cfg: cfg, m: map[entryKey]entry{}, ctx: ctx, cancel: cancel}
	if cfg.Store != nil {
		l.wg.Add(1)
		go l.watch()
	}
	return l, nil
}

// Close stops watching the store and waits for it. It is idempotent and
// returns nil. A closed List keeps refusing what it holds.
func (l *List) Close() error {
	l.once.Do(func() {
		l.cancel()
		l.wg.Wait()
	})
	return nil
}

// Revoked reports whether a token with these claims is revoked: its jti
// or sid is revoked, or its sub or client_id is revoked at or after its
// iat (in whole seconds), by a revocation of issuer iss that has not
// expired. Empty values
// match nothing. It takes a read lock and allocates nothing; with no
// revocation held it takes no lock. The signature uses standard types
// only, so that auth's Config.Revocations accepts a *List.
func (l *List) Revoked(iss, sub, sid, jti, clientID string, issuedAt time.Time) bool {
	if l.n.Load() == 0 {
		return false
	}
	// Whole seconds: event times and most iat values are, so within one
	// second the order is unknown and the token is refused.
	iat := issuedAt.Truncate(time.Second).UnixNano()
	var now int64
	hit := func(k kind, val string, byTime bool) bool {
		if val == "" {
			return false
		}
		e, ok := l.m[entryKey{k, iss, val}]
		if !ok || (byTime && iat > e.at) {
			return false
		}
		if now == 0 {
			now = l.cfg.Now().UnixNano()
		}
		return now < e.exp
	}
	l.mu.RLock()
	r := hit(kindToken, jti, false) || hit(kindSession, sid, false) ||
		hit(kindSubject, sub, true) || hit(kindClient, clientID, true)
	l.mu.RUnlock()
	return r
}

// record is a revocation as the store carries it.
type record struct {
	Iss  string `json:"iss"`
	Kind kind   `json:"k"`
	Val  string `json:"v"`
	At   int64  `json:"at"`  // unix nanoseconds
	Exp  int64  `json:"exp"` // unix nanoseconds
}

// maxRecord caps a record read from the store.
const maxRecord = 4 << 10

// normalise checks r, fills in its defaults and clamps its expiry.
func (l *List) normalise(r Revocation, now time.Time) (record, bool, error) {
	rec := record{Iss: r.Issuer}
	n := 0
	for _, f := range []struct {
		k kind
		v string
	}{{kindSubject, r.Subject}, {kindSession, r.SessionID}, {kindToken, r.TokenID}, {kindClient, r.ClientID}} {
		if f.v != "" {
			rec.Kind, rec.Val = f.k, f.v
			n++
		}
	}
	if r.Issuer == "" || n != 1 {
		return record{}, false, fmt.Errorf("%w: it needs an Issuer and exactly one of Subject, SessionID, TokenID and ClientID", ErrInvalid)
	}
	if len(r.Issuer)+len(rec.Val) > maxRecord/2 {
		return record{}, false, fmt.Errorf("%w: issuer and value longer than %d bytes", ErrInvalid, maxRecord/2)
	}
	at := r.At
	if at.IsZero() {
		at = now
	}
	if at.After(now.Add(l.cfg.ClockSkew)) {
		return record{}, false, fmt.Errorf("%w: At is %s ahead of now, more than Config.ClockSkew", ErrInvalid, at.Sub(now))
	}
	ceiling := now.Add(l.cfg.MaxTokenLifetime + l.cfg.ClockSkew)
	exp, clamped := r.ExpiresAt, false
	switch {
	case exp.IsZero():
		exp = ceiling
	case !exp.After(now):
		return record{}, false, fmt.Errorf("%w: ExpiresAt has passed", ErrInvalid)
	case exp.After(ceiling):
		exp, clamped = ceiling, true
	}
	rec.At, rec.Exp = at.UnixNano(), exp.UnixNano()
	return rec, clamped, nil
}

// Revoke records r on this instance at once, then publishes it through
// Config.Store, when one is set, to every instance. It returns an error
// wrapping [ErrInvalid] or [ErrFull] (nothing recorded), or [ErrStore]
// (recorded on this instance only; retry). It can be called concurrently
// with request handling and applies to requests checked after it
// returns.
func (l *List) Revoke(ctx context.Context, r Revocation) error {
	now := l.cfg.Now()
	rec, clamped, err := l.normalise(r, now)
	if err != nil {
		return err
	}
	if clamped {
		l.clamped.Add(1)
		events.Log(ctx, l.cfg.Logger, slog.LevelInfo, "revoke: expiry clamped to the longest token lifetime",
			slog.String("event", "revocation_clamped"), slog.String("reason", "expiry_too_long"))
	}
	if !l.add(rec, now) {
		l.refused.Add(1)
		events.Log(ctx, l.cfg.Logger, slog.LevelError, "revoke: revocation refused: list full",
			slog.String("event", "revocation_refused"), slog.String("reason", "full"),
			slog.Int("max_entries", l.cfg.MaxEntries))
		return fmt.Errorf("%w: %d unexpired revocations held (Config.MaxEntries)", ErrFull, l.cfg.MaxEntries)
	}
	if l.cfg.Store == nil {
		return nil
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	pctx, cancel := context.WithTimeout(ctx, l.cfg.StoreTimeout)
	defer cancel()
	if err := l.cfg.Store.Publish(pctx, b, time.Unix(0, rec.Exp)); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}

// add merges rec into the list: of two revocations of one key the later
// At and the later expiry hold, so that merging is idempotent and its
// order does not matter. It reports false when the list is full of
// unexpired entries.
func (l *List) add(rec record, now time.Time) bool {
	k := entryKey{rec.Kind, rec.Iss, rec.Val}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.m[k]; ok {
		l.m[k] = entry{at: max(e.at, rec.At), exp: max(e.exp, rec.Exp)}
		return true
	}
	if len(l.m) >= l.cfg.MaxEntries {
		l.sweep(now.UnixNano())
		if len(l.m) >= l.cfg.MaxEntries {
			return false
		}
	}
	if len(l.m) == 0 || rec.Exp < l.minExp {
		l.minExp = rec.Exp
	}
	l.m[k] = entry{at: rec.At, exp: rec.Exp}
	l.n.Store(int64(len(l.m)))
	return true
}

// sweep deletes the expired entries, if any can have expired. It
// requires l.mu held.
func (l *List) sweep(now int64) {
	if now < l.minExp {
		return
	}
	next := int64(0)
	for k, e := range l.m {
		switch {
		case e.exp <= now:
			delete(l.m, k)
		case next == 0 || e.exp < next:
			next = e.exp
		}
	}
	l.minExp = next
	l.n.Store(int64(len(l.m)))
}

// apply adds a record received from the store.
func (l *List) apply(b []byte) {
	var rec record
	now := l.cfg.Now()
	// The store is shared, so a record is held to this instance's bounds:
	// an At ahead of the clock would refuse logins still to come.
	if len(b) > maxRecord || json.Unmarshal(b, &rec) != nil || rec.Kind < kindSubject || rec.Kind > kindClient ||
		rec.Iss == "" || rec.Val == "" || rec.At > now.Add(l.cfg.ClockSkew).UnixNano() {
		l.invalid.Add(1)
		events.Log(l.ctx, l.cfg.Logger, slog.LevelWarn, "revoke: record from the store ignored",
			slog.String("event", "revocation_invalid"), slog.String("reason", "malformed"))
		return
	}
	if ceiling := now.Add(l.cfg.MaxTokenLifetime + l.cfg.ClockSkew).UnixNano(); rec.Exp > ceiling {
		rec.Exp = ceiling
	}
	if rec.Exp <= now.UnixNano() {
		return
	}
	if !l.add(rec, now) {
		l.dropped.Add(1)
		events.Log(l.ctx, l.cfg.Logger, slog.LevelError, "revoke: revocation from the store not held: list full",
			slog.String("event", "revocation_dropped"), slog.String("reason", "full"),
			slog.Int("max_entries", l.cfg.MaxEntries))
	}
}

// watch runs Config.Store.Watch until Close, again after each drop,
// with a back-off from 50ms to 5s that a successful read resets.
func (l *List) watch() {
	defer l.wg.Done()
	const minWait, maxWait = 50 * time.Millisecond, 5 * time.Second
	wait := minWait
	for {
		// A record dropped from here on, the durable set's included,
		// keeps Ready failing until a later subscription holds them all.
		l.droppedAtSync.Store(l.dropped.Load())
		err := l.cfg.Store.Watch(l.ctx, l.apply, func() {
			l.syncs.Add(1)
			l.synced.Store(true)
			wait = minWait
			events.Log(l.ctx, l.cfg.Logger, slog.LevelInfo, "revoke: durable revocations read",
				slog.String("event", "revocation_sync"), slog.String("reason", "subscribed"), slog.Int("entries", int(l.n.Load())))
		})
		l.synced.Store(false)
		if l.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("subscription ended")
		}
		l.lastErr.Store(&err)
		events.Log(l.ctx, l.cfg.Logger, slog.LevelWarn, "revoke: store subscription lost; known revocations still refused",
			slog.String("event", "revocation_sync_lost"), slog.String("reason", "store_unavailable"), slog.String("error", err.Error()))
		t := time.NewTimer(wait)
		select {
		case <-l.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// Ready returns nil when the List is in step with its store: it has read
// the durable set since its subscription last (re)started, and has held
// every record since. Otherwise the error wraps [ErrNotSynced]. Without a
// Store it is always nil. It can be called concurrently with request
// handling.
func (l *List) Ready(context.Context) error {
	if l.cfg.Store == nil {
		return nil
	}
	if !l.synced.Load() {
		if p := l.lastErr.Load(); p != nil {
			return fmt.Errorf("%w: %w", ErrNotSynced, *p)
		}
		return ErrNotSynced
	}
	if d := l.dropped.Load() - l.droppedAtSync.Load(); d > 0 {
		return fmt.Errorf("%w: %d revocations not held (Config.MaxEntries)", ErrNotSynced, d)
	}
	return nil
}

// Stats returns the List's counters.
func (l *List) Stats() Stats {
	return Stats{
		Entries: int(l.n.Load()), Refused: l.refused.Load(), Dropped: l.dropped.Load(),
		Invalid: l.invalid.Load(), Clamped: l.clamped.Load(), Syncs: l.syncs.Load(),
	}
}
