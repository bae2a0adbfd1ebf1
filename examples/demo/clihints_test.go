package main

import (
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/signing"
	"github.com/stretchr/testify/require"
)

// TestCLIHintsWritePaths runs the commands -serve prints for the write
// paths, with the apiguard CLI built from cmd/apiguard: the signed payment
// is paid and the DPoP-bound POST creates; the secrets they use are in
// files of mode 0600, never in the printed text, and go at cleanup.
func TestCLIHintsWritePaths(t *testing.T) {
	for _, tool := range []string{"sh", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	d, err := start(startOptions{addr: "127.0.0.1:0", logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer d.close()
	hints, cleanup, err := cliHints(d)
	require.NoError(t, err)
	text := strings.Join(hints, "\n")

	secret, err := signing.DeriveSecret(d.api.deviceMaster, demoSalt, cliDevice)
	require.NoError(t, err)
	for _, s := range []string{base64.StdEncoding.EncodeToString(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(d.api.deviceMaster)} {
		require.NotContains(t, text, s, "a secret printed")
	}
	dir := regexp.MustCompile(`are in (\S+) \(0600`).FindStringSubmatch(text)
	require.Len(t, dir, 2, text)
	for _, f := range []string{"issuer.pem", cliDevice + ".secret"} {
		fi, err := os.Stat(filepath.Join(dir[1], f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
	}

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "apiguard"), "./cmd/apiguard")
	build.Dir = filepath.Join("..", "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	sh := exec.Command("sh", "-ec", text)
	sh.Dir = t.TempDir() // a dpop.pem planted here is never used
	planted := []byte("planted by another user\n")
	require.NoError(t, os.WriteFile(filepath.Join(sh.Dir, "dpop.pem"), planted, 0o600))
	sh.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err = sh.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "200 OK\n", "the signed payment was paid")
	require.Contains(t, string(out), `"device":"`+cliDevice+`"`)
	require.Regexp(t, `HTTP/[0-9.]+ 201`, string(out), "the DPoP-bound POST created")
	fi, err := os.Stat(filepath.Join(dir[1], "dpop.pem"))
	require.NoError(t, err, "the DPoP key is made in the private directory")
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(filepath.Join(sh.Dir, "dpop.pem"))
	require.NoError(t, err)
	require.Equal(t, planted, b)

	cleanup()
	_, err = os.Stat(dir[1])
	require.True(t, os.IsNotExist(err), "the secrets' directory is removed")
}

// TestCLIHintsNeverUseAKeyOutsideTheirPrivateDir: "token keygen -out
// dpop.pem || true" silently went on with a dpop.pem someone planted in
// the working directory. Every key or secret file the commands name is in
// the demo's private directory, and no failure is swallowed.
func TestCLIHintsNeverUseAKeyOutsideTheirPrivateDir(t *testing.T) {
	d, err := start(startOptions{addr: "127.0.0.1:0", logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer d.close()
	hints, cleanup, err := cliHints(d)
	require.NoError(t, err)
	defer cleanup()
	text := strings.Join(hints, "\n")
	dir := regexp.MustCompile(`are in (\S+) \(0600`).FindStringSubmatch(text)
	require.Len(t, dir, 2, text)
	require.NotContains(t, text, "|| true")
	files := regexp.MustCompile(` -(key|out|dpop-key|secret-file|master-file|token-file|auth-file) (\S+)`).FindAllStringSubmatch(text, -1)
	require.GreaterOrEqual(t, len(files), 6, text)
	for _, f := range files {
		require.Equal(t, dir[1], filepath.Dir(f[2]), "%s outside the private directory", f[0])
	}
}

// TestCLIHintsKeepTokensOffCommandLines: an access token in argv
// (-token "$TOKEN", -H "Authorization: ...") is read by every local user
// with ps. The printed commands pass tokens through the environment and
// curl's stdin (printf is a shell builtin).
func TestCLIHintsKeepTokensOffCommandLines(t *testing.T) {
	d, err := start(startOptions{addr: "127.0.0.1:0", logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer d.close()
	hints, cleanup, err := cliHints(d)
	require.NoError(t, err)
	defer cleanup()
	for _, line := range hints {
		if strings.HasPrefix(line, "#") {
			continue
		}
		require.NotContains(t, line, "-token ", line)
		require.NotContains(t, line, `-H "Authorization`, line)
		require.NotContains(t, line, `-H 'Authorization`, line)
	}
	text := strings.Join(hints, "\n")
	require.Contains(t, text, "-auth-env AUTH")
	require.Contains(t, text, "-token-env TOKEN")
}
