package replay

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// checkInvariants fails unless c's lists, tables and counts agree: the
// list of all entries links used entries both ways; each scope's circular
// list holds its count of entries, in the same order as the list of all;
// every indexed id has a listed entry with that expiry; every floor is in
// the heap at the position its table says, in heap order.
func checkInvariants(tb testing.TB, c *Cache) {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	order := map[int32]int{} // slot -> position in the list of all
	listed := map[uint64]map[int64]bool{}
	perScope := map[uint64][]int32{}
	prev := int32(-1)
	for x, n := c.oldest, 0; x >= 0; x, n = c.slots[x].next, n+1 {
		require.Less(tb, n, c.size+1, "list of all entries loops")
		e := c.slots[x]
		require.Equal(tb, prev, e.prev, "prev link of slot %d", x)
		order[x] = n
		if listed[e.id] == nil {
			listed[e.id] = map[int64]bool{}
		}
		listed[e.id][e.exp] = true
		if e.scope != 0 {
			perScope[e.scope] = append(perScope[e.scope], x)
		}
		prev = x
	}
	require.Equal(tb, prev, c.newest)
	require.Equal(tb, c.used, len(order), "used")
	require.LessOrEqual(tb, c.used, c.size)
	require.Equal(tb, len(perScope), c.scopes.n, "scopes with entries")
	for _, h := range c.heavy {
		require.Greater(tb, len(perScope[h.scope]), c.share, "listed as heavy, but not over its share")
	}
	for scope, xs := range perScope {
		v, ok := c.scopes.get(scope)
		require.True(tb, ok)
		tail, count := unpack(v)
		require.Equal(tb, int32(len(xs)), count, "count of scope %x", scope)
		if int(count) > c.share {
			require.Contains(tb, c.heavy, scopeCount{scope: scope, count: count}, "heavy scope %x not listed", scope)
		}
		require.Equal(tb, xs[len(xs)-1], tail, "tail of scope %x", scope)
		for i, x := range xs {
			require.Equal(tb, xs[(i+1)%len(xs)], c.slots[x].snext, "scope list of %x out of order", scope)
		}
	}
	for _, s := range c.index.slots {
		if s.key != 0 {
			require.True(tb, listed[s.key][s.val], "indexed id %x has no listed entry", s.key)
		}
	}
	checkFloors(tb, &c.floors)
}

// checkFloors fails unless every floor in f.vals has its value in the
// heap, the heap is in order and within its bound, and no more floors
// are held than max.
func checkFloors(tb testing.TB, f *floors) {
	tb.Helper()
	require.LessOrEqual(tb, f.vals.n, max(f.max, 0))
	require.LessOrEqual(tb, len(f.heap), 2*f.max+16)
	inHeap := map[floorEntry]bool{}
	for i, e := range f.heap {
		inHeap[e] = true
		if i > 0 {
			require.LessOrEqual(tb, f.heap[(i-1)/2].floor, e.floor, "heap order")
		}
	}
	for _, s := range f.vals.slots {
		if s.key != 0 {
			require.True(tb, inHeap[floorEntry{floor: s.val, scope: s.key}], "floor of %x not in the heap", s.key)
		}
	}
}

func TestUse(t *testing.T) {
	clk := &clock{t: t0}
	c := New(3, clk.t.Add(time.Minute), clk.now)
	require.Equal(t, BelowFloor, c.Use("before-start", clk.t.Add(time.Minute)), "could have been used before start")
	clk.t = clk.t.Add(time.Second)
	exp := clk.t.Add(time.Minute)
	require.Equal(t, Fresh, c.Use("a", exp))
	require.Equal(t, Seen, c.Use("a", exp), "replay inside the window")
	require.Equal(t, Expired, c.Use("b", clk.t), "already expired")

	clk.t = clk.t.Add(2 * time.Minute)
	require.Equal(t, Fresh, c.Use("a", clk.t.Add(time.Minute)), "expired entry can be used again")
	checkInvariants(t, c)
}

func TestEvictionRaisesFloor(t *testing.T) {
	clk := &clock{t: t0}
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
	checkInvariants(t, c)
}

func TestExpiredEvictionKeepsFloor(t *testing.T) {
	clk := &clock{t: t0}
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
	clk := &clock{t: t0}
	const size = 10_000
	// 200,000 ids (20 times the cache) prove the bound in seconds; the
	// million runs with APIGUARD_SOAK=1, as .ci/run's soak step sets.
	flood := 200_000
	if os.Getenv("APIGUARD_SOAK") != "" {
		flood = 1_000_000
	}
	c := New(size, clk.t, clk.now)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range flood {
		if i%2 == 0 {
			c.Use(fmt.Sprintf("nonce-%d", i), clk.t.Add(5*time.Minute))
		} else {
			c.UseScoped(fmt.Sprintf("key-%d", i%20_000), fmt.Sprintf("nonce-%d", i), clk.t.Add(5*time.Minute))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap after %d ids: %+d bytes, %d entries, %d floors", flood, int64(after.HeapAlloc)-int64(before.HeapAlloc), c.Len(), c.Floors())
	require.Equal(t, size, c.Len(), "full, never over")
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(8<<20), "heap bounded")
	require.Equal(t, BelowFloor, c.Use("nonce-0", clk.t.Add(5*time.Minute)), "an evicted id is still refused")
	require.Equal(t, BelowFloor, c.UseScoped("key-1", "nonce-1", clk.t.Add(5*time.Minute)), "an evicted scoped id is still refused")
	checkInvariants(t, c)
}

// TestConcurrentUseIsSingle: many goroutines race to use the same ids,
// scoped and not, some from each scope: exactly one use of each id wins.
func TestConcurrentUseIsSingle(t *testing.T) {
	c := New(1000, time.Now(), nil)
	exp := time.Now().Add(time.Minute)
	const goroutines, ids = 64, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := map[string]int{}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := fmt.Sprint("id-", (i+g)%ids)
				var r1, r2 Result
				if g%2 == 0 {
					r1, r2 = c.Use(id, exp), c.UseScoped("k", id, exp)
				} else {
					r2, r1 = c.UseScoped("k", id, exp), c.Use(id, exp)
				}
				mu.Lock()
				if r1 == Fresh {
					fresh["unscoped "+id]++
				}
				if r2 == Fresh {
					fresh["scoped "+id]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, fresh, 2*ids)
	for id, n := range fresh {
		require.Equal(t, 1, n, id)
	}
	checkInvariants(t, c)
}

func TestUseScoped(t *testing.T) {
	clk := &clock{t: t0}
	c := New(10, clk.t, clk.now)
	exp := clk.t.Add(time.Minute)
	require.Equal(t, Fresh, c.UseScoped("device-1", "nonce", exp))
	require.Equal(t, Seen, c.UseScoped("device-1", "nonce", exp), "the same pair again")
	require.Equal(t, Fresh, c.UseScoped("device-2", "nonce", exp), "the same nonce under another key")
	require.Equal(t, Fresh, c.UseScoped("device-1n", "once", exp), "parts that join to the same string")
	require.Equal(t, Fresh, c.UseScoped("", "device-1nonce", exp))
	require.Equal(t, Fresh, c.UseScoped("nonce", "device-1", exp), "the parts swapped")
	require.Equal(t, Seen, c.UseScoped("nonce", "device-1", exp))
	require.Equal(t, Fresh, c.Use("device-1nonce", exp), "a single id is not a pair")
	require.Equal(t, Seen, c.Use("device-1nonce", exp))
	checkInvariants(t, c)
}

// TestReuseAfterExpiry records an id, lets it expire and records it again
// under a later expiry: the second record holds until its own expiry, and
// the expired one leaves the floor where it was.
func TestReuseAfterExpiry(t *testing.T) {
	clk := &clock{t: t0}
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
	checkInvariants(t, c)
}

// TestEvictionOrder fills a cache of 64 with ids one second apart: the
// overflow evicts the oldest, the floor is its expiry, and the ids after
// it are still known.
func TestEvictionOrder(t *testing.T) {
	clk := &clock{t: t0}
	c := New(64, clk.t, clk.now)
	exp := func(i int) time.Time { return clk.t.Add(time.Minute + time.Duration(i)*time.Second) }
	for i := range 68 {
		require.Equal(t, Fresh, c.Use(fmt.Sprint(i), exp(i)), i)
	}
	require.Equal(t, 64, c.Len())
	require.Equal(t, exp(3), c.Floor())
	for i := range 4 {
		require.Equal(t, BelowFloor, c.Use(fmt.Sprint(i), exp(i)), i)
	}
	for i := 4; i < 68; i++ {
		require.Equal(t, Seen, c.Use(fmt.Sprint(i), exp(i)), i)
	}
	require.Equal(t, Fresh, c.Use("new", exp(68)))
	checkInvariants(t, c)
}

// TestReuseSurvivesEviction records an id, lets it expire, records it
// again, and then makes the cache evict the first record: the second one
// must stay in force (the eviction must not drop it from the index).
func TestReuseSurvivesEviction(t *testing.T) {
	for _, scope := range []string{"", "key"} {
		clk := &clock{t: t0}
		c := New(2, clk.t, clk.now)
		use := func(id string, exp time.Time) Result {
			if scope == "" {
				return c.Use(id, exp)
			}
			return c.UseScoped(scope, id, exp)
		}
		require.Equal(t, Fresh, use("a", clk.t.Add(time.Second)))
		clk.t = clk.t.Add(2 * time.Second)
		second := clk.t.Add(time.Minute)
		require.Equal(t, Fresh, use("a", second), "expired: usable again")
		require.Equal(t, Fresh, use("b", clk.t.Add(time.Minute)), "evicts the first, expired, record of a")
		require.Equal(t, Seen, use("a", second), "the second record of a holds")
		checkInvariants(t, c)
	}
}

// TestFutureCreatedFloodsFloor is future_created_floods_floor at the
// cache: one scope sends the cache's size, and ten times it, of ids
// dated as far ahead as callers allow, while another scope's honest ids,
// all with the same expiry (one clock second), keep being accepted,
// before, during and after the flood; the flooding scope's own evicted
// ids stay refused, and the global floor does not move.
func TestFutureCreatedFloodsFloor(t *testing.T) {
	for _, flood := range []int{1, 10} {
		t.Run(fmt.Sprintf("%dx_size", flood), func(t *testing.T) {
			clk := &clock{t: t0}
			const size = 1024
			c := New(size, clk.t, clk.now)
			start := c.Floor()
			honestExp := clk.t.Add(5 * time.Minute)
			future := clk.t.Add(30*time.Second + 5*time.Minute)
			require.Equal(t, Fresh, c.UseScoped("honest", "h-before", honestExp))
			for i := range flood*size + 1 {
				// Once the cache is full, the flood's own floor refuses
				// its ids at this expiry: it only hurts itself.
				c.UseScoped("attacker", fmt.Sprint("a-", i), future)
				if i%97 == 0 { // at 10x, more than the honest key's share
					require.Equal(t, Fresh, c.UseScoped("honest", fmt.Sprint("h-", i), honestExp), "honest id during the flood")
				}
			}
			require.Equal(t, Fresh, c.UseScoped("honest", "h-after", honestExp), "honest id after the flood")
			require.Equal(t, Seen, c.UseScoped("honest", "h-before", honestExp), "the honest id from before is still known")
			require.Equal(t, start, c.Floor(), "the global floor did not move")
			_, ok := c.ScopeFloor("honest")
			require.False(t, ok, "the honest scope has no floor")
			f, ok := c.ScopeFloor("attacker")
			require.True(t, ok)
			require.Equal(t, future, f, "the flood raised its own floor")
			require.Equal(t, BelowFloor, c.UseScoped("attacker", "a-0", future), "an evicted id of the flood is refused")
			require.Equal(t, BelowFloor, c.UseScoped("attacker", "a-new", future), "so is the flood's next id at that expiry")
			require.Equal(t, Fresh, c.UseScoped("attacker", "a-later", future.Add(time.Second)), "the flooding key works above its own floor")
			require.Equal(t, Fresh, c.UseScoped("third", "t-1", honestExp), "a key never seen before")
			checkInvariants(t, c)
		})
	}
}

// TestShareFloodDoesNotEvictOthers: when the cache is full, the scope
// holding the most, over its share, gives way; however long one scope
// floods, the entries of scopes at or under their share all stay, and
// nothing but the flooding scope's floor moves.
func TestShareFloodDoesNotEvictOthers(t *testing.T) {
	clk := &clock{t: t0}
	const size = 640 // share 64
	c := New(size, clk.t, clk.now)
	require.Equal(t, 64, c.share)
	exp := clk.t.Add(time.Minute)
	for s := range 9 {
		for i := range 64 {
			require.Equal(t, Fresh, c.UseScoped(fmt.Sprint("honest-", s), fmt.Sprint(i), exp))
		}
	}
	for i := range 5 * size {
		require.Equal(t, Fresh, c.UseScoped("attacker", fmt.Sprint(i), exp.Add(time.Duration(i)*time.Millisecond)))
		if i == 63 {
			checkInvariants(t, c)
		}
	}
	require.Equal(t, size, c.Len())
	// The cache filled with the attacker at 64, its share: the one
	// entry after that took the oldest of the cache (honest-0's first,
	// whose floor now refuses its ids at that expiry); from then on the
	// attacker was over its share and gave way itself.
	for s := 1; s < 9; s++ {
		for i := range 64 {
			require.Equal(t, Seen, c.UseScoped(fmt.Sprint("honest-", s), fmt.Sprint(i), exp), "honest entries kept")
		}
	}
	f, ok := c.ScopeFloor("honest-0")
	require.True(t, ok)
	require.Equal(t, exp, f)
	require.Equal(t, 2, c.Floors(), "the attacker has a floor, and the honest key whose one entry went")
	checkInvariants(t, c)
}

// TestFloorTableOverflow: when more scopes need floors than the table
// holds, the lowest live floor is folded into the global floor: as many
// flooding keys as the table holds leave the global floor where it was;
// one more lifts it only to the lowest of their floors.
func TestFloorTableOverflow(t *testing.T) {
	clk := &clock{t: t0}
	const size = 256 // 16 floors, share 64
	c := New(size, clk.t, clk.now)
	require.Equal(t, 16, c.nFloors)
	start := c.Floor()
	// Key k floods a cache's worth of ids, each a nanosecond later than
	// the one before, starting k seconds later than key 0: it ends the
	// heaviest, and gives up its own entries.
	flood := func(k int) {
		for i := range size {
			exp := clk.t.Add(time.Minute + time.Duration(k)*time.Second + time.Duration(i))
			require.Equal(t, Fresh, c.UseScoped(fmt.Sprint("key-", k), fmt.Sprint(i), exp))
		}
	}
	for k := range 16 {
		flood(k)
	}
	require.Equal(t, 16, c.Floors())
	require.Equal(t, start, c.Floor(), "as many flooding keys as the table holds: the global floor did not move")
	lowest, ok := c.ScopeFloor("key-0")
	require.True(t, ok)
	flood(16)
	require.Equal(t, lowest, c.Floor(), "one more: the lowest floor was folded into the global floor")
	require.Equal(t, 16, c.Floors())
	_, ok = c.ScopeFloor("key-0")
	require.False(t, ok, "folded")
	_, ok = c.ScopeFloor("key-16")
	require.True(t, ok)
	checkInvariants(t, c)
}

// TestScopeFloorDroppedWhenPassed: a scope's floor goes once it has
// passed, and the table has room again.
func TestScopeFloorDroppedWhenPassed(t *testing.T) {
	clk := &clock{t: t0}
	c := New(128, clk.t, clk.now)
	exp := clk.t.Add(time.Minute)
	for i := range 129 {
		require.Equal(t, Fresh, c.UseScoped("k", fmt.Sprint(i), exp))
	}
	require.Equal(t, 1, c.Floors())
	require.Equal(t, BelowFloor, c.UseScoped("k", "new", exp))
	clk.t = exp
	require.Equal(t, 0, c.Floors(), "passed: dropped")
	require.Equal(t, Fresh, c.UseScoped("k", "new", exp.Add(time.Minute)))
	checkInvariants(t, c)
}

// TestNeverAcceptsReplay drives small caches with random scopes (one of
// them flooding, with expiries further ahead), ids, expiries, clock steps
// and replays, and checks the property that matters: a replay (an
// accepted id used again with its expiry, as a captured request carries
// the same created time and so the same expiry) is never accepted while
// that expiry is ahead, whatever was evicted; the cache stays within its
// size, and its structure stays consistent.
func TestNeverAcceptsReplay(t *testing.T) {
	for _, size := range []int{1, 2, 7, 31, 64, 100, 300} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			clk := &clock{t: t0}
			c := New(size, clk.t, clk.now)
			rng := rand.New(rand.NewPCG(uint64(size), 1))
			type use struct {
				scope, id string
				exp       time.Time
			}
			do := func(u use) Result {
				if u.scope == "" {
					return c.Use(u.id, u.exp)
				}
				return c.UseScoped(u.scope, u.id, u.exp)
			}
			var accepted []use
			fresh, refused := 0, 0
			for i := range 20_000 {
				if rng.IntN(10) == 0 {
					clk.t = clk.t.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				}
				if len(accepted) > 0 && rng.IntN(3) == 0 {
					u := accepted[rng.IntN(len(accepted))]
					got := do(u)
					if u.exp.After(clk.t) {
						require.NotEqual(t, Fresh, got, "replay of %+v accepted before its expiry", u)
						refused++
					}
					continue
				}
				u := use{id: fmt.Sprint(i), exp: clk.t.Add(time.Duration(1+rng.IntN(10)) * time.Second)}
				switch k := rng.IntN(8); {
				case k < 3:
					u.scope = "flood" // a third of the traffic, further ahead
					u.exp = u.exp.Add(time.Duration(rng.IntN(5)) * time.Second)
				case k < 7:
					u.scope = fmt.Sprint("key-", rng.IntN(40))
				}
				if do(u) == Fresh {
					accepted = append(accepted, u)
					fresh++
				}
				require.LessOrEqual(t, c.Len(), size)
				if i%500 == 0 {
					checkInvariants(t, c)
				}
			}
			checkInvariants(t, c)
			require.Positive(t, fresh, "new ids still pass")
			require.Positive(t, refused, "replays were tried")
		})
	}
}

// TestHonestScopesNeverRefused: while the keys at or under their share
// hold no more than the cache has room for besides one share, nothing one
// other key does (flooding, dating ahead, replaying) makes their fresh
// ids be refused, whatever the order and the clock.
func TestHonestScopesNeverRefused(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const size = 64 * 64 // share 64: 63 honest keys at their share and the flood fit
	clk := &clock{t: t0}
	c := New(size, clk.t, clk.now)
	for i := range 200_000 {
		if rng.IntN(50) == 0 {
			clk.t = clk.t.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
		}
		if rng.IntN(4) == 0 { // about 60 ids per key in five minutes
			k := rng.IntN(63)
			// An honest key's ids are all at one expiry: the floor's
			// resolution is no help to it.
			exp := clk.t.Truncate(time.Minute).Add(5 * time.Minute)
			require.Equal(t, Fresh, c.UseScoped(fmt.Sprint("honest-", k), fmt.Sprint(i), exp), "honest key %d refused at step %d", k, i)
			continue
		}
		switch rng.IntN(3) {
		case 0: // a replay, or a new id, of the flood
			c.UseScoped("flood", fmt.Sprint(rng.IntN(i+1)), clk.t.Add(time.Duration(rng.IntN(600))*time.Second))
		default:
			c.UseScoped("flood", fmt.Sprint("f-", i), clk.t.Add(time.Duration(rng.IntN(600))*time.Second))
		}
		if i%20_000 == 0 {
			checkInvariants(t, c)
		}
	}
	require.Equal(t, t0.UTC(), c.Floor())
	require.Equal(t, size, c.Len(), "the flood filled the cache")
	checkInvariants(t, c)
}

// TestCoveredEntriesGoFirst: once a flood's own floor covers its entries,
// they are dead weight and go before anything else: another key can then
// use nearly all of the cache, at one expiry, without losing an entry.
func TestCoveredEntriesGoFirst(t *testing.T) {
	clk := &clock{t: t0}
	const size = 256
	c := New(size, clk.t, clk.now)
	future := clk.t.Add(5*time.Minute + 30*time.Second)
	for i := range 4 * size {
		c.UseScoped("attacker", fmt.Sprint(i), future)
	}
	exp := clk.t.Add(5 * time.Minute)
	for i := range size - 8 {
		require.Equal(t, Fresh, c.UseScoped("honest", fmt.Sprint(i), exp), i)
	}
	for i := range size - 8 {
		require.Equal(t, Seen, c.UseScoped("honest", fmt.Sprint(i), exp), i)
	}
	_, ok := c.ScopeFloor("honest")
	require.False(t, ok)
	require.LessOrEqual(t, c.nCovered, maxCovered)
	checkInvariants(t, c)
}
