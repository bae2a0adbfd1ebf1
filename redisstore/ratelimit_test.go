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
		return NewLimitStore(newClient(t, srv.Addr()), Options{Timeout: time.Second}), NewLimitStore(newClient(t, srv.Addr()), Options{Timeout: time.Second})
	})
}
