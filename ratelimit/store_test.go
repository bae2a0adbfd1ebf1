package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

func TestMemoryStoreConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
		s := NewMemoryStore(1000, OverflowReject)
		return s, s
	})
}

// soak returns big when APIGUARD_SOAK is set, small otherwise.
func soak(small, big int) int {
	if os.Getenv("APIGUARD_SOAK") != "" {
		return big
	}
	return small
}

// TestMemoryStoreHoldsMaxKeys: at its configured capacity the store holds
// that many live keys, however unevenly they hash over its shards: none
// is rejected or evicted while the working set fits, and the next new key
// is refused (every bucket is still refilling).
func TestMemoryStoreHoldsMaxKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 17, 1000, soak(100_000, 1_000_000)} {
		t.Run(fmt.Sprintf("max_keys=%d", maxKeys), func(t *testing.T) {
			s := newMemoryStore(maxKeys, OverflowReject)
			lim := Limit{Requests: 10, Per: time.Hour}
			key := func(i int) uint64 { return maphash.String(s.seed, "k"+strconv.Itoa(i)) }
			for i := range maxKeys {
				if !s.take(key(i), lim, t0).Allowed {
					require.Fail(t, "key refused below capacity", "key %d of %d", i, maxKeys)
				}
			}
			require.Equal(t, maxKeys, s.len())
			for i := range maxKeys { // every bucket still there, one token down
				if res := s.take(key(i), lim, t0); res.Remaining != 8 {
					require.Fail(t, "bucket lost", "key %d: remaining %d, want 8", i, res.Remaining)
				}
			}
			require.False(t, s.take(key(maxKeys), lim, t0).Allowed, "the store is full of refilling buckets")
			require.Equal(t, maxKeys, s.len())
		})
	}
}

// TestMemoryStoreAllocs: a key seen before allocates nothing; a new key
// at most once (a shard's table growing).
func TestMemoryStoreAllocs(t *testing.T) {
	l, err := New(Config{Limit: Limit{Requests: 10, Per: time.Second}, Key: KeyByIP(), MaxKeys: 10_000, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	ctx := context.Background()
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "device-" + strconv.Itoa(i)
	}
	i := 0
	newKey := testing.AllocsPerRun(len(keys)-1, func() {
		_, _ = l.Allow(ctx, keys[i])
		i++
	})
	require.LessOrEqual(t, newKey, 1.0, "a new key allocates at most once")
	require.Equal(t, len(keys), l.mem.len())
	j := 0
	seen := testing.AllocsPerRun(len(keys), func() {
		_, _ = l.Allow(ctx, keys[j%len(keys)])
		j++
	})
	require.Zero(t, seen, "a key seen before allocates nothing")
}

// TestMemoryStoreBytesPerKey: at capacity the store holds at most 100
// bytes a key (DESIGN.md).
func TestMemoryStoreBytesPerKey(t *testing.T) {
	n := soak(100_000, 1_000_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newMemoryStore(n, OverflowReject)
	lim := Limit{Requests: 10, Per: time.Second}
	for i := range n {
		s.take(uint64(i)*0x9e3779b97f4a7c15+1, lim, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
	t.Logf("%d keys: %.1f bytes a key", n, perKey)
	require.Equal(t, n, s.len())
	require.Less(t, perKey, 100.0)
	runtime.KeepAlive(s)
}

// TestFloodKeepsRestrictingBuckets: a flood of distinct keys, many times
// MaxKeys, never evicts a bucket that still restricts, whether the
// flood's own buckets have refilled (and are evicted for it) or not (and
// new keys overflow); the store holds MaxKeys buckets exactly throughout.
func TestFloodKeepsRestrictingBuckets(t *testing.T) {
	tests := []struct {
		name     string
		overflow Overflow
		// step is how far the clock moves between two flood keys: the
		// flood's buckets (one token of ten per second taken) refill
		// in 100ms.
		step time.Duration
	}{
		{"flood_evicts_victims_bucket", OverflowReject, 10 * time.Millisecond},
		{"flood_evicts_victims_bucket/overflow_share", OverflowShare, 10 * time.Millisecond},
		{"flood_of_refilling_buckets", OverflowReject, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const maxKeys, victims = 1000, 50
			flood := soak(50_000, 2_000_000)
			s := newMemoryStore(maxKeys, tt.overflow)
			lim := Limit{Requests: 10, Per: time.Second}
			slow := Limit{Requests: 2, Per: 24 * time.Hour} // the victims' limit: a drained bucket refills in a day
			victim := func(i int) uint64 { return maphash.String(s.seed, "victim-"+strconv.Itoa(i)) }
			for i := range victims {
				require.True(t, s.take(victim(i), slow, t0).Allowed)
				require.True(t, s.take(victim(i), slow, t0).Allowed)
			}
			now := t0
			for i := range flood {
				now = now.Add(tt.step)
				s.take(maphash.String(s.seed, "flood-"+strconv.Itoa(i)), lim, now)
				if s.len() > maxKeys {
					require.LessOrEqual(t, s.len(), maxKeys, "after flood key %d", i)
				}
			}
			require.Equal(t, maxKeys, s.len())
			for i := range victims {
				res := s.take(victim(i), slow, now)
				require.False(t, res.Allowed, "victim %d got a fresh bucket", i)
			}
		})
	}
}

// TestMemoryStoreConcurrent: many goroutines at once, exact counts.
func TestMemoryStoreConcurrent(t *testing.T) {
	// New keys racing for the last places: exactly MaxKeys get one.
	t.Run("new_keys_race_for_capacity", func(t *testing.T) {
		const maxKeys, goroutines, each = 1000, 64, 100
		s := newMemoryStore(maxKeys, OverflowReject)
		lim := Limit{Requests: 10, Per: time.Hour}
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					if s.take(maphash.String(s.seed, fmt.Sprintf("g%d-%d", g, i)), lim, t0).Allowed {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		require.Equal(t, int64(maxKeys), admitted.Load())
		require.Equal(t, maxKeys, s.len())
	})
	// Takes on many keys in every shard: each key gives its burst, no more.
	t.Run("takes_exact_per_key", func(t *testing.T) {
		const keys, burst, goroutines = 64, 5, 32
		s := newMemoryStore(100, OverflowReject)
		lim := Limit{Requests: burst, Per: time.Hour}
		var allowed [keys]atomic.Int64
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for r := range 3 * burst {
					k := (g + r) % keys
					for range keys {
						if s.take(uint64(k)+1, lim, t0).Allowed {
							allowed[k].Add(1)
						}
						k = (k + 1) % keys
					}
				}
			})
		}
		wg.Wait()
		for k := range allowed {
			require.Equal(t, int64(burst), allowed[k].Load(), "key %d", k)
		}
	})
	// New keys evicting refilled buckets while others take and refund: the
	// count never passes MaxKeys and ends exact.
	t.Run("evictions_under_load", func(t *testing.T) {
		const maxKeys = 256
		s := newMemoryStore(maxKeys, OverflowReject)
		lim := Limit{Requests: 10, Per: time.Second}
		var over atomic.Int64
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 2000 {
					now := t0.Add(time.Duration(i) * time.Second) // every earlier bucket has refilled
					h := uint64(g)<<32 | uint64(i) + 1
					s.take(h, lim, now)
					s.refund(h, lim, now)
					if s.len() > maxKeys {
						over.Add(1)
					}
				}
			})
		}
		wg.Wait()
		require.Zero(t, over.Load())
		require.Equal(t, maxKeys, s.len())
		n := 0
		for i := range s.shards {
			n += s.shards[i].n
		}
		require.Equal(t, maxKeys, n, "the shards hold what the count says")
	})
}

// TestBucketAdopt: a bucket that adopts a new limit keeps the tokens it
// holds, capped at the new burst, and rounds against the client.
func TestBucketAdopt(t *testing.T) {
	tests := []struct {
		name               string
		per, burst         int64
		takes              int
		toPer, toBurst     int64
		wantRemaining      int // after one more take under the new limit
		wantAllowedAfter   bool
		wantRetryAfterNano int64
	}{
		{name: "rate_flip_keeps_tokens", per: 100, burst: 10, takes: 4, toPer: 7, toBurst: 10, wantRemaining: 5, wantAllowedAfter: true},
		{name: "burst_tightened_caps_tokens", per: 100, burst: 100, takes: 50, toPer: 100, toBurst: 10, wantRemaining: 9, wantAllowedAfter: true},
		{name: "burst_raised_keeps_tokens", per: 100, burst: 2, takes: 2, toPer: 100, toBurst: 10, wantRemaining: 0, wantAllowedAfter: false, wantRetryAfterNano: 100},
		{name: "drained_stays_drained", per: 1000, burst: 3, takes: 3, toPer: 10, toBurst: 3, wantRemaining: 0, wantAllowedAfter: false, wantRetryAfterNano: 10},
		{name: "unlimited_rate_to_limited", per: 0, burst: 5, takes: 3, toPer: 100, toBurst: 5, wantRemaining: 4, wantAllowedAfter: true},
		{name: "limited_to_unlimited_rate", per: 100, burst: 5, takes: 5, toPer: 0, toBurst: 5, wantRemaining: 4, wantAllowedAfter: true},
		{name: "huge_limits_capped", per: 1 << 40, burst: 1 << 40, takes: 1, toPer: 1 << 50, toBurst: math.MaxInt64, wantRemaining: maxDebt>>50 - 1, wantAllowedAfter: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bucket{tat: 0, per: tt.per, burst: capBurst(tt.per, tt.burst)}
			for range tt.takes {
				b.take(0)
			}
			b.adopt(tt.toPer, capBurst(tt.toPer, tt.toBurst), 0)
			res := b.take(0)
			require.Equal(t, tt.wantAllowedAfter, res.Allowed)
			require.Equal(t, tt.wantRemaining, res.Remaining)
			require.Equal(t, time.Duration(tt.wantRetryAfterNano), res.RetryAfter)
		})
	}
}

// FuzzBucketMatchesRate: the GCRA bucket decides as
// golang.org/x/time/rate's token bucket (the store's implementation
// before GCRA, kept as the reference) through takes, refunds and changes
// of limit. Emission intervals are whole milliseconds plus one ns and
// times whole milliseconds, so that no decision sits on a float's
// rounding edge; the run stops at the first one that does (after a change
// of limit rounds by a ns).
func FuzzBucketMatchesRate(f *testing.F) {
	f.Add([]byte{0, 5, 3, 0, 0, 0, 0, 1, 0, 2, 9, 1, 40, 3, 2, 7})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 3, 0, 3, 0, 200, 2, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) < 2 {
			return
		}
		per := time.Duration(ops[0]%50+1)*time.Millisecond + 1
		burst := int(ops[1]%8) + 1
		b := bucket{tat: 0, per: int64(per), burst: int64(burst)}
		ref := rate.NewLimiter(rate.Every(per), burst)
		base := time.Unix(1_000_000, 0)
		ref.SetLimitAt(base, rate.Every(per)) // anchor, full
		now := int64(0)
		for i := 2; i+1 < len(ops); i += 2 {
			arg := ops[i+1]
			at := base.Add(time.Duration(now))
			tokens := ref.TokensAt(at)
			if frac := tokens - math.Floor(tokens); frac < 1e-6 || frac > 1-1e-6 {
				if math.Abs(tokens-math.Round(tokens)) > 1e-12 {
					return // on a rounding edge: the float and the ns may part
				}
			}
			switch ops[i] % 4 {
			case 0: // take
				want := tokens >= 1 && ref.AllowN(at, 1)
				res := b.take(now)
				require.Equal(t, want, res.Allowed, "take %d at %d ns (reference tokens %.9f)", i/2, now, tokens)
				wantRemaining := 0
				if left := tokens - float64(btoi(want)); left > 0 {
					wantRemaining = int(math.Floor(left + 1e-9))
				}
				require.Equal(t, wantRemaining, res.Remaining, "take %d", i/2)
				if !want {
					require.InDelta(t, (1-tokens)*float64(per), float64(res.RetryAfter), 1e3, "take %d", i/2)
				}
			case 1: // time passes
				now += int64(arg) * int64(time.Millisecond)
			case 2: // refund, where the reference can: up to the burst
				if tokens <= float64(burst)-1 {
					ref.ReserveN(at, -1)
					b.refund(now)
				}
			case 3: // a new limit
				per = time.Duration(arg%50+1)*time.Millisecond + 1
				burst = int(arg/50) + 1
				ref.SetLimitAt(at, rate.Every(per))
				ref.SetBurstAt(at, burst)
				b.adopt(int64(per), int64(burst), now)
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzShardTable: the open-addressing table (probing, growth and
// backward-shift deletion) holds what a map holds, with hashes crafted to
// collide.
func FuzzShardTable(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte{0, 0, 0, 1, 1, 1, 2, 2, 2, 255, 255, 255, 128, 0, 128, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var sh memShard
		model := map[uint64]int64{}
		full := 70
		for i := 0; i+3 <= len(ops); i += 3 {
			// Hashes whose high bits (the home slot) are few and whose
			// low bits differ: long probe runs across the wrap.
			h := uint64(ops[i+1]%8)<<61 | uint64(ops[i+2]) | 1
			switch ops[i] % 3 {
			case 0, 1: // insert or update
				j, ok := sh.find(h)
				if !ok {
					if len(sh.slots) == 0 || (sh.n+1)*maxLoadDen > len(sh.slots)*maxLoadNum {
						sh.grow(full)
						j, _ = sh.find(h)
					}
					sh.slots[j].h = h
					sh.n++
				}
				sh.slots[j].b.tat = int64(i)
				model[h] = int64(i)
			case 2: // remove
				if j, ok := sh.find(h); ok {
					sh.remove(j)
					delete(model, h)
				}
			}
			require.Equal(t, len(model), sh.n)
			held := 0
			for _, sl := range sh.slots {
				if sl.h != 0 {
					held++
					require.Equal(t, model[sl.h], sl.b.tat)
				}
			}
			require.Equal(t, len(model), held)
			for k, tat := range model {
				j, ok := sh.find(k)
				require.True(t, ok, "key %#x lost", k)
				require.Equal(t, tat, sh.slots[j].b.tat)
			}
		}
	})
}
