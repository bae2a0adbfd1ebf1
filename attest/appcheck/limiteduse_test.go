package appcheck

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/replay"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// newLimited returns a verifier of is's tokens on clock with mod applied.
func newLimited(t *testing.T, is *appCheckIssuer, clock *time.Time, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		ProjectNumber: "123456789", AppIDs: []string{"1:123456789:android:abc"},
		JWKSURL: is.srv.URL, HTTPClient: is.srv.Client(),
		Now: func() time.Time { return *clock }, Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newSharedCache is one in-memory store two verifiers share, as
// instances share Redis.
func newSharedCache(clock *time.Time) *replay.Cache {
	return replay.New(1000, *clock, func() time.Time { return *clock })
}

// downStore is a replay store that does not answer.
type downStore struct{}

func (downStore) Use(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

// recordingStore records the ids and expiries it is asked about.
type recordingStore struct {
	mu   sync.Mutex
	ids  []string
	exps []time.Time
	seen map[string]bool
}

func (s *recordingStore) Use(_ context.Context, id string, exp time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids, s.exps = append(s.ids, id), append(s.exps, exp)
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	fresh := !s.seen[id]
	s.seen[id] = true
	return fresh, nil
}

// fakeConsumer stands in for Firebase's consume endpoint.
type fakeConsumer struct {
	mu       sync.Mutex
	consumed map[string]bool
	err      error
	calls    int
}

func (f *fakeConsumer) Consume(_ context.Context, token string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return false, f.err
	}
	if f.consumed == nil {
		f.consumed = map[string]bool{}
	}
	used := f.consumed[token]
	f.consumed[token] = true
	return used, nil
}

func TestLimitedUseToken(t *testing.T) {
	is := newAppCheckIssuer(t)
	ctx := context.Background()
	jti := func(id string) map[string]any { return map[string]any{"jti": id} }

	t.Run("replayed_limited_use_token", func(t *testing.T) {
		clock := synthNow
		var logs bytes.Buffer
		c := newLimited(t, is, &clock, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
		tok := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-1"))
		got, err := c.VerifyLimitedUse(ctx, tok)
		require.NoError(t, err)
		require.Equal(t, "1:123456789:android:abc", got.AppID)
		_, err = c.VerifyLimitedUse(ctx, tok)
		require.ErrorIs(t, err, ErrTokenReplayed)
		require.ErrorIs(t, err, ErrToken)
		require.Contains(t, logs.String(), `"event":"attestation_failed","reason":"replay"`)
		require.NotContains(t, logs.String(), tok[strings.LastIndexByte(tok, '.')+1:], "no token in the log")
	})
	t.Run("replayed_limited_use_token_across_instances", func(t *testing.T) {
		clock := synthNow
		shared := memoryReplay{newSharedCache(&clock)}
		a := newLimited(t, is, &clock, func(c *Config) { c.Replay = shared })
		b := newLimited(t, is, &clock, func(c *Config) { c.Replay = shared })
		tok := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-2"))
		_, err := a.VerifyLimitedUse(ctx, tok)
		require.NoError(t, err)
		_, err = b.VerifyLimitedUse(ctx, tok)
		require.ErrorIs(t, err, ErrTokenReplayed, "the other instance refuses it")
	})
	t.Run("limited_use_token_raced_by_100_goroutines", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, nil)
		tok := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-3"))
		_, err := c.Verify(ctx, tok) // loads the key set: the race is on the store alone
		require.NoError(t, err)
		var accepted, replayed atomic.Int64
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.VerifyLimitedUse(ctx, tok)
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, ErrTokenReplayed):
					replayed.Add(1)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, int64(1), accepted.Load())
		require.Equal(t, int64(99), replayed.Load())
	})
	t.Run("limited_use_token_without_jti", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, nil)
		tok := is.mint(t, "k1", jwa.RS256, "JWT", nil)
		_, err := c.VerifyLimitedUse(ctx, tok)
		require.ErrorIs(t, err, ErrToken)
		require.NotErrorIs(t, err, ErrTokenReplayed)
		_, err = c.Verify(ctx, tok)
		require.NoError(t, err, "a token without jti is fine where limited use is not required")
	})
	t.Run("limited_use_recorded_until_exp_plus_skew", func(t *testing.T) {
		clock := synthNow
		store := &recordingStore{}
		c := newLimited(t, is, &clock, func(c *Config) { c.Replay = store })
		exp := synthNow.Add(5 * time.Minute)
		tok := is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"jti": "j-4", "exp": exp.Unix()})
		_, err := c.VerifyLimitedUse(ctx, tok)
		require.NoError(t, err)
		require.Equal(t, []time.Time{exp.Add(appCheckSkew)}, store.exps, "recorded as long as Verify accepts it")
		require.NotContains(t, store.ids[0], "j-4", "the id is a digest, not the jti")
		require.NotContains(t, tok, store.ids[0])
	})
	t.Run("limited_use_expiry_honoured", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, nil)
		exp := synthNow.Add(5 * time.Minute)
		tok := is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"jti": "j-5", "exp": exp.Unix()})
		_, err := c.VerifyLimitedUse(ctx, tok)
		require.NoError(t, err)
		clock = exp.Add(appCheckSkew - time.Second) // last second Verify accepts it
		_, err = c.VerifyLimitedUse(ctx, tok)
		require.ErrorIs(t, err, ErrTokenReplayed)
		clock = exp.Add(appCheckSkew + time.Second) // its record may be gone: the token is expired
		_, err = c.VerifyLimitedUse(ctx, tok)
		require.ErrorIs(t, err, ErrToken)
		require.NotErrorIs(t, err, ErrTokenReplayed, "refused as expired")
	})
	t.Run("non_limited_use_unaffected", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, func(c *Config) { c.Replay = downStore{} })
		tok := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-6"))
		for range 3 {
			_, err := c.Verify(ctx, tok)
			require.NoError(t, err, "Verify without LimitedUse never asks the store")
		}
	})
	t.Run("config_limited_use_applies_to_verify", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, func(c *Config) { c.LimitedUse = true })
		tok := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-7"))
		_, err := c.Verify(ctx, tok)
		require.NoError(t, err)
		_, err = c.Verify(ctx, tok)
		require.ErrorIs(t, err, ErrTokenReplayed)
	})
	t.Run("replay_store_down_fails_closed", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, func(c *Config) { c.Replay = downStore{} })
		_, err := c.VerifyLimitedUse(ctx, is.mint(t, "k1", jwa.RS256, "JWT", jti("j-8")))
		require.ErrorIs(t, err, ErrStore)
		require.NoError(t, c.Ready(ctx), "a store without a Ready method is taken as ready")
	})
	t.Run("limited_use_token_consumed_elsewhere", func(t *testing.T) {
		clock := synthNow
		con := &fakeConsumer{}
		c := newLimited(t, is, &clock, func(c *Config) { c.Consumer = con })
		tok := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-9"))
		_, _ = con.Consume(ctx, tok) // another backend consumed it first
		_, err := c.VerifyLimitedUse(ctx, tok)
		require.ErrorIs(t, err, ErrTokenReplayed)
		tok2 := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-10"))
		_, err = c.VerifyLimitedUse(ctx, tok2)
		require.NoError(t, err)
		_, err = c.VerifyLimitedUse(ctx, tok2)
		require.ErrorIs(t, err, ErrTokenReplayed)
		require.Equal(t, 3, con.calls, "a replay the store catches costs no call to Google")
	})
	t.Run("consumer_down_fails_closed", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, func(c *Config) { c.Consumer = &fakeConsumer{err: errors.New("503")} })
		_, err := c.VerifyLimitedUse(ctx, is.mint(t, "k1", jwa.RS256, "JWT", jti("j-11")))
		require.ErrorIs(t, err, ErrVendor)
	})
	t.Run("provider_limited_use_per_route", func(t *testing.T) {
		clock := synthNow
		c := newLimited(t, is, &clock, nil)
		p := c.Provider()
		tok := is.mint(t, "k1", jwa.RS256, "JWT", jti("j-12"))
		check := func(limited bool) error {
			_, err := p.Check(ctx, &provider.Request{Token: tok, LimitedUse: limited,
				Store: &provider.StoreDeadline{Timeout: time.Second}})
			return err
		}
		require.NoError(t, check(false))
		require.NoError(t, check(false), "a route without LimitedUse accepts it again")
		require.NoError(t, check(true), "first limited use")
		require.ErrorIs(t, check(true), ErrTokenReplayed)
		require.NoError(t, check(false), "still unaffected")
	})
}
