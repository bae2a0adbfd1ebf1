package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"github.com/apiguard/apiguard/signing"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/stretchr/testify/require"
)

func TestDemoRunsClean(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), nil, &out, &errOut), out.String())
	s := out.String()
	for _, attack := range []string{"alg: none", "HS256 signed with the public key", "expired token replayed",
		"long-lived token", "token for another audience", "stolen DPoP token used without its key", "replayed DPoP proof",
		"replayed signed payment", "payment body tampered in flight", "payment signed with another key",
		"burst of 10 order reads", "credential stuffing", "premium call with a forged App Attest assertion",
		"premium call whose query a proxy rewrote", "premium call from Sydney a minute after Paris"} {
		require.Contains(t, s, "attack: "+attack)
	}
	require.NotContains(t, s, " NO\n")
	// Every row of the table carries the correlation ID its answer echoed,
	// in the column under the header's CORRELATION ID.
	lines := strings.Split(s, "\n")
	col := utf8.RuneCountInString(lines[0][:max(strings.Index(lines[0], "CORRELATION ID"), 0)])
	require.Positive(t, col, lines[0])
	rows := 0
	for _, line := range lines {
		if !strings.HasPrefix(line, "happy path: ") && !strings.HasPrefix(line, "attack: ") {
			continue
		}
		rows++
		runes := []rune(line)
		require.Greater(t, len(runes), col, line)
		id := strings.Fields(string(runes[col:]))
		require.NotEmpty(t, id, line)
		require.Regexp(t, `^[A-Za-z0-9._~:-]{8,128}$`, id[0], "a row without a correlation ID: %s", line)
		require.NotEqual(t, "yes", id[0], "a row without a correlation ID: %s", line)
	}
	require.GreaterOrEqual(t, rows, 20)
	m := regexp.MustCompile(`summary: (\d+) of (\d+) requests answered as expected; (\d+) of (\d+) attacks stopped`).FindStringSubmatch(s)
	require.NotNil(t, m, s)
	require.Equal(t, m[1], m[2])
	require.Equal(t, m[3], m[4])
	require.Contains(t, s, "impossible_travel (speed)", "the security events are counted and exported")
}

func TestDemoWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-redis", srv.Addr()}, &out, &errOut), out.String())
	require.NotContains(t, out.String(), " NO\n")
	keys, err := srv.Do("DBSIZE")
	require.NoError(t, err)
	require.NotEqual(t, ":0", keys, "the stores wrote to Redis")
}

func TestDemoServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-serve"}, pw, io.Discard)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	base := strings.TrimSpace(strings.TrimPrefix(line, "apiguard demo API on "))
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	resp, err = http.Get(base + "/v1/orders")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)
	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), "apiguard_security_events_total")
	cancel()
	require.NoError(t, <-done)
}

func TestDemoReportsFailure(t *testing.T) {
	var out bytes.Buffer
	err := report(&out, []result{{name: "attack that got through", attack: true, expect: 401, status: 200}})
	require.ErrorContains(t, err, "1 of 1")
	require.True(t, strings.Contains(out.String(), "NO"))
	require.Contains(t, out.String(), "0 of 1 attacks stopped")
}

func TestDemoRejectsBadFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-nope"}, &out, &errOut))
}

// TestSecretHygiene runs every attack of the demo and checks that no
// secret the client sent — tokens, DPoP proofs, signatures, nonces, App
// Attest assertions and challenges — nor the master secret appears in any
// log record or in any answer of the API (the authorization server's own
// token responses excepted: handing out tokens is their job).
func TestSecretHygiene(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	a, err := newAPI(apiOptions{base: base, logger: logger})
	require.NoError(t, err)
	defer a.close()
	srv := &http.Server{Handler: a.handler}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	c, err := newClient(base, a.issuer, a.ca)
	require.NoError(t, err)
	results := c.script(context.Background())
	for _, r := range results {
		require.True(t, r.ok(), "%s: %d %v", r.name, r.status, r.err)
	}
	require.Greater(t, len(c.sent), 50, "the client recorded what it sent")
	logText := logs.String()
	require.Contains(t, logText, `"event":"auth_failed"`, "the attacks were logged")
	answers := strings.Join(c.answers, "\n")
	secrets := append(slices.Clone(c.sent), string(demoMaster))
	// The device's derived secret, as bytes and in the encodings a careless
	// log line would use.
	derived, err := signing.DeriveSecret(demoMaster, demoSalt, "device-42.v1")
	require.NoError(t, err)
	for _, b := range [][]byte{demoMaster, derived} {
		secrets = append(secrets, string(b), hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
	}
	for _, s := range secrets {
		if len(s) < 16 {
			continue
		}
		require.NotContains(t, logText, s, "a secret in the logs")
		require.NotContains(t, answers, s, "a secret in an answer")
	}
}
