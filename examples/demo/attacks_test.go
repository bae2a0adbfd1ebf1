package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// serveDemo runs the demo with -serve and args and returns its base URL
// and a client that trusts its throwaway CA, read from its first lines.
func serveDemo(t *testing.T, args ...string) (string, *http.Client) {
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
	br := bufio.NewReader(pr)
	var base, caFile string
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "apiguard demo API on "); ok {
			base = v
		}
		if v, ok := strings.CutPrefix(line, "throwaway CA certificate: "); ok {
			caFile = v
		}
	}
	go func() { _, _ = io.Copy(io.Discard, br) }()
	hc := &http.Client{}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		require.NoError(t, err)
		roots := x509.NewCertPool()
		require.True(t, roots.AppendCertsFromPEM(pem))
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	}
	return base, hc
}

func postAttacks(t *testing.T, base string, hc *http.Client) (int, string) {
	t.Helper()
	resp, err := hc.Post(base+"/demo/attacks", "", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestDemoServeAttacksRunsTheScriptPerCall(t *testing.T) {
	base, hc := serveDemo(t, "-attacks")
	for range 3 {
		status, body := postAttacks(t, base, hc)
		require.Equal(t, http.StatusOK, status, body)
		require.Contains(t, body, "28 of 28 attacks stopped", "every round's attacks are stopped, whatever the earlier rounds left")
	}
	resp, err := hc.Get(base + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `event="replay"`)
}

func TestDemoServeWithoutAttacksHasNoAttackEndpoint(t *testing.T) {
	base, hc := serveDemo(t)
	status, _ := postAttacks(t, base, hc)
	require.Equal(t, http.StatusNotFound, status)
}

// ops/ runs the demo with -serve -attacks -http, and Prometheus scrapes
// it over plain HTTP: the rounds run there too, without transport rows.
func TestDemoServeAttacksPlainHTTP(t *testing.T) {
	base, hc := serveDemo(t, "-attacks", "-http")
	require.True(t, strings.HasPrefix(base, "http://"), base)
	status, body := postAttacks(t, base, hc)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "24 of 24 attacks stopped")
}
