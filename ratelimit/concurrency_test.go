package ratelimit

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every step of the Limiter that reads and then writes a bucket is atomic:
// with the clock frozen (no refill), many goroutines get exactly what the
// buckets hold.
func TestCheckThenActExact(t *testing.T) {
	frozen := func() time.Time { return t0 }
	quiet := slog.New(slog.DiscardHandler)
	// hammer sends n requests at once through h and counts the 204s.
	hammer := func(h http.Handler, n int, hdr func(i int) map[string]string) int {
		var passed atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if get(h, "203.0.113.7:1", hdr(i)).Code == 204 {
					passed.Add(1)
				}
			})
		}
		wg.Wait()
		return int(passed.Load())
	}
	same := func(int) map[string]string { return map[string]string{"X-Device-ID": "d1", "X-Token": "t1"} }

	// All or nothing under concurrency: a request refused by one rule
	// gives back the token it took under another, exactly.
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("rules_all_or_nothing_concurrent/shared_store=%v", shared), func(t *testing.T) {
			cfg := Config{
				Name: "token", Limit: Limit{Requests: 10, Per: time.Hour}, Key: KeyByHeader("X-Token"),
				Rules: []Rule{{Name: "device", Limit: Limit{Requests: 5, Per: time.Hour}, Key: KeyByHeader("X-Device-ID")}},
				Now:   frozen, Logger: quiet,
			}
			if shared {
				cfg.Store, cfg.KeySecret = NewMemoryStore(100, OverflowReject), bytes.Repeat([]byte{2}, 32)
			}
			l, err := New(cfg)
			require.NoError(t, err)
			require.Equal(t, 5, hammer(l.Handler(ok204), 200, same), "the device rule's five")
			// The token rule's bucket lost exactly the five that passed:
			// five more pass for other devices, then none.
			other := func(i int) map[string]string {
				return map[string]string{"X-Device-ID": fmt.Sprintf("other-%d", i), "X-Token": "t1"}
			}
			require.Equal(t, 5, hammer(l.Handler(ok204), 200, other), "refunds restored the token rule exactly")
		})
	}

	// A bucket adopting a changed limit never mints tokens: LimitFor flips
	// the rate (not the burst) on every call.
	t.Run("limit_flip_mints_no_tokens", func(t *testing.T) {
		var n atomic.Int64
		l, err := New(Config{
			Limit: Limit{Requests: 20, Per: time.Hour}, Key: KeyByHeader("X-Device-ID"), Now: frozen, Logger: quiet,
			LimitFor: func(r *http.Request, key string) Limit {
				if n.Add(1)%2 == 0 {
					return Limit{Requests: 20, Per: time.Second}
				}
				return Limit{Requests: 20, Per: time.Hour}
			},
		})
		require.NoError(t, err)
		require.Equal(t, 20, hammer(l.Handler(ok204), 400, same))
	})

	// A tightened limit applies at once: every request after the change
	// sees the new burst, whatever the bucket held under the old one.
	t.Run("limit_tightened_concurrently", func(t *testing.T) {
		var tight atomic.Bool
		l, err := New(Config{
			Limit: Limit{Requests: 100, Per: time.Hour}, Key: KeyByHeader("X-Device-ID"), Now: frozen, Logger: quiet,
			LimitFor: func(r *http.Request, key string) Limit {
				if tight.Load() {
					return Limit{Requests: 1, Per: time.Hour, Burst: 10}
				}
				return Limit{Requests: 100, Per: time.Hour}
			},
		})
		require.NoError(t, err)
		require.Equal(t, 50, hammer(l.Handler(ok204), 50, same))
		tight.Store(true)
		require.Equal(t, 10, hammer(l.Handler(ok204), 200, same), "capped at the new burst, exactly")
	})

	// Refunds racing on a full bucket never lift it past its burst.
	t.Run("concurrent_refunds_capped", func(t *testing.T) {
		s := newMemoryStore(100, OverflowReject)
		lim := Limit{Requests: 5, Per: time.Hour}
		h := maphash.String(s.seed, "k")
		s.take(h, lim, t0)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() { s.refund(h, lim, t0) })
		}
		wg.Wait()
		allowed := 0
		for range 20 {
			if s.take(h, lim, t0).Allowed {
				allowed++
			}
		}
		require.Equal(t, 5, allowed)
	})

	// New keys that overflow into the shared bucket share it exactly.
	t.Run("overflow_share_concurrent", func(t *testing.T) {
		s := newMemoryStore(shardCount, OverflowShare)
		lim := Limit{Requests: 7, Per: time.Hour}
		for h := range uint64(shardCount) { // every place held by a drained bucket
			for range 7 {
				require.True(t, s.take(h+1, lim, t0).Allowed)
			}
		}
		var passed atomic.Int64
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				if s.take(uint64(shardCount+1+i), lim, t0).Allowed {
					passed.Add(1)
				}
			})
		}
		wg.Wait()
		require.Equal(t, int64(7), passed.Load())
		require.Equal(t, shardCount, s.len())
	})
}

func TestKeyJoin(t *testing.T) {
	key := KeyJoin(KeyByHeader("X-Account"), KeyByHeader("X-Device-ID"))
	req := func(account, device string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		if account != "" {
			r.Header.Set("X-Account", account)
		}
		if device != "" {
			r.Header.Set("X-Device-ID", device)
		}
		return r
	}
	a, err := key(req("a:b", "c"))
	require.NoError(t, err)
	b, err := key(req("a", "b:c"))
	require.NoError(t, err)
	require.NotEqual(t, a, b, "parts are length-prefixed")
	require.Equal(t, "3:a:b1:c", a)
	_, err = key(req("alice", ""))
	require.ErrorIs(t, err, ErrNoKey, "a missing part is a missing key")
	require.Panics(t, func() { KeyJoin() })
	require.Panics(t, func() { KeyJoin(nil) })
}
