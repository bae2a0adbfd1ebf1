package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

func TestLimitStoreConformance(t *testing.T) {
	srv := redistest.Shared(t)
	ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		// The suite's fake clock decides: the stores trust it. Generous:
		// -race on a busy two-core machine. The suite's clock stands
		// still, and a bucket's key outlives its TAT by this timeout on
		// Redis's clock, so it must also exceed how long a case runs.
		o := Options{Timeout: testTimeout, InsecureTrustCallerClock: true}
		return NewLimitStore(newClient(t, srv.Addr()), o), NewLimitStore(newClient(t, srv.Addr()), o)
	})
}

// TestLimitStoreQueuedCalls: calls stamped with the same now that reach
// Redis late (a flood queues them in the client's pool; here Redis is
// paused with DEBUG SLEEP, so its clock moves on while their stamp stands
// still) find the bucket as the clock the store decides on says it is.
// On the caller's clock (InsecureTrustCallerClock, the conformance
// suites' mode), the bucket's key used to expire on Redis's clock at its
// TAT: a queued call arriving after that found a full bucket and was
// admitted on top of the burst (6 of 5). On the server's clock, the stamp
// is ignored and the key expires on the clock that decides.
func TestLimitStoreQueuedCalls(t *testing.T) {
	srv := redistest.Start(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const burst = 5
	for _, mode := range []struct {
		name     string
		trust    bool
		interval time.Duration // on the server's clock, long enough that the pause refills nothing
	}{
		{"caller_clock", true, 100 * time.Millisecond},
		{"server_clock", false, time.Minute},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := NewLimitStore(newClient(t, srv.Addr()), Options{Prefix: mode.name + ":", Timeout: testTimeout, InsecureTrustCallerClock: mode.trust})
			t.Run("queued_calls_refill_bucket", func(t *testing.T) {
				ok, _, _, err := s.Take(t.Context(), "victim", mode.interval, burst, t0)
				require.NoError(t, err)
				require.True(t, ok)
				// Redis's clock passes the TAT on the caller's clock
				// (t0+100ms) by 200ms: the calls below, stamped t0, are
				// queued that long, well within the timeout.
				_, err = srv.Do("DEBUG", "SLEEP", "0.3")
				require.NoError(t, err)

				var wg sync.WaitGroup
				var mu sync.Mutex
				allowed := 0
				var errs []error
				for range 20 {
					wg.Go(func() {
						ok, _, _, err := s.Take(context.Background(), "victim", mode.interval, burst, t0)
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							errs = append(errs, err)
						}
						if ok {
							allowed++
						}
					})
				}
				wg.Wait()
				require.Empty(t, errs)
				require.Equal(t, burst-1, allowed, "the rest of the burst, whenever the calls reach Redis")
			})
		})
	}
}
