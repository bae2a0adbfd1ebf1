package testkit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	require.Equal(t, t0, c.Now())
	c.Advance(90 * time.Second)
	require.Equal(t, t0.Add(90*time.Second), c.Now())
}

func TestLogSinkConcurrent(t *testing.T) {
	var l LogSink
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { _, _ = fmt.Fprintf(&l, "line %d\n", i) })
	}
	wg.Wait()
	require.Equal(t, 8, strings.Count(l.String(), "\n"))
	require.Contains(t, l.String(), "line 7\n")
}
