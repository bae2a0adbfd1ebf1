package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// serveDemo runs the demo with -serve and args and returns its base URL.
func serveDemo(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-serve"}, args...), pw, io.Discard)
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return strings.TrimSpace(strings.TrimPrefix(line, "apiguard demo API on "))
}

func postAttacks(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Post(base+"/demo/attacks", "", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestDemoServeAttacksRunsTheScriptPerCall(t *testing.T) {
	base := serveDemo(t, "-attacks")
	for range 3 {
		status, body := postAttacks(t, base)
		require.Equal(t, http.StatusOK, status, body)
		require.Contains(t, body, "21 of 21 attacks stopped", "every round's attacks are stopped, whatever the earlier rounds left")
	}
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `event="replay"`)
}

func TestDemoServeWithoutAttacksHasNoAttackEndpoint(t *testing.T) {
	base := serveDemo(t)
	status, _ := postAttacks(t, base)
	require.Equal(t, http.StatusNotFound, status)
}
