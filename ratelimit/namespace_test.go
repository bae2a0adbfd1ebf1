package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNamespaces: every bucket belongs to one limiter and one rule, in
// the default store and in a shared one.
func TestNamespaces(t *testing.T) {
	// Two rules of one limiter with the same key (per second and per
	// hour): with one bucket between them, its limit flipped from one to
	// the other on every request and the hourly limit never held. One
	// request a second for an hour must pass exactly what the hourly rule
	// alone passes (the per-second rule never binds at that pace).
	t.Run("rules_share_key", func(t *testing.T) {
		hourly := Limit{Requests: 100, Per: time.Hour}
		both, clk, _ := newLimiter(t, Config{
			Name:  "per-second",
			Limit: Limit{Requests: 10, Per: time.Second},
			Key:   KeyByIP(),
			Rules: []Rule{{Name: "per-hour", Limit: hourly, Key: KeyByIP()}},
		})
		alone, clkAlone, _ := newLimiter(t, Config{Name: "per-hour", Limit: hourly, Key: KeyByIP()})
		h, hAlone := both.Handler(ok204), alone.Handler(ok204)
		passed, passedAlone := 0, 0
		for range 3600 {
			if get(h, "203.0.113.7:1", nil).Code == 204 {
				passed++
			}
			if get(hAlone, "203.0.113.7:1", nil).Code == 204 {
				passedAlone++
			}
			clk.Advance(time.Second)
			clkAlone.Advance(time.Second)
		}
		require.Equal(t, passedAlone, passed, "the hourly rule holds as if it were alone")
		require.LessOrEqual(t, passed, 200, "100 at once plus 100 refilled in the hour")
	})

	// A rule keyed by a client-chosen value (a device header) must not
	// reach another rule's buckets: a device ID equal to a victim's
	// address key would otherwise drain the victim's address bucket.
	t.Run("device_header_names_victims_ip_bucket", func(t *testing.T) {
		l, _, _ := newLimiter(t, Config{
			Name:  "ip",
			Limit: Limit{Requests: 3, Per: time.Hour},
			Key:   KeyByIP(),
			Rules: []Rule{{Name: "device", Limit: Limit{Requests: 3, Per: time.Hour}, Key: KeyByHeader("X-Device-ID")}},
		})
		h := l.Handler(ok204)
		// The attacker, from addresses of its own, claims to be device
		// "ip4:203.0.113.7", the victim's address key.
		for i := range 5 {
			get(h, fmt.Sprintf("198.51.100.%d:1", i+1), map[string]string{"X-Device-ID": "ip4:203.0.113.7"})
		}
		for i := range 3 {
			rec := get(h, "203.0.113.7:1", map[string]string{"X-Device-ID": "victim-phone"})
			require.Equal(t, 204, rec.Code, "victim request %d", i+1)
		}
		rec := get(h, "203.0.113.7:1", map[string]string{"X-Device-ID": "victim-phone"})
		require.Equal(t, 429, rec.Code, "then the victim's own limit applies")
	})

	// Two limiters on one shared store with one KeySecret: five logins
	// must not exhaust the same address's API limiter.
	t.Run("limiters_share_store", func(t *testing.T) {
		store := NewMemoryStore(1000, OverflowReject)
		secret := bytes.Repeat([]byte{3}, 32)
		login, _, _ := newLimiter(t, Config{Name: "login", Limit: Limit{Requests: 5, Per: time.Minute}, Key: KeyByIP(), Store: store, KeySecret: secret})
		api, _, _ := newLimiter(t, Config{Name: "api", Limit: Limit{Requests: 100, Per: time.Minute}, Key: KeyByIP(), Store: store, KeySecret: secret})
		for i := range 5 {
			require.Equal(t, 204, get(login.Handler(ok204), "203.0.113.7:1", nil).Code, "login %d", i+1)
		}
		require.Equal(t, 429, get(login.Handler(ok204), "203.0.113.7:1", nil).Code)
		rec := get(api.Handler(ok204), "203.0.113.7:1", nil)
		require.Equal(t, 204, rec.Code, "the API limiter has a bucket of its own")
		require.Equal(t, `"api";r=99;t=1`, rec.Header().Get("RateLimit"))
	})

	// Two limiters of one name on one store would share buckets: New
	// refuses the second, until the first is closed.
	t.Run("same_name_on_one_store", func(t *testing.T) {
		store := NewMemoryStore(1000, OverflowReject)
		secret := bytes.Repeat([]byte{3}, 32)
		cfg := Config{Name: "api", Limit: Limit{Requests: 5, Per: time.Minute}, Key: KeyByIP(), Store: store, KeySecret: secret}
		first, err := New(cfg)
		require.NoError(t, err)
		_, err = New(cfg)
		require.ErrorIs(t, err, ErrNamespaceTaken)
		require.ErrorContains(t, err, `Config.Name`)
		cfg2 := cfg
		cfg2.Store = NewMemoryStore(10, OverflowReject)
		_, err = New(cfg2)
		require.NoError(t, err, "another store is another namespace")
		require.NoError(t, first.Close())
		require.NoError(t, first.Close(), "Close is idempotent")
		_, err = New(cfg)
		require.NoError(t, err, "the name is free again")
	})

	// The same request keyed by the same KeyFunc under two rules of the
	// shared store: the rules' buckets are apart there too.
	t.Run("rules_share_key_shared_store", func(t *testing.T) {
		store := NewMemoryStore(1000, OverflowReject)
		l, _, _ := newLimiter(t, Config{
			Name:      "per-second",
			Limit:     Limit{Requests: 10, Per: time.Second},
			Key:       KeyByIP(),
			Rules:     []Rule{{Name: "per-hour", Limit: Limit{Requests: 3, Per: time.Hour}, Key: KeyByIP()}},
			Store:     store,
			KeySecret: bytes.Repeat([]byte{4}, 32),
		})
		h := l.Handler(ok204)
		for range 3 {
			require.Equal(t, 204, get(h, "203.0.113.7:1", nil).Code)
		}
		rec := get(h, "203.0.113.7:1", nil)
		require.Equal(t, 429, rec.Code)
		require.Contains(t, rec.Body.String(), `"violated-policies":["per-hour"]`)
	})
}

// TestEvictionKeepsRefillingBuckets proves the default store's eviction
// rule: only buckets that have refilled completely are evicted, so a
// flood of new keys never hands a drained key a fresh bucket.
func TestEvictionKeepsRefillingBuckets(t *testing.T) {
	for _, overflow := range []Overflow{OverflowReject, OverflowShare} {
		t.Run(fmt.Sprintf("key_flood_resets_victim/overflow=%d", overflow), func(t *testing.T) {
			// 2 per hour: a bucket that took one token is full again in 30
			// minutes; the victim, which took both, in an hour.
			l, clk, _ := newLimiter(t, Config{Limit: Limit{Requests: 2, Per: time.Hour}, Key: KeyByIP(), MaxKeys: 64, Overflow: overflow})
			ctx := context.Background()
			for range 2 {
				d, _ := l.Allow(ctx, "victim")
				require.True(t, d.Allowed)
			}
			flood := func(round int) {
				for i := range 5000 {
					_, _ = l.Allow(ctx, fmt.Sprintf("flood-%d-%d", round, i))
				}
			}
			flood(0)
			require.Equal(t, 64, l.mem.len())
			// 31 minutes on, every flood bucket is full and may go; the
			// victim has one token and must stay.
			clk.Advance(31 * time.Minute)
			flood(1)
			require.Equal(t, 64, l.mem.len())
			d, _ := l.Allow(ctx, "victim")
			require.True(t, d.Allowed, "one token refilled")
			require.Equal(t, 0, d.Remaining, "not a fresh bucket of two")
			d, _ = l.Allow(ctx, "victim")
			require.False(t, d.Allowed)
		})
	}
}

// TestKeyFuncOfRulesApart: the rules' hashes differ for one key, so a
// rule's key never reaches another rule's bucket in the default store.
func TestKeyFuncOfRulesApart(t *testing.T) {
	l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByIP(),
		Rules: []Rule{{Name: "r2", Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByIP()}}})
	require.NotEqual(t, l.rules[0].seed, l.rules[1].seed)
	require.NotEqual(t, l.rules[0].ns, l.rules[1].ns)
	secret := bytes.Repeat([]byte{1}, 32)
	a := storeKey(secret, namespace("ratelimit", "a:b", "c"), "k")
	b := storeKey(secret, namespace("ratelimit", "a", "b:c"), "k")
	require.NotEqual(t, a, b, "names are length-prefixed: no two pairs give one namespace")
}
