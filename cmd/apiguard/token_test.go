package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/stretchr/testify/require"
)

const (
	testIssuer   = "https://login.example.com/"
	testAudience = "https://api.example.com"
)

// keygen makes a key with token keygen and returns its file and the
// public set printed.
func keygen(t *testing.T, alg string) (string, jwk.Set) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "key.pem")
	r := cliRun(t, nil, "token", "keygen", "-alg", alg, "-out", file)
	require.Equal(t, exitOK, r.code, r.stderr)
	pemKey, err := os.ReadFile(file)
	require.NoError(t, err)
	requireNoSecret(t, r, pemKey)
	set, err := jwk.Parse([]byte(r.stdout))
	require.NoError(t, err)
	return file, set
}

func TestTokenKeygenAndMintVerifiedByAuth(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			file, set := keygen(t, alg)
			fi, err := os.Stat(file)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the private key is for its owner only")
			require.Equal(t, 1, set.Len())
			k, _ := set.Key(0)
			require.Equal(t, alg, k.Algorithm().String())
			require.Equal(t, "sig", k.KeyUsage())
			pub, err := jwk.PublicKeyOf(k)
			require.NoError(t, err)
			require.Equal(t, k, pub, "the printed set holds the public key only")

			r := cliRun(t, nil, "token", "mint", "-key", file, "-iss", testIssuer, "-sub", "alice", "-aud", testAudience,
				"-scope", "orders:read orders:write", "-acr", "urn:example:mfa", "-auth-time", "now")
			require.Equal(t, exitOK, r.code, r.stderr)
			pemKey, _ := os.ReadFile(file)
			requireNoSecret(t, r, pemKey)

			v, err := auth.New(auth.Config{Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: set}}})
			require.NoError(t, err)
			defer v.Close()
			claims, err := v.VerifyToken(context.Background(), strings.TrimSpace(r.stdout))
			require.NoError(t, err)
			require.Equal(t, "alice", claims.Subject)
			require.True(t, claims.HasScope("orders:write"))
			require.Equal(t, "urn:example:mfa", claims.ACR)
			require.False(t, claims.AuthTime.IsZero())
			require.Equal(t, "apiguard-cli", claims.ClientID)
			require.Empty(t, claims.KeyThumbprint, "a bearer token without -dpop-key")
			require.Equal(t, 5*time.Minute, claims.Expiry.Sub(claims.IssuedAt))
		})
	}
}

func TestTokenMintForAnotherAudienceRefusedByAuth(t *testing.T) {
	file, set := keygen(t, "ES256")
	r := cliRun(t, nil, "token", "mint", "-key", file, "-iss", testIssuer, "-sub", "alice", "-aud", "https://other.example.com")
	require.Equal(t, exitOK, r.code, r.stderr)
	v, err := auth.New(auth.Config{Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: set}}})
	require.NoError(t, err)
	defer v.Close()
	_, err = v.VerifyToken(context.Background(), strings.TrimSpace(r.stdout))
	require.ErrorIs(t, err, auth.ErrAudience)
}

func TestTokenKeygenNeverOverwrites(t *testing.T) {
	file, _ := keygen(t, "ES256")
	before, err := os.ReadFile(file)
	require.NoError(t, err)
	r := cliRun(t, nil, "token", "keygen", "-out", file)
	require.Equal(t, exitFailure, r.code)
	require.Empty(t, r.stdout)
	after, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

func TestTokenServeLoopbackJWKSUsedByAuth(t *testing.T) {
	file, _ := keygen(t, "ES256")
	jwksURL, stop := start(t, "token", "serve", "-key", file)
	require.True(t, strings.HasPrefix(jwksURL, "http://127.0.0.1:"), jwksURL)

	v, err := auth.New(auth.Config{Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: jwksURL}}})
	require.NoError(t, err)
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, v.WaitReady(ctx))
	tok := cliRun(t, nil, "token", "mint", "-key", file, "-iss", testIssuer, "-sub", "bob", "-aud", testAudience)
	require.Equal(t, exitOK, tok.code, tok.stderr)
	claims, err := v.VerifyToken(ctx, strings.TrimSpace(tok.stdout))
	require.NoError(t, err)
	require.Equal(t, "bob", claims.Subject)

	r := stop()
	require.Equal(t, exitOK, r.code, r.stderr)
	pemKey, _ := os.ReadFile(file)
	requireNoSecret(t, r, pemKey)
}

// TestTokenServeLocalhostNeverResolved: "localhost" goes through
// /etc/hosts and DNS (a search domain could answer with a routable
// address); token serve listens on the literal loopback instead.
func TestTokenServeLocalhostNeverResolved(t *testing.T) {
	for _, host := range []string{"localhost", "LocalHost"} {
		addrs, err := loopbackAddrs(host + ":8080")
		require.NoError(t, err)
		require.Equal(t, []string{"127.0.0.1:8080", "[::1]:8080"}, addrs)
	}
	for _, addr := range []string{"localhost.:8080", "localhost.example.com:8080", "0.0.0.0:8080", "[::]:8080", "192.168.1.2:8080"} {
		_, err := loopbackAddrs(addr)
		require.Error(t, err, addr)
	}
	file, _ := keygen(t, "ES256")
	jwksURL, stop := start(t, "token", "serve", "-key", file, "-addr", "localhost:0")
	require.Regexp(t, `^http://(127\.0\.0\.1|\[::1\]):[0-9]+/\.well-known/jwks\.json$`, jwksURL)
	r := stop()
	require.Equal(t, exitOK, r.code, r.stderr)
}

// TestTokenServeBoundToNonLoopbackRefused: whatever -addr said, the
// address the listener got is checked before anything is served.
func TestTokenServeBoundToNonLoopbackRefused(t *testing.T) {
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 8080},
		&net.TCPAddr{IP: net.IPv4zero, Port: 8080},
		&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 8080},
		&net.UnixAddr{Name: "/tmp/jwks.sock", Net: "unix"},
	} {
		require.Error(t, boundToLoopback(a), a.String())
	}
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8080},
		&net.TCPAddr{IP: net.ParseIP("127.1.2.3"), Port: 8080},
		&net.TCPAddr{IP: net.IPv6loopback, Port: 8080},
	} {
		require.NoError(t, boundToLoopback(a), a.String())
	}
}

func TestTokenServeRefusesSymmetricKeys(t *testing.T) {
	set := `{"keys":[{"kty":"oct","kid":"hmac","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}`
	r := cliRun(t, nil, "token", "serve", "-jwks", writeFile(t, "jwks.json", []byte(set)))
	require.Equal(t, exitFailure, r.code)
	require.Contains(t, r.stderr, "symmetric")
	require.NotContains(t, r.stderr, "c2VjcmV0")
}

func TestDPoPProofAcceptedByAuth(t *testing.T) {
	issuerKey, set := keygen(t, "ES256")
	dpopKey, _ := keygen(t, "EdDSA")
	mint := cliRun(t, nil, "token", "mint", "-key", issuerKey, "-iss", testIssuer, "-sub", "alice", "-aud", testAudience,
		"-scope", "orders:write", "-dpop-key", dpopKey)
	require.Equal(t, exitOK, mint.code, mint.stderr)
	tok := strings.TrimSpace(mint.stdout)

	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: set}},
		DPoP:    auth.DPoPRequired, DPoPURL: testAudience,
	})
	require.NoError(t, err)
	defer v.Close()

	tests := []struct {
		name     string
		proofFor []string // dpop flags
		wantErr  error
	}{
		{"proof_for_the_request", []string{"-method", "POST", "-url", testAudience + "/v1/orders?page=2"}, nil},
		{"proof_for_another_url", []string{"-method", "POST", "-url", testAudience + "/v1/admin"}, auth.ErrDPoPProof},
		{"proof_for_another_method", []string{"-method", "GET", "-url", testAudience + "/v1/orders"}, auth.ErrDPoPProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := cliRun(t, nil, append([]string{"dpop", "-key", dpopKey, "-token", tok}, tt.proofFor...)...)
			require.Equal(t, exitOK, p.code, p.stderr)
			pemKey, _ := os.ReadFile(dpopKey)
			requireNoSecret(t, p, pemKey)
			req := httptest.NewRequest("POST", testAudience+"/v1/orders?page=2", nil)
			req.Header.Set("Authorization", "DPoP "+tok)
			req.Header.Set("DPoP", strings.TrimSpace(p.stdout))
			claims, err := v.Verify(req)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "alice", claims.Subject)
			require.NotEmpty(t, claims.KeyThumbprint)
		})
	}
}

func TestDPoPProofWithoutTokenHashRefusedByAuth(t *testing.T) {
	issuerKey, set := keygen(t, "ES256")
	dpopKey, _ := keygen(t, "ES256")
	mint := cliRun(t, nil, "token", "mint", "-key", issuerKey, "-iss", testIssuer, "-sub", "alice", "-aud", testAudience, "-dpop-key", dpopKey)
	require.Equal(t, exitOK, mint.code, mint.stderr)
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: set}},
		DPoP:    auth.DPoPRequired, DPoPURL: testAudience, DPoPAlgorithms: []jwa.SignatureAlgorithm{jwa.ES256},
	})
	require.NoError(t, err)
	defer v.Close()
	p := cliRun(t, nil, "dpop", "-key", dpopKey, "-method", "GET", "-url", testAudience+"/v1/orders")
	require.Equal(t, exitOK, p.code, p.stderr)
	req := httptest.NewRequest("GET", testAudience+"/v1/orders", nil)
	req.Header.Set("Authorization", "DPoP "+strings.TrimSpace(mint.stdout))
	req.Header.Set("DPoP", strings.TrimSpace(p.stdout))
	_, err = v.Verify(req)
	require.ErrorIs(t, err, auth.ErrDPoPProof)
}

func TestDPoPProofWithServerNonce(t *testing.T) {
	issuerKey, set := keygen(t, "ES256")
	dpopKey, _ := keygen(t, "ES256")
	mint := cliRun(t, nil, "token", "mint", "-key", issuerKey, "-iss", testIssuer, "-sub", "alice", "-aud", testAudience, "-dpop-key", dpopKey)
	require.Equal(t, exitOK, mint.code, mint.stderr)
	tok := strings.TrimSpace(mint.stdout)
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: set}},
		DPoP:    auth.DPoPRequired, DPoPURL: testAudience, DPoPNonceKey: []byte("0123456789abcdef0123456789abcdef"),
	})
	require.NoError(t, err)
	defer v.Close()
	reached := 0
	h := v.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }))
	call := func(nonce string) *httptest.ResponseRecorder {
		p := cliRun(t, nil, "dpop", "-key", dpopKey, "-method", "GET", "-url", testAudience+"/v1/orders", "-token", tok, "-nonce", nonce)
		require.Equal(t, exitOK, p.code, p.stderr)
		req := httptest.NewRequest("GET", testAudience+"/v1/orders", nil)
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", strings.TrimSpace(p.stdout))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	first := call("")
	require.Equal(t, http.StatusUnauthorized, first.Code, "a proof without the server's nonce")
	nonce := first.Header().Get("DPoP-Nonce")
	require.NotEmpty(t, nonce)
	require.Equal(t, http.StatusOK, call(nonce).Code)
	require.Equal(t, 1, reached)
}

// TestDPoPTokenKeptOffTheCommandLine: -token puts the access token in
// argv, which every local user reads with ps. -token-file and -token-env
// give the same proof (ath of the token), accepted by auth, and the token
// is never printed, not even when a slip hands the value to -token-env.
func TestDPoPTokenKeptOffTheCommandLine(t *testing.T) {
	issuerKey, set := keygen(t, "ES256")
	dpopKey, _ := keygen(t, "ES256")
	mint := cliRun(t, nil, "token", "mint", "-key", issuerKey, "-iss", testIssuer, "-sub", "alice", "-aud", testAudience, "-dpop-key", dpopKey)
	require.Equal(t, exitOK, mint.code, mint.stderr)
	tok := strings.TrimSpace(mint.stdout)
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: set}},
		DPoP:    auth.DPoPRequired, DPoPURL: testAudience,
	})
	require.NoError(t, err)
	defer v.Close()
	env := map[string]string{"ACCESS_TOKEN": tok + "\n"}
	tokenFile := writeFile(t, "token", []byte(tok+"\n"))
	for _, from := range [][]string{{"-token-env", "ACCESS_TOKEN"}, {"-token-file", tokenFile}} {
		t.Run(from[0], func(t *testing.T) {
			p := cliRun(t, env, append([]string{"dpop", "-key", dpopKey, "-method", "GET", "-url", testAudience + "/v1/orders"}, from...)...)
			require.Equal(t, exitOK, p.code, p.stderr)
			require.NotContains(t, p.stdout+p.stderr, tok, "the token printed")
			req := httptest.NewRequest("GET", testAudience+"/v1/orders", nil)
			req.Header.Set("Authorization", "DPoP "+tok)
			req.Header.Set("DPoP", strings.TrimSpace(p.stdout))
			claims, err := v.Verify(req)
			require.NoError(t, err)
			require.Equal(t, "alice", claims.Subject)
		})
	}
	t.Run("token_given_instead_of_its_name", func(t *testing.T) {
		for _, flag := range []string{"-token-env", "-token-file"} {
			p := cliRun(t, nil, "dpop", "-key", dpopKey, "-url", testAudience+"/v1/orders", flag, tok)
			require.Equal(t, exitFailure, p.code, flag)
			require.Contains(t, p.stderr, flag)
			require.NotContains(t, p.stdout+p.stderr, tok[:24], flag)
		}
	})
	t.Run("token_with_a_line_break", func(t *testing.T) {
		p := cliRun(t, map[string]string{"T": tok + "\nX-Injected: 1"}, "dpop", "-key", dpopKey, "-url", testAudience+"/v1/orders", "-token-env", "T")
		require.Equal(t, exitFailure, p.code)
		require.Contains(t, p.stderr, "control character")
		require.NotContains(t, p.stdout+p.stderr, tok[:24])
	})
}
