package redisstore

import (
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

func TestLimitStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		// The suite's fake clock decides: the stores trust it.
		o := Options{Timeout: time.Second, InsecureTrustCallerClock: true}
		return NewLimitStore(newClient(t, srv.Addr()), o), NewLimitStore(newClient(t, srv.Addr()), o)
	})
}
