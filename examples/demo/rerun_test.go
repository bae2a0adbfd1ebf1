package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

// TestDemoRunsAgainOnTheSameRedis runs the demo again and again on one
// redis-server, as a newcomer does: twice with secrets of its own (the
// risk history is stored under the account alone), then in a quick loop
// with one shared secret (the rate limits and failure budgets are shared
// as well). Every run must pass: the Paris call of a run is not judged
// against the Sydney call of the run before, and a run does not meet the
// per-user or per-address limit an earlier one spent. Where the system
// routes only 127.0.0.1 (macOS), every run shares that address's limit
// (burst 200), so the loop is cut to the two runs that fit it.
func TestDemoRunsAgainOnTheSameRedis(t *testing.T) {
	srv := redistest.Start(t)
	master := make([]byte, 32)
	_, err := rand.Read(master)
	require.NoError(t, err)
	shared := base64.StdEncoding.EncodeToString(master)
	secrets := []string{"", "", shared, shared}
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err == nil {
		_ = ln.Close()
		secrets = append(secrets, shared, shared)
	}
	for i, secret := range secrets {
		t.Setenv(secretEnv, secret)
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"-redis", srv.Addr()}, &out, &errOut)
		require.NoError(t, err, "run %d, shared secret: %t\n%s", i+1, secret != "", out.String())
		require.NotContains(t, out.String(), " NO\n")
		m := regexp.MustCompile(`summary: (\d+) of (\d+) requests answered as expected; (\d+) of (\d+) attacks stopped`).FindStringSubmatch(out.String())
		require.NotNil(t, m, out.String())
		require.Equal(t, m[1], m[2], "run %d", i+1)
		require.Equal(t, m[3], m[4], "run %d", i+1)
		require.Contains(t, out.String(), "attack: premium call from Sydney a minute after Paris", "run %d", i+1)
	}
}

// The demo's authorization server signs in the account login_hint names
// (user-42 without one), so each run of the scripted client has an account
// of its own; a hint outside the account alphabet or over 64 characters is
// refused with invalid_request before a code is issued.
func TestLoginHintOutsideTheAccountAlphabetIsRefused(t *testing.T) {
	d, err := start(startOptions{addr: "127.0.0.1:0", plain: true, logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer d.close()
	hc := &http.Client{}
	type reply struct {
		Code        string `json:"code"`
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	signIn := func(hint string) (int, reply) {
		t.Helper()
		verifier, err := auth.NewPKCEVerifier()
		require.NoError(t, err)
		v := url.Values{"code_challenge": {auth.PKCEChallengeS256(verifier)}, "code_challenge_method": {"S256"}}
		if hint != "" {
			v.Set("login_hint", hint)
		}
		var out reply
		post := func(path string, v url.Values) int {
			resp, err := hc.PostForm(d.base+path, v)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
			return resp.StatusCode
		}
		if status := post("/oauth/authorize", v); status != http.StatusOK {
			return status, out
		}
		return post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {out.Code}, "code_verifier": {verifier}}), out
	}
	subject := func(token string) string {
		t.Helper()
		req, err := http.NewRequest("GET", d.base+"/v1/orders", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var body struct{ Sub string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return body.Sub
	}

	status, out := signIn("")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, demoSubject, subject(out.AccessToken), "the orders handler saw the default account")
	status, out = signIn("user-42-RUN7")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "user-42-RUN7", subject(out.AccessToken), "the orders handler saw the hinted account")

	for _, hint := range []string{"user 42", "user-42\nadmin", "../admin", "alice@shop.example", strings.Repeat("a", 65), "ü"} {
		status, out := signIn(hint)
		require.Equal(t, http.StatusBadRequest, status, "%q", hint)
		require.Equal(t, "invalid_request", out.Error, "%q", hint)
		require.Empty(t, out.Code, "%q", hint)
	}
}
