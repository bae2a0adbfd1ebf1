package replay

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestUse(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(3, clk.t.Add(time.Minute), clk.now)
	require.Equal(t, BelowFloor, c.Use("before-start", clk.t.Add(time.Minute)), "could have been used before start")
	clk.t = clk.t.Add(time.Second)
	exp := clk.t.Add(time.Minute)
	require.Equal(t, Fresh, c.Use("a", exp))
	require.Equal(t, Seen, c.Use("a", exp), "replay inside the window")
	require.Equal(t, Expired, c.Use("b", clk.t), "already expired")

	clk.t = clk.t.Add(2 * time.Minute)
	require.Equal(t, Fresh, c.Use("a", clk.t.Add(time.Minute)), "expired entry can be used again")
}

func TestEvictionRaisesFloor(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(2, clk.t, clk.now)
	base := clk.t
	for i, id := range []string{"n1", "n2", "n3"} {
		clk.t = base.Add(time.Duration(i) * time.Second)
		require.Equal(t, Fresh, c.Use(id, clk.t.Add(time.Minute)))
	}
	// n1 was evicted unexpired: the floor is its expiry.
	require.Equal(t, base.Add(time.Minute), c.Floor())
	require.Equal(t, BelowFloor, c.Use("n1", base.Add(time.Minute)), "replay_after_eviction refused")
	require.Equal(t, Seen, c.Use("n2", base.Add(time.Second+time.Minute)))
	clk.t = base.Add(3 * time.Second)
	require.Equal(t, Fresh, c.Use("n4", clk.t.Add(time.Minute)), "new traffic stays above the floor")
}

func TestExpiredEvictionKeepsFloor(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(1, clk.t, clk.now)
	start := c.Floor()
	require.Equal(t, Fresh, c.Use("a", clk.t.Add(time.Second)))
	clk.t = clk.t.Add(time.Hour)
	require.Equal(t, Fresh, c.Use("b", clk.t.Add(time.Second)))
	require.Equal(t, start, c.Floor(), "evicting an expired entry does not raise the floor")
}

func TestFloodStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test")
	}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	const size = 10_000
	c := New(size, clk.t, clk.now)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		c.Use(fmt.Sprintf("nonce-%d", i), clk.t.Add(5*time.Minute))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap after a million nonces: %+d bytes, %d entries", int64(after.HeapAlloc)-int64(before.HeapAlloc), c.Len())
	require.LessOrEqual(t, c.Len(), size)
	require.Greater(t, c.Len(), size-maxBlock, "an eviction takes one block")
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(8<<20), "heap bounded")
	require.Equal(t, BelowFloor, c.Use("nonce-0", clk.t.Add(5*time.Minute)), "an evicted nonce is still refused")
}

func TestConcurrentUseIsSingle(t *testing.T) {
	c := New(1000, time.Now(), nil)
	exp := time.Now().Add(time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Use("same", exp) == Fresh {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, fresh)
}

func TestUsePair(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(10, clk.t, clk.now)
	exp := clk.t.Add(time.Minute)
	require.Equal(t, Fresh, c.UsePair("device-1", "nonce", exp))
	require.Equal(t, Seen, c.UsePair("device-1", "nonce", exp), "the same pair again")
	require.Equal(t, Fresh, c.UsePair("device-2", "nonce", exp), "the same nonce under another key")
	require.Equal(t, Fresh, c.UsePair("device-1n", "once", exp), "parts that join to the same string")
	require.Equal(t, Fresh, c.UsePair("", "device-1nonce", exp))
	require.Equal(t, Fresh, c.UsePair("nonce", "device-1", exp), "the parts swapped")
	require.Equal(t, Seen, c.UsePair("nonce", "device-1", exp))
	require.Equal(t, Fresh, c.Use("device-1nonce", exp), "a single id is not a pair")
	require.Equal(t, Seen, c.Use("device-1nonce", exp))
}

// TestReuseAfterExpiry records an id, lets it expire and records it again
// under a later expiry: the second record holds until its own expiry, and
// the expired one leaves the floor where it was.
func TestReuseAfterExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(10, clk.t, clk.now)
	start := c.Floor()
	require.Equal(t, Fresh, c.Use("a", clk.t.Add(time.Second)))
	clk.t = clk.t.Add(2 * time.Second)
	require.Equal(t, Fresh, c.Use("a", clk.t.Add(time.Minute)), "expired: usable again")
	require.Equal(t, Fresh, c.Use("b", clk.t.Add(time.Minute)))
	require.Equal(t, Seen, c.Use("a", clk.t.Add(time.Minute)), "the later record holds")
	require.Equal(t, 2, c.Len())
	clk.t = clk.t.Add(2 * time.Minute)
	require.Equal(t, Fresh, c.Use("a", clk.t.Add(time.Minute)))
	require.Equal(t, start, c.Floor(), "no unexpired entry was evicted: the floor did not move")
}

// TestBlockEviction fills a cache of 64 (blocks of 4) with ids one second
// apart: the overflow evicts the oldest block whole, the floor is the
// newest expiry in it, and the ids after it are still known.
func TestBlockEviction(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(64, clk.t, clk.now)
	exp := func(i int) time.Time { return clk.t.Add(time.Minute + time.Duration(i)*time.Second) }
	for i := range 65 {
		require.Equal(t, Fresh, c.Use(fmt.Sprint(i), exp(i)), i)
	}
	require.Equal(t, 61, c.Len(), "the first block of four went")
	require.Equal(t, exp(3), c.Floor())
	for i := range 4 {
		require.Equal(t, BelowFloor, c.Use(fmt.Sprint(i), exp(i)), i)
	}
	for i := 4; i < 65; i++ {
		require.Equal(t, Seen, c.Use(fmt.Sprint(i), exp(i)), i)
	}
	require.Equal(t, Fresh, c.Use("new", exp(65)))
}

// TestNeverAcceptsReplay drives small caches with random ids, expiries,
// clock steps and replays, and checks the property that matters: a replay
// (an accepted id used again with its expiry, as a captured request
// carries the same created time and so the same expiry) is never accepted
// while that expiry is ahead, whatever was evicted; and the cache stays
// within its size.
func TestNeverAcceptsReplay(t *testing.T) {
	for _, size := range []int{1, 2, 7, 31, 32, 100} {
		clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		c := New(size, clk.t, clk.now)
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		type use struct {
			id  string
			exp time.Time
		}
		var accepted []use
		fresh, refused := 0, 0
		for i := range 20_000 {
			if rng.IntN(10) == 0 {
				clk.t = clk.t.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			}
			if len(accepted) > 0 && rng.IntN(3) == 0 {
				u := accepted[rng.IntN(len(accepted))]
				got := c.Use(u.id, u.exp)
				if u.exp.After(clk.t) {
					require.NotEqual(t, Fresh, got, "size %d: replay of %s accepted before its expiry", size, u.id)
					refused++
				}
				continue
			}
			id := fmt.Sprint(i)
			exp := clk.t.Add(time.Duration(1+rng.IntN(10)) * time.Second)
			if c.Use(id, exp) == Fresh {
				accepted = append(accepted, use{id, exp})
				fresh++
			}
			require.LessOrEqual(t, c.Len(), size)
		}
		require.Positive(t, fresh, "size %d: new ids still pass", size)
		require.Positive(t, refused, "size %d: replays were tried", size)
	}
}

// TestReuseSurvivesEviction records an id, lets it expire, records it
// again, and then makes the cache evict the first record: the second one
// must stay in force (the eviction must not drop it from the index).
func TestReuseSurvivesEviction(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New(2, clk.t, clk.now)
	require.Equal(t, Fresh, c.Use("a", clk.t.Add(time.Second)))
	clk.t = clk.t.Add(2 * time.Second)
	second := clk.t.Add(time.Minute)
	require.Equal(t, Fresh, c.Use("a", second), "expired: usable again")
	require.Equal(t, Fresh, c.Use("b", clk.t.Add(time.Minute)), "evicts the first, expired, record of a")
	require.Equal(t, Seen, c.Use("a", second), "the second record of a holds")
}
