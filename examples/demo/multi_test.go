package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/signing"
	"github.com/stretchr/testify/require"
)

// TestTwoInstancesShareOneIssuerReplayCacheAndLimit starts two demo
// processes on one redis-server with one shared secret, as two instances
// behind a load balancer, and shows that they are one service: a token
// minted by A is accepted by B, a signed payment accepted at A is refused
// as a replay at B, and a failure budget and a rate limit spent across A
// and B refuse at their totals. A third process on the same Redis without
// the secret is the control: it refuses A's token.
func TestTwoInstancesShareOneIssuerReplayCacheAndLimit(t *testing.T) {
	srv := redistest.Start(t)
	bin := buildDemo(t)
	master := make([]byte, 32)
	_, err := rand.Read(master)
	require.NoError(t, err)
	secret := base64.StdEncoding.EncodeToString(master)

	a := startInstance(t, bin, srv.Addr(), secret)
	b := startInstance(t, bin, srv.Addr(), secret)
	loner := startInstance(t, bin, srv.Addr(), "")
	hc := &http.Client{Timeout: 5 * time.Second}

	// One issuer: the token A printed is accepted at B; an instance
	// without the secret has a key of its own and refuses it.
	firstRead := time.Now() // the per-user limit below counts from here
	status, reason := send(t, hc, "GET", b.base+"/v1/orders", "", bearerHeader(a.token), "")
	require.Equal(t, http.StatusOK, status, "B refused A's token: %s", reason)
	// (Its key has A's key ID, so it answers 503 until its key-set
	// refresh finds no other key, then 401.)
	status, reason = send(t, hc, "GET", loner.base+"/v1/orders", "", bearerHeader(a.token), "")
	require.Contains(t, []int{http.StatusUnauthorized, http.StatusServiceUnavailable}, status,
		"an instance without the shared secret accepted A's token: %s", reason)

	// One replay cache: a payment token from A's authorization server, a
	// payment signed for the service's public host (A's, kept by the load
	// balancer in Host), accepted at A and replayed at B.
	payToken := login(t, hc, a.base)
	sec, err := deriveSecrets(master)
	require.NoError(t, err)
	device, err := signing.DeriveSecret(sec.deviceMaster, demoSalt, "device-42.v1")
	require.NoError(t, err)
	publicHost := strings.TrimPrefix(a.base, "http://")
	signed := func() map[string]string {
		r, err := http.NewRequest("POST", a.base+"/v1/pay", strings.NewReader(`{"amount":7}`))
		require.NoError(t, err)
		r.Header.Set("Authorization", "Bearer "+payToken)
		r.Header.Set("Content-Type", "application/json")
		require.NoError(t, signing.NewSigner("device-42.v1", device).Sign(r))
		h := map[string]string{}
		for k := range r.Header {
			h[k] = r.Header.Get(k)
		}
		return h
	}
	pay := signed()
	status, reason = send(t, hc, "POST", a.base+"/v1/pay", publicHost, pay, `{"amount":7}`)
	require.Equal(t, http.StatusOK, status, "A refused the payment: %s", reason)
	status, reason = send(t, hc, "POST", b.base+"/v1/pay", publicHost, pay, `{"amount":7}`)
	require.Equal(t, http.StatusUnauthorized, status, "B accepted a payment A had accepted")
	require.Equal(t, "stale-signature", reason)
	require.Equal(t, "1", securityEvents(t, hc, b.base)["replay (nonce_reused)"], "B counted the payment as a replay")
	status, reason = send(t, hc, "POST", b.base+"/v1/pay", publicHost, signed(), `{"amount":7}`)
	require.Equal(t, http.StatusOK, status, "B refused a fresh payment for the public host: %s", reason)

	// One failure budget (3 failed logins per account and address, then a
	// lockout): two failures at A and one at B spend it; the next attempt
	// is refused at either.
	fail := func(base string) int {
		form := url.Values{"username": {"bob@shop.example"}, "password": {"wrong"}}.Encode()
		status, _ := send(t, hc, "POST", base+"/v1/login", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form)
		return status
	}
	var statuses []int
	for _, base := range []string{a.base, b.base, a.base, b.base, a.base} {
		statuses = append(statuses, fail(base))
	}
	require.Equal(t, []int{401, 401, 401, 429, 429}, statuses, "failed logins at A, B, A, B, A")

	// One rate limit (per user: a burst of 5, then one every 2 s). The
	// token spent one at B above; four more alternate between A and B,
	// and the next is refused at A and at B.
	statuses = statuses[:0]
	for _, base := range []string{a.base, b.base, a.base, b.base, a.base, b.base} {
		status, _ := send(t, hc, "GET", base+"/v1/orders", "", bearerHeader(a.token), "")
		statuses = append(statuses, status)
	}
	if elapsed := time.Since(firstRead); elapsed >= 2*time.Second {
		// Not a timing assert: the limit refills a read every 2 s, so the
		// exact counts below hold only when the reads took less than that
		// (they take milliseconds on loopback).
		t.Logf("the reads took %v: the limit may have refilled, counts not checked", elapsed)
		return
	}
	require.Equal(t, []int{200, 200, 200, 200, 429, 429}, statuses, "order reads at A, B, A, B, A, B after one at B")
	noSecretIn(t, master, sec, a.out.String()+b.out.String())
}

// noSecretIn checks that neither the master nor a secret derived from it
// appears in text, in any of the encodings a careless log line would use.
func noSecretIn(t *testing.T, master []byte, sec *secrets, text string) {
	t.Helper()
	issuerKey, err := sec.issuerKey.Bytes()
	require.NoError(t, err)
	for _, b := range [][]byte{master, sec.limitKey, sec.deviceMaster, issuerKey} {
		for _, enc := range []string{string(b), hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b)} {
			require.NotContains(t, text, enc, "a secret in the demo's output")
		}
	}
}

// instance is one demo process: its base URL, the token it printed, and
// its output.
type instance struct {
	base, token string
	out         *lockedBuffer // stdout and stderr
}

// buildDemo builds the demo's binary once for the test.
func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demo")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// startInstance runs the demo with -serve -http on Redis at redisAddr,
// with secret in APIGUARD_DEMO_SECRET ("" for none), and waits for its
// curl lines. The process is interrupted when the test ends.
func startInstance(t *testing.T, bin, redisAddr, secret string) instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-serve", "-http", "-redis", redisAddr)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.Env = append(os.Environ(), secretEnv+"="+secret)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := new(lockedBuffer)
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", cmd.Path, stderr.String())
		}
	})

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = stderr.Write([]byte(sc.Text() + "\n"))
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	in := instance{out: stderr}
	baseRE := regexp.MustCompile(`^apiguard demo API on (http://\S+)$`)
	tokenRE := regexp.MustCompile(`Bearer (\S+)'`)
	timeout := time.After(10 * time.Second)
	for in.token == "" {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the demo ended before its curl lines; stderr:\n%s", stderr.String())
			if m := baseRE.FindStringSubmatch(line); m != nil {
				in.base = m[1]
			}
			if m := tokenRE.FindStringSubmatch(line); m != nil {
				in.token = m[1]
			}
		case <-timeout:
			t.Fatalf("the demo printed no token in 10 s; stderr:\n%s", stderr.String())
		}
	}
	require.NotEmpty(t, in.base)
	go func() { // keep the pipe drained
		for range lines {
		}
	}()
	if secret == "" {
		require.Contains(t, stderr.String(), "shares Redis but no tokens or limits", "the warning without a shared secret")
	}
	return in
}

// login runs the authorization code flow with PKCE at base and returns
// the access token.
func login(t *testing.T, hc *http.Client, base string) string {
	t.Helper()
	verifier, err := auth.NewPKCEVerifier()
	require.NoError(t, err)
	var out struct {
		Code        string `json:"code"`
		AccessToken string `json:"access_token"`
	}
	form := func(path string, v url.Values) {
		resp, err := hc.PostForm(base+path, v)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out), path)
	}
	form("/oauth/authorize", url.Values{"code_challenge": {auth.PKCEChallengeS256(verifier)}, "code_challenge_method": {"S256"}})
	form("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {out.Code}, "code_verifier": {verifier}})
	require.NotEmpty(t, out.AccessToken)
	return out.AccessToken
}

// send makes one request, with host as its Host header when not "", and
// returns the status and reasonOf the answer.
func send(t *testing.T, hc *http.Client, method, u, host string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp.StatusCode, reasonOf(resp)
}

func bearerHeader(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

// securityEvents reads the security events counted at base's /metrics,
// as "event (reason)" to count.
func securityEvents(t *testing.T, hc *http.Client, base string) map[string]string {
	t.Helper()
	resp, err := hc.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	counts := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		labels, value, _ := strings.Cut(sc.Text(), "} ")
		if strings.HasPrefix(labels, "apiguard_security_events_total{") {
			counts[label(labels, "event")+" ("+label(labels, "reason")+")"] = value
		}
	}
	require.NoError(t, sc.Err())
	return counts
}

// The shared secrets derive from the master alone, each under its own
// label, and none is the demo's constant device master.
func TestSecretsDeriveFromTheMasterAlone(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	s1, err := deriveSecrets(master)
	require.NoError(t, err)
	s2, err := deriveSecrets(bytes.Clone(master))
	require.NoError(t, err)
	require.True(t, s1.shared)
	require.Equal(t, s1.limitKey, s2.limitKey)
	require.Equal(t, s1.deviceMaster, s2.deviceMaster)
	require.True(t, s1.issuerKey.Equal(s2.issuerKey), "the issuer key is deterministic")
	require.NotEqual(t, s1.limitKey, s1.deviceMaster)
	require.NotEqual(t, demoMaster, s1.deviceMaster)
	other, err := deriveSecrets(bytes.Repeat([]byte{8}, 32))
	require.NoError(t, err)
	require.NotEqual(t, s1.limitKey, other.limitKey)
	require.False(t, s1.issuerKey.Equal(other.issuerKey))

	r1, err := randomSecrets()
	require.NoError(t, err)
	r2, err := randomSecrets()
	require.NoError(t, err)
	require.False(t, r1.shared)
	require.NotEqual(t, r1.limitKey, r2.limitKey, "without a master each process has its own")
}

// A master from the environment or a file is used as given; a short or
// malformed one is a startup error that does not quote it.
func TestSecretFromEnvOrFile(t *testing.T) {
	master := bytes.Repeat([]byte{9}, 32)
	want, err := deriveSecrets(master)
	require.NoError(t, err)
	t.Setenv(secretEnv, " "+base64.StdEncoding.EncodeToString(master)+"\n")
	got, err := loadSecrets("")
	require.NoError(t, err)
	require.Equal(t, want.limitKey, got.limitKey)

	file := filepath.Join(t.TempDir(), "secret")
	other := bytes.Repeat([]byte{10}, 48)
	require.NoError(t, os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(other)+"\n"), 0o600))
	fromFile, err := loadSecrets(file)
	require.NoError(t, err)
	wantFile, err := deriveSecrets(other)
	require.NoError(t, err)
	require.Equal(t, wantFile.limitKey, fromFile.limitKey, "the file wins over the environment")

	for _, bad := range []string{base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 31)), "not base64 at all!!"} {
		t.Setenv(secretEnv, bad)
		_, err := loadSecrets("")
		require.Error(t, err)
		require.NotContains(t, err.Error(), bad)
	}
	var out, errOut bytes.Buffer
	require.ErrorContains(t, run(context.Background(), []string{"-http"}, &out, &errOut), "not base64", "the demo refuses to start")
	_, err = loadSecrets(filepath.Join(t.TempDir(), "missing"))
	require.ErrorContains(t, err, "-secret-file")
}
