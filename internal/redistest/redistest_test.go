package redistest

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { os.Exit(Main(m, new(string))) }

func TestShared(t *testing.T) {
	s := Shared(t)
	_, err := s.Do("SET", "k", "v")
	require.NoError(t, err)
	require.Same(t, s, Shared(t), "one server for the package")
	got, err := s.Do("GET", "k")
	require.NoError(t, err)
	require.Equal(t, "$-1", got, "Shared empties the server for each test")
}

func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	got, err := s.Do("SET", "k", "v")
	require.NoError(t, err)
	require.Equal(t, "+OK", got)
	got, err = s.Do("GET", "k")
	require.NoError(t, err)
	require.Equal(t, "$1", got)

	s.Pause()
	c, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err, "a paused server still accepts connections")
	require.NoError(t, c.SetDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = c.Write([]byte("PING\r\n"))
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 16))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "a paused server does not answer")
	s.Resume()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	n, err := c.Read(make([]byte, 16))
	require.NoError(t, err, "a resumed server answers what it was sent")
	require.Positive(t, n)
	require.NoError(t, c.Close())

	s.Stop()
	_, err = s.Do("PING")
	require.Error(t, err, "stopped server must refuse connections")
	s.Stop() // idempotent

	s.Restart()
	got, err = s.Do("GET", "k")
	require.NoError(t, err)
	require.Equal(t, "$-1", got, "restart starts with an empty dataset")
	got, err = s.Do("DEBUG", "SLEEP", "0")
	require.NoError(t, err)
	require.Equal(t, "+OK", got, "DEBUG is enabled for fault tests")
}

func TestCluster(t *testing.T) {
	c := StartCluster(t)
	require.Len(t, c.Addrs(), 3)
	body, err := c.Nodes[0].bulk("CLUSTER", "INFO")
	require.NoError(t, err)
	require.Contains(t, body, "cluster_size:3")
}
