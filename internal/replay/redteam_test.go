package replay

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Red-team tests: each fails if its attack works.

// TestStaleClockReadingReplays (stale_clock_reading_replays): a use reads
// the clock, then waits for the lock while another use, at a later time,
// evicts the id as expired (no floor). The first use must not then find
// the id unexpired by its older reading and accept it again.
func TestStaleClockReadingReplays(t *testing.T) {
	var cur atomic.Int64
	cur.Store(t0.UnixNano())
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	now := func() time.Time {
		v := cur.Load()
		if armed.CompareAndSwap(true, false) {
			entered <- struct{}{} // read, then held before the lock
			<-release
		}
		return time.Unix(0, v)
	}
	c := New(1, t0, now)
	exp := t0.Add(10 * time.Second)
	require.Equal(t, Fresh, c.UseScoped("k", "x", exp))
	cur.Store(t0.Add(5 * time.Second).UnixNano())
	armed.Store(true)
	got := make(chan Result)
	go func() { got <- c.UseScoped("k", "x", exp) }() // the replay, clock read at t0+5s
	<-entered
	cur.Store(t0.Add(20 * time.Second).UnixNano())
	require.Equal(t, Fresh, c.UseScoped("k", "y", t0.Add(30*time.Second))) // evicts x, expired at t0+20s
	close(release)
	require.NotEqual(t, Fresh, <-got, "replay accepted on a clock reading older than the eviction")
}

// TestClockStepsBackReplays (clock_steps_back_replays): the wall clock
// steps back (an NTP correction) after an id was evicted as expired. The
// verifier's clock then finds the id's signature fresh again; the cache
// must not accept it.
func TestClockStepsBackReplays(t *testing.T) {
	clk := &clock{t: t0}
	c := New(1, t0, clk.now)
	exp := t0.Add(10 * time.Second)
	require.Equal(t, Fresh, c.Use("x", exp))
	clk.t = t0.Add(20 * time.Second)
	require.Equal(t, Fresh, c.Use("y", t0.Add(30*time.Second))) // x evicted, expired
	clk.t = t0.Add(5 * time.Second)                             // the clock steps back
	require.NotEqual(t, Fresh, c.Use("x", exp), "replay accepted after the clock stepped back")
}

// TestFullFloorTableFoldsAttackerFloor (full_floor_table_folds_attacker_floor):
// as many keys as the floor table holds (16 here) date ahead and get a
// floor each; then honest keys at their share fill the cache and one of
// them needs a floor. The global floor must not rise to the attackers'
// future-dated floors: the honest floor is the lowest of the table and
// the new one, and only that may be folded.
func TestFullFloorTableFoldsAttackerFloor(t *testing.T) {
	clk := &clock{t: t0}
	const size = 256 // 16 floors, share 64
	c := New(size, clk.t, clk.now)
	ahead := clk.t.Add(time.Minute) // dated ahead
	for k := range c.nFloors {
		for i := range size {
			c.UseScoped(fmt.Sprint("attacker-", k), fmt.Sprint(i), ahead.Add(time.Duration(i)))
		}
	}
	require.Equal(t, c.nFloors, c.Floors())
	honest := clk.t.Add(30 * time.Second)
	for k := range 5 { // 4 keys fill the cache at their share, the fifth evicts the oldest
		for i := range 64 {
			require.Equal(t, Fresh, c.UseScoped(fmt.Sprint("honest-", k), fmt.Sprint(i), honest.Add(time.Duration(k*64+i))))
		}
	}
	require.True(t, c.Floor().Before(ahead), "global floor lifted to the attackers' level by %d keys: %v", c.nFloors, c.Floor())
	require.Equal(t, Fresh, c.UseScoped("honest-9", "fresh", honest.Add(time.Second)), "an honest key's fresh id refused")
	checkInvariants(t, c)
}

// TestCollusionNeedsMoreKeysThanTable: it takes more keys than the floor
// table holds (max(16, size/16)), each dated ahead, to lift the global
// floor to their level: the documented bound, kept as a regression test.
func TestCollusionNeedsMoreKeysThanTable(t *testing.T) {
	for _, size := range []int{256, 1024} {
		clk := &clock{t: t0}
		c := New(size, clk.t, clk.now)
		ahead := clk.t.Add(time.Minute)
		for k := range c.nFloors {
			for i := range size {
				c.UseScoped(fmt.Sprint("attacker-", k), fmt.Sprint(i), ahead.Add(time.Duration(i)))
			}
		}
		require.Equal(t, t0.UTC(), c.Floor(), "size %d: %d keys moved the global floor", size, c.nFloors)
		for i := range size {
			c.UseScoped("attacker-last", fmt.Sprint(i), ahead.Add(time.Duration(i)))
		}
		require.False(t, c.Floor().Before(ahead), "size %d: %d keys lift the global floor (documented)", size, c.nFloors+1)
	}
}

// TestNeverAcceptsReplayAdversarial: a model check under adversarial
// schedules: few slots, more scopes than the floor table holds, floods
// dated ahead, expiries landing exactly on floors (ties), unscoped ids,
// replays of evicted ids, and clock steps of zero. A captured id always
// comes back with its own expiry; it must never be accepted again before
// that expiry.
func TestNeverAcceptsReplayAdversarial(t *testing.T) {
	for seed := range uint64(12) {
		size := []int{1, 3, 16, 17, 65, 130}[seed%6]
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			clk := &clock{t: t0}
			c := New(size, clk.t, clk.now)
			type use struct {
				scope, id string
				exp       time.Time
			}
			var accepted []use
			nScopes := 1 + rng.IntN(3*c.nFloors)
			for i := range 30_000 {
				if rng.IntN(20) == 0 {
					clk.t = clk.t.Add(time.Duration(rng.IntN(4)) * 500 * time.Millisecond)
				}
				if len(accepted) > 0 && rng.IntN(3) == 0 {
					u := accepted[len(accepted)-1-rng.IntN(min(len(accepted), 4*size+8))]
					var got Result
					if u.scope == "" {
						got = c.Use(u.id, u.exp)
					} else {
						got = c.UseScoped(u.scope, u.id, u.exp)
					}
					if u.exp.After(clk.t) {
						require.NotEqual(t, Fresh, got, "step %d: replay of %+v accepted at %v", i, u, clk.t)
					}
					continue
				}
				// Expiries on a coarse grid (whole seconds, as signing's),
				// so that they tie with floors.
				u := use{id: fmt.Sprint(i), exp: clk.t.Truncate(time.Second).Add(time.Duration(1+rng.IntN(6)) * time.Second)}
				switch k := rng.IntN(10); {
				case k < 4:
					u.scope = fmt.Sprint("flood-", rng.IntN(3))
					u.exp = u.exp.Add(time.Duration(rng.IntN(4)) * time.Second)
				case k < 9:
					u.scope = fmt.Sprint("key-", rng.IntN(nScopes))
				}
				var got Result
				if u.scope == "" {
					got = c.Use(u.id, u.exp)
				} else {
					got = c.UseScoped(u.scope, u.id, u.exp)
				}
				if got == Fresh {
					accepted = append(accepted, u)
				}
				if i%1000 == 0 {
					checkInvariants(t, c)
					require.LessOrEqual(t, c.Floors(), c.nFloors)
				}
			}
			checkInvariants(t, c)
		})
	}
}
