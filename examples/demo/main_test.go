package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/signing"
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
		"premium call whose query a proxy rewrote", "premium call from Sydney a minute after Paris",
		"old TLS client (TLS 1.0 and 1.1 only)", "TLS 1.2 client offering only CBC suites", "plain HTTP to the HTTPS port",
		"cleartext HTTP to the plain port", "Android key from a device with an unlocked bootloader",
		"Android software-only key (emulator)", "payment signed by a revoked device key (lost phone)"} {
		require.Contains(t, s, "attack: "+attack)
	}
	requireDeviceKeyRows(t, s)
	require.Contains(t, s, "pins checked at start: the served chain matches the current pin", "the pins were checked at start")
	require.Contains(t, s, "protocol_version (TLS 1.1)", "the old TLS client's refusal was counted")
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
		if slices.ContainsFunc(refusedBeforeHTTP, func(name string) bool { return strings.HasPrefix(line, "attack: "+name) }) {
			require.Equal(t, noID, id[0], "refused before telemetry saw it: %s", line)
			continue
		}
		require.Regexp(t, `^[A-Za-z0-9._~:-]{8,128}$`, id[0], "a row without a correlation ID: %s", line)
		require.NotEqual(t, "yes", id[0], "a row without a correlation ID: %s", line)
	}
	require.GreaterOrEqual(t, rows, 39)
	m := regexp.MustCompile(`summary: (\d+) of (\d+) requests answered as expected; (\d+) of (\d+) attacks stopped`).FindStringSubmatch(s)
	require.NotNil(t, m, s)
	require.Equal(t, m[1], m[2])
	require.Equal(t, m[3], m[4])
	require.Contains(t, s, "impossible_travel (speed)", "the security events are counted and exported")
}

// refusedBeforeHTTP are the rows that no HTTP handler answers, so no
// correlation ID: the transport refuses them.
var refusedBeforeHTTP = []string{"old TLS client", "TLS 1.2 client offering only CBC suites", "plain HTTP to the HTTPS port"}

// With -http the demo serves plain HTTP, as behind a proxy that
// terminates TLS (ops/ and the load tests run it so): no transport rows.
func TestDemoPlainHTTP(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-http"}, &out, &errOut), out.String())
	require.NotContains(t, out.String(), " NO\n")
	require.NotContains(t, out.String(), "TLS client")
	require.Contains(t, out.String(), "24 of 24 attacks stopped")
	requireDeviceKeyRows(t, out.String())
}

// requireDeviceKeyRows checks the device-key rows of the table: both
// enrolments answered 201 with an ecdsa-p256-sha256 key, both keys signed
// a payment that reached the payment handler as theirs, and each attack
// was refused for its own reason, as the API logged it.
func requireDeviceKeyRows(t *testing.T, table string) {
	t.Helper()
	for _, row := range []string{
		`happy path: Android key enrolment \(Key Attestation: TEE, locked\)\s+201\s+201\s+key enrolled \(ecdsa-p256-sha256\)\s+\S+\s+yes`,
		`happy path: POST /v1/pay/device signed by the Android key\s+200\s+200\s+paid by the enrolled key\s+\S+\s+yes`,
		`happy path: Secure Enclave key enrolment \(App Attest assertion\)\s+201\s+201\s+key enrolled \(ecdsa-p256-sha256\)\s+\S+\s+yes`,
		`happy path: POST /v1/pay/device signed by the Secure Enclave key\s+200\s+200\s+paid by the enrolled key\s+\S+\s+yes`,
		`attack: Android key from a device with an unlocked bootloader\s+401\s+401\s+invalid-attestation \(boot_state\)\s+\S+\s+yes`,
		`attack: Android software-only key \(emulator\)\s+401\s+401\s+invalid-attestation \(security_level\)\s+\S+\s+yes`,
		`attack: payment signed by a revoked device key \(lost phone\)\s+401\s+401\s+invalid-signature \(revoked_key\)\s+\S+\s+yes`,
	} {
		require.Regexp(t, row, table)
	}
}

func TestDemoWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-redis", srv.Addr()}, &out, &errOut), out.String())
	require.NotContains(t, out.String(), " NO\n")
	requireDeviceKeyRows(t, out.String())
	keys, err := srv.Do("DBSIZE")
	require.NoError(t, err)
	require.NotEqual(t, ":0", keys, "the stores wrote to Redis")
	// The two enrolled device keys live in Redis (the Android one as a
	// revoked tombstone): the revoked-key row was refused from there.
	deviceKeys, err := srv.Do("KEYS", "apiguard-demo:dk:*")
	require.NoError(t, err)
	require.Equal(t, "*2", deviceKeys, "the device keys were stored in Redis")
}

func TestDemoServe(t *testing.T) {
	base, hc := serveDemo(t)
	require.True(t, strings.HasPrefix(base, "https://"), base)
	resp, err := hc.Get(base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Strict-Transport-Security"))
	resp, err = hc.Get(base + "/v1/orders")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)
	resp, err = hc.Get(base + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), "apiguard_security_events_total")
	require.Contains(t, string(b), "apiguard_tls_certificate_expiry")
	_, err = http.Get(base + "/healthz")
	require.Error(t, err, "a client that does not trust the throwaway CA")
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
// token responses excepted: handing out tokens is their job); and that
// personal data, the account's e-mail address and the client's address,
// appear in the log only truncated (***@shop.example, 127.0.0.0/24).
func TestSecretHygiene(t *testing.T) {
	var logs lockedBuffer
	d, err := start(startOptions{addr: "127.0.0.1:0", logger: newLogger(&logs, slog.LevelDebug)})
	require.NoError(t, err)
	defer d.close()

	c, err := newClient(d.base, d.api)
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

	// Personal data: the failed logins logged who and from where, cut to
	// the domain and the /24.
	require.Contains(t, logText, `"msg":"login failed","user":"***@shop.example","client_ip":"127.0.0.0/24:`)
	require.NotContains(t, logText, demoUser)
	require.NotContains(t, logText, strings.Split(demoUser, "@")[0]+"@")
	require.NotRegexp(t, `127\.0\.0\.[1-9]`, logText, "a client address in the logs")
	require.Contains(t, logText, `"event":"tls_handshake_failed"`, "the transport attacks were logged")
}

// lockedBuffer is a bytes.Buffer that the server's goroutines may write
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
