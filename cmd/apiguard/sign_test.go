package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/apiguard/apiguard/signing"
	"github.com/stretchr/testify/require"
)

// signedAPI is an httptest server behind signing.Verifier with keys;
// POST /v1/pay echoes the device and the body.
func signedAPI(t *testing.T, keys signing.KeyStore) *httptest.Server {
	t.Helper()
	v, err := signing.New(signing.Config{Keys: keys, Scheme: "http", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/pay", v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		device, _ := signing.KeyIDFrom(r.Context())
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "paid by "+device+": "+string(body))
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func randomSecret(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestSignSendAcceptedBySigning(t *testing.T) {
	master := randomSecret(t)
	const salt = "shop-api"
	secret, err := signing.DeriveSecret(master, []byte(salt), "device-7")
	require.NoError(t, err)
	srv := signedAPI(t, signing.DerivedKeys(master, []byte(salt)))
	env := map[string]string{
		"SHOP_MASTER": base64.StdEncoding.EncodeToString(master),
		"DEVICE_7":    base64.StdEncoding.EncodeToString(secret),
	}
	secretFile := writeFile(t, "device.b64", []byte(base64.StdEncoding.EncodeToString(secret)+"\n"))
	tests := []struct {
		name string
		key  []string
	}{
		{"derived_from_master_env", []string{"-master-env", "SHOP_MASTER", "-salt", salt}},
		{"device_secret_env", []string{"-secret-env", "DEVICE_7"}},
		{"device_secret_file", []string{"-secret-file", secretFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"sign", "-keyid", "device-7", "-url", srv.URL + "/v1/pay", "-data", `{"amount":1}`,
				"-H", "Content-Type: application/json", "-send"}, tt.key...)
			r := cliRun(t, env, args...)
			require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
			require.Equal(t, "200 OK\npaid by device-7: {\"amount\":1}\n", r.stdout)
			requireNoSecret(t, r, master)
			requireNoSecret(t, r, secret)
		})
	}
}

// curlHeaders reads the -H values of a printed curl command.
func curlHeaders(cmd string) http.Header {
	h := http.Header{}
	for _, m := range regexp.MustCompile(`-H '([^']*)'`).FindAllStringSubmatch(cmd, -1) {
		name, value, _ := strings.Cut(m[1], ": ")
		h.Add(name, value)
	}
	return h
}

func TestSignCurlAcceptedAndTamperedRefused(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	keyFile := writeKey(t, priv)
	srv := signedAPI(t, signing.KeyStoreFunc(func(_ context.Context, id string) (signing.Key, error) {
		if id != "device-9" {
			return signing.Key{}, signing.ErrUnknownKey
		}
		return signing.Key{ID: id, Algorithm: signing.AlgEd25519, PublicKey: pub}, nil
	}))
	body := `{"amount":100,"to":"alice"}`
	r := cliRun(t, nil, "sign", "-keyid", "device-9", "-key", keyFile, "-url", srv.URL+"/v1/pay", "-data", body)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "curl -i -X POST "), r.stdout)
	require.Contains(t, r.stdout, `--data-raw '`+body+`'`)
	require.Contains(t, r.stdout, `alg="ed25519"`)
	pemKey, _ := os.ReadFile(keyFile)
	requireNoSecret(t, r, pemKey)
	requireNoSecret(t, r, priv.Seed())

	send := func(body string) int {
		req, err := http.NewRequest("POST", srv.URL+"/v1/pay", strings.NewReader(body))
		require.NoError(t, err)
		for name, vs := range curlHeaders(r.stdout) {
			req.Header[name] = vs
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	// A tampered body fails before the nonce is spent; then the request
	// as printed passes, once.
	require.Equal(t, http.StatusUnauthorized, send(`{"amount":100,"to":"mallory"}`), "tampered body")
	require.Equal(t, http.StatusOK, send(body))
	require.Equal(t, http.StatusUnauthorized, send(body), "replayed")
}

// writeKey writes a private key as PKCS #8 PEM, as token keygen does.
func writeKey(t *testing.T, key crypto.Signer) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "device.pem")
	require.NoError(t, writePrivateKey(name, key))
	return name
}

func TestSignECDSADeviceKeyAccepted(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	keyFile := writeKey(t, priv)
	srv := signedAPI(t, signing.KeyStoreFunc(func(_ context.Context, id string) (signing.Key, error) {
		return signing.Key{ID: id, Algorithm: signing.AlgECDSAP256SHA256, PublicKey: &priv.PublicKey}, nil
	}))
	r := cliRun(t, nil, "sign", "-keyid", "se-key-1", "-key", keyFile, "-url", srv.URL+"/v1/pay", "-data", "{}", "-send")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	require.Equal(t, "200 OK\npaid by se-key-1: {}\n", r.stdout)
	pemKey, _ := os.ReadFile(keyFile)
	requireNoSecret(t, r, pemKey)
	raw, err := priv.Bytes()
	require.NoError(t, err)
	requireNoSecret(t, r, raw)
}

func TestSignWrongSecretRefused(t *testing.T) {
	master := randomSecret(t)
	srv := signedAPI(t, signing.DerivedKeys(master, []byte("shop-api")))
	other := randomSecret(t)
	r := cliRun(t, map[string]string{"M": base64.StdEncoding.EncodeToString(other)},
		"sign", "-keyid", "device-7", "-master-env", "M", "-salt", "shop-api", "-url", srv.URL+"/v1/pay", "-data", "{}", "-send")
	require.Equal(t, exitFailure, r.code)
	require.True(t, strings.HasPrefix(r.stdout, "401 "), r.stdout)
	requireNoSecret(t, r, other)
}

func TestSignSecretErrorsNeverQuoteTheSecret(t *testing.T) {
	short := "c2hvcnQtc2VjcmV0" // gitleaks:allow -- base64 of "short-secret", a test value
	notB64 := "not base64 but a secret!"
	tests := []struct {
		name   string
		env    string
		secret string
	}{
		{"secret_too_short", short, "short-secret"},
		{"secret_not_base64", notB64, notB64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cliRun(t, map[string]string{"S": tt.env}, "sign", "-keyid", "d", "-secret-env", "S", "-url", "http://127.0.0.1:1/x")
			require.Equal(t, exitFailure, r.code)
			require.Contains(t, r.stderr, "apiguard sign:")
			requireNoSecret(t, r, []byte(tt.secret))
			requireNoSecret(t, r, []byte(tt.env))
		})
	}
}

// A server (or anyone who can answer for it on http) redirects the signed
// request to another host: sign -send must not hand that host a fresh,
// replayable signature, the Authorization header or the body. The
// redirected request could not verify anyway: @target-uri is signed.
func TestSignSendRedirectToAnotherHostNotFollowed(t *testing.T) {
	var leaked atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Signature") != "" || r.Header.Get("Signature-Input") != "" {
			leaked.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(evil.Close)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/collect", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(api.Close)
	secret := randomSecret(t)
	r := cliRun(t, map[string]string{"S": base64.StdEncoding.EncodeToString(secret)},
		"sign", "-keyid", "device-7", "-secret-env", "S", "-url", api.URL+"/v1/pay", "-data", "{}", "-send")
	require.Equal(t, int64(0), leaked.Load(), "the signature went to the redirect's host")
	require.True(t, strings.HasPrefix(r.stdout, "307 "), r.stdout)
	require.Equal(t, exitFailure, r.code, "a redirect is not a success")
	requireNoSecret(t, r, secret)
}

// The common slip -secret-env "$SECRET" (the value, not the variable's
// name) or -secret-file "$SECRET": the error must not print the secret
// into the terminal or the CI log. This one is made only of letters and
// digits, so it is also a valid variable name.
func TestSignSecretGivenInsteadOfItsNameNeverEchoed(t *testing.T) {
	secret := base64.RawStdEncoding.EncodeToString([]byte("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")) // gitleaks:allow -- a test value
	require.Regexp(t, `^[A-Za-z0-9]+$`, secret)
	for _, flag := range []string{"-secret-env", "-secret-file", "-master-env", "-master-file"} {
		t.Run(flag, func(t *testing.T) {
			r := cliRun(t, nil, "sign", "-keyid", "d", flag, secret, "-url", "http://127.0.0.1:1/x")
			require.Equal(t, exitFailure, r.code)
			require.Contains(t, r.stderr, flag)
			require.NotContains(t, r.stdout+r.stderr, secret)
			require.NotContains(t, r.stdout+r.stderr, secret[:12])
		})
	}
}

// TestSignAuthorizationKeptOffTheCommandLine: -H "Authorization: Bearer
// <token>" puts the token in argv, which every local user reads with ps.
// -auth-env and -auth-file send the same header, covered by the
// signature, and the value is never printed.
func TestSignAuthorizationKeptOffTheCommandLine(t *testing.T) {
	master := randomSecret(t)
	const salt, authz = "shop-api", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl" // gitleaks:allow -- a test value, no real token
	v, err := signing.New(signing.Config{Keys: signing.DerivedKeys(master, []byte(salt)), Scheme: "http", Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var got, covered atomic.Value
	reached := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusOK)
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		covered.Store(strings.Contains(r.Header.Get("Signature-Input"), `"authorization"`))
		reached.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"M": base64.StdEncoding.EncodeToString(master), "API_AUTH": authz}
	authFile := writeFile(t, "auth", []byte(authz+"\n"))
	for _, from := range [][]string{{"-auth-env", "API_AUTH"}, {"-auth-file", authFile}} {
		t.Run(from[0], func(t *testing.T) {
			got.Store("")
			args := append([]string{"sign", "-keyid", "device-7", "-master-env", "M", "-salt", salt, "-url", srv.URL + "/v1/pay", "-data", "{}", "-send"}, from...)
			r := cliRun(t, env, args...)
			require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
			require.Equal(t, authz, got.Load(), "the handler got the header")
			require.Equal(t, true, covered.Load(), "the signature covers authorization")
			require.NotContains(t, r.stdout+r.stderr, "eyJzdWIiOiJhbGljZSJ9", "the token printed")
			requireNoSecret(t, r, master)
		})
	}
}
