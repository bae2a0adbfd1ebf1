package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// cliRun runs the CLI in-process with env as its environment.
func cliRun(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut, func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// requireNoSecret fails when any output of r holds secret, raw or in a
// usual text form (base64, base64url, hex), or any line of a PEM secret.
func requireNoSecret(t *testing.T, r result, secret []byte) {
	t.Helper()
	forms := []string{string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret), hex.EncodeToString(secret)}
	if bytes.HasPrefix(secret, []byte("-----BEGIN")) {
		for _, line := range strings.Split(string(secret), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				forms = append(forms, line)
			}
		}
	}
	for _, f := range forms {
		require.NotContains(t, r.stdout, f, "a secret on stdout")
		require.NotContains(t, r.stderr, f, "a secret on stderr")
	}
}

// writeFile writes a test file and returns its path.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// lineWriter is a concurrency-safe writer that reports its first line.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := bytes.IndexByte(w.buf.Bytes(), '\n') >= 0
	w.buf.Write(p)
	if i := bytes.IndexByte(w.buf.Bytes(), '\n'); !had && i >= 0 {
		w.first <- w.buf.String()[:i]
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// start runs a long-running command (token serve) until the returned
// stop is called; it returns the first line of its stdout.
func start(t *testing.T, args ...string) (first string, stop func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{first: make(chan string, 1)}
	errOut := &lineWriter{first: make(chan string, 1)}
	done := make(chan int, 1)
	go func() {
		done <- (&cli{ctx: ctx, stdout: out, stderr: errOut, env: func(string) string { return "" }}).run(args)
	}()
	select {
	case first = <-out.first:
	case code := <-done:
		cancel()
		t.Fatalf("exited with %d before printing: %s", code, errOut.String())
	}
	return first, func() result {
		cancel()
		code := <-done
		return result{code: code, stdout: out.String(), stderr: errOut.String()}
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
	}{
		{"no_command", nil},
		{"unknown_command", []string{"frobnicate"}},
		{"group_without_subcommand", []string{"token"}},
		{"unknown_subcommand", []string{"token", "burn"}},
		{"unknown_flag", []string{"dpop", "-frob"}},
		{"keygen_without_out", []string{"token", "keygen"}},
		{"keygen_unknown_alg", []string{"token", "keygen", "-out", filepath.Join(dir, "k.pem"), "-alg", "HS256"}},
		{"mint_without_issuer", []string{"token", "mint", "-key", "k.pem", "-sub", "a", "-aud", "b"}},
		{"mint_negative_lifetime", []string{"token", "mint", "-key", "k.pem", "-iss", "i", "-sub", "a", "-aud", "b", "-lifetime", "-1m"}},
		{"serve_on_public_address", []string{"token", "serve", "-key", "k.pem", "-addr", "0.0.0.0:0"}},
		{"serve_without_keys", []string{"token", "serve"}},
		{"dpop_relative_url", []string{"dpop", "-key", "k.pem", "-url", "/v1/orders"}},
		{"sign_two_key_sources", []string{"sign", "-keyid", "d", "-url", "https://a/x", "-secret-env", "S", "-key", "k.pem"}},
		{"sign_no_key_source", []string{"sign", "-keyid", "d", "-url", "https://a/x"}},
		{"sign_secret_on_command_line_is_no_flag", []string{"sign", "-keyid", "d", "-url", "https://a/x", "-secret", "c2VjcmV0"}},
		{"dpop_two_token_sources", []string{"dpop", "-key", "k.pem", "-url", "https://a/x", "-token", "t", "-token-env", "T"}},
		{"sign_auth_file_and_env", []string{"sign", "-keyid", "d", "-url", "https://a/x", "-secret-env", "S", "-auth-file", "a", "-auth-env", "A", "-send"}},
		{"sign_auth_env_printed_as_curl", []string{"sign", "-keyid", "d", "-url", "https://a/x", "-secret-env", "S", "-auth-env", "A"}},
		{"sign_auth_env_and_header", []string{"sign", "-keyid", "d", "-url", "https://a/x", "-secret-env", "S", "-auth-env", "A", "-H", "authorization: Bearer x", "-send"}},
		{"jwks_check_without_url", []string{"jwks", "check"}},
		{"jwks_check_two_urls", []string{"jwks", "check", "https://a/j", "https://b/j"}},
		{"jwks_check_cleartext_remote", []string{"jwks", "check", "http://login.example.com/jwks"}},
		{"discover_without_issuer", []string{"discover"}},
		{"attest_without_object", []string{"attest", "verify", "-app-id", "T.a"}},
		{"attest_both_objects", []string{"attest", "verify", "-app-id", "T.a", "-attestation", "a", "-assertion", "b"}},
		{"attest_assertion_without_key", []string{"attest", "verify", "-app-id", "T.a", "-assertion", "b", "-url", "https://a/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cliRun(t, nil, tt.args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Empty(t, r.stdout, "usage errors go to stderr")
			require.Contains(t, r.stderr, "usage: apiguard")
		})
	}
}

func TestHelp(t *testing.T) {
	r := cliRun(t, nil, "-h")
	require.Equal(t, exitOK, r.code)
	for _, cmd := range commands() {
		require.Contains(t, r.stdout, cmd.path)
		t.Run(strings.ReplaceAll(cmd.path, " ", "_"), func(t *testing.T) {
			r := cliRun(t, nil, append(strings.Fields(cmd.path), "-h")...)
			require.Equal(t, exitOK, r.code)
			require.True(t, strings.HasPrefix(r.stdout, "usage: apiguard "+cmd.path+" "), r.stdout)
			require.Empty(t, r.stderr)
		})
	}
	r = cliRun(t, nil, "token", "-h")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stdout, "token mint")
}
