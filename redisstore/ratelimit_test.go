package redisstore

import (
	"testing"

	"github.com/apiguard/apiguard/internal/ratelimittest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

func TestLimitStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	ratelimittest.Run(t, func(t *testing.T) (ratelimittest.Store, ratelimittest.Store) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		return NewLimitStore(newClient(t, srv.Addr()), Options{}), NewLimitStore(newClient(t, srv.Addr()), Options{})
	})
}
