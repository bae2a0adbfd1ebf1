package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// interopSkipped holds why the interop tests skipped, nil when they ran.
var interopSkipped atomic.Pointer[string]

// TestMain says when the interop tests skipped, so that a run without -v
// shows it: on stderr, which go test shows with -v, in local directory
// mode and when the package fails, and on the terminal, because in
// package list mode (go test ./...) go test hides the output of a
// package that passes.
func TestMain(m *testing.M) {
	code := m.Run()
	if msg := interopSkipped.Load(); msg != nil {
		notice := "signing: interop tests with http-message-signatures SKIPPED: " + *msg + "\n"
		fmt.Fprint(os.Stderr, notice)
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			fmt.Fprint(tty, notice)
			_ = tty.Close()
		}
	}
	os.Exit(code)
}

// nodeInterop runs testdata/interop/interop.mjs, the http-message-signatures
// package, with in as its standard input. .ci/run installs the package and
// sets APIGUARD_REQUIRE_INTEROP=1 so that CI never skips.
func nodeInterop(t *testing.T, mode string, in any) []byte {
	t.Helper()
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat("testdata/interop/node_modules/http-message-signatures"); err != nil || statErr != nil {
		msg := "node or http-message-signatures is missing: run npm install in signing/testdata/interop"
		if os.Getenv("APIGUARD_REQUIRE_INTEROP") == "1" {
			t.Fatal(msg)
		}
		interopSkipped.Store(&msg)
		t.Skip(msg)
	}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	cmd := exec.Command(node, "interop.mjs", mode)
	cmd.Dir = "testdata/interop"
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	return out
}

func TestInteropNodeSignsGoVerifies(t *testing.T) {
	secret := bytes.Repeat([]byte("k"), 32)
	v, err := New(Config{
		Keys:   StaticKeys(map[string][]byte{"node-device": secret}),
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	tests := []struct {
		name    string
		method  string
		url     string
		body    string
		headers map[string]string
	}{
		{name: "post_with_body", method: "POST", url: "https://api.example.com/v1/pay?x=1&y=two", body: `{"amount":100}`,
			headers: map[string]string{"content-type": "application/json"}},
		{name: "get_with_authorization", method: "GET", url: "https://api.example.com/v1/orders",
			headers: map[string]string{"authorization": "Bearer abc.def.ghi"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := nodeInterop(t, "sign", map[string]any{
				"method": tt.method, "url": tt.url, "headers": tt.headers, "body": tt.body,
				"secret_b64": base64.StdEncoding.EncodeToString(secret), "keyid": "node-device", "nonce": "node-nonce-" + string(rune('a'+i)),
			})
			var hdr map[string]string
			require.NoError(t, json.Unmarshal(out, &hdr))
			r := httptest.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if tt.body == "" {
				r.Body, r.ContentLength = http.NoBody, 0
			}
			for k, val := range hdr {
				r.Header.Set(k, val)
			}
			res, err := v.Verify(r)
			require.NoError(t, err, "%v", hdr)
			require.Equal(t, "node-device", res.KeyID)
			require.Equal(t, tt.body, string(res.Body))

			// The same request again is a replay.
			r2 := httptest.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if tt.body == "" {
				r2.Body, r2.ContentLength = http.NoBody, 0
			}
			r2.Header = r.Header.Clone()
			_, err = v.Verify(r2)
			require.ErrorIs(t, err, ErrReplay)
		})
	}
}

func TestInteropGoSignsNodeVerifies(t *testing.T) {
	secret := bytes.Repeat([]byte("s"), 32)
	s := NewSigner("go-device", secret)
	r, err := http.NewRequest("POST", "https://api.example.com/v1/pay?x=1", strings.NewReader(`{"amount":7}`))
	require.NoError(t, err)
	r.Header.Set("Authorization", "Bearer t0k3n")
	require.NoError(t, s.Sign(r))
	_, _ = io.ReadAll(r.Body)
	headers := map[string]string{}
	for k := range r.Header {
		headers[strings.ToLower(k)] = r.Header.Get(k)
	}
	verify := func(method string, h map[string]string) bool {
		out := nodeInterop(t, "verify", map[string]any{"method": method, "url": r.URL.String(), "headers": h,
			"secret_b64": base64.StdEncoding.EncodeToString(secret), "keyid": "go-device"})
		var res struct{ Verified bool }
		require.NoError(t, json.Unmarshal(out, &res))
		return res.Verified
	}
	require.True(t, verify("POST", headers), "node verifies what the Go Signer produced")
	tampered := map[string]string{}
	for k, val := range headers {
		tampered[k] = val
	}
	tampered["authorization"] = "Bearer other"
	require.False(t, verify("POST", tampered), "and refuses it when a covered header changes")
	require.False(t, verify("PUT", headers), "or the method")
	_ = time.Now
}

// deviceKeyAlgs are the device-key algorithms the npm client signs and
// verifies, each with a fresh key.
func deviceKeyAlgs(t *testing.T) []struct {
	alg  string
	priv crypto.Signer
} {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return []struct {
		alg  string
		priv crypto.Signer
	}{{AlgECDSAP256SHA256, ec}, {AlgEd25519, ed}}
}

func derB64(t *testing.T, marshal func(any) ([]byte, error), k any) string {
	t.Helper()
	b, err := marshal(k)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}

// TestInteropNodeSignsGoVerifiesDeviceKeys: http-message-signatures signs
// with an ECDSA P-256 and an Ed25519 key (Node's ieee-p1363 r || s for
// ECDSA); the Verifier, given the public key, accepts it once.
func TestInteropNodeSignsGoVerifiesDeviceKeys(t *testing.T) {
	for _, k := range deviceKeyAlgs(t) {
		t.Run(k.alg, func(t *testing.T) {
			v, err := New(Config{
				Keys: KeyStoreFunc(func(_ context.Context, id string) (Key, error) {
					if id != "node-device" {
						return Key{}, ErrUnknownKey
					}
					return Key{ID: id, Algorithm: k.alg, PublicKey: k.priv.Public()}, nil
				}),
				Logger: slog.New(slog.DiscardHandler),
			})
			require.NoError(t, err)
			body := `{"amount":100}`
			out := nodeInterop(t, "sign", map[string]any{
				"method": "POST", "url": "https://api.example.com/v1/pay?x=1", "body": body,
				"headers": map[string]string{"content-type": "application/json", "authorization": "Bearer abc.def.ghi"},
				"alg":     k.alg, "private_pkcs8_b64": derB64(t, x509.MarshalPKCS8PrivateKey, k.priv),
				"keyid": "node-device", "nonce": "node-nonce-" + k.alg,
			})
			var hdr map[string]string
			require.NoError(t, json.Unmarshal(out, &hdr))
			req := func() *http.Request {
				r := httptest.NewRequest("POST", "https://api.example.com/v1/pay?x=1", strings.NewReader(body))
				for name, val := range hdr {
					r.Header.Set(name, val)
				}
				return r
			}
			require.Contains(t, req().Header.Get("Signature-Input"), `alg="`+k.alg+`"`)
			res, err := v.Verify(req())
			require.NoError(t, err, "%v", hdr)
			require.Equal(t, k.alg, res.Algorithm)
			require.Equal(t, body, string(res.Body))
			_, err = v.Verify(req())
			require.ErrorIs(t, err, ErrReplay)
		})
	}
}

// TestInteropGoSignsNodeVerifiesDeviceKeys: the Signer signs with an
// ECDSA P-256 and an Ed25519 key; http-message-signatures, given the
// public key, verifies it, and refuses it once a covered part changes.
func TestInteropGoSignsNodeVerifiesDeviceKeys(t *testing.T) {
	for _, k := range deviceKeyAlgs(t) {
		t.Run(k.alg, func(t *testing.T) {
			s, err := NewKeySigner("go-device", k.priv)
			require.NoError(t, err)
			r, err := http.NewRequest("POST", "https://api.example.com/v1/pay?x=1", strings.NewReader(`{"amount":7}`))
			require.NoError(t, err)
			r.Header.Set("Authorization", "Bearer t0k3n")
			require.NoError(t, s.Sign(r))
			headers := map[string]string{}
			for name := range r.Header {
				headers[strings.ToLower(name)] = r.Header.Get(name)
			}
			verify := func(method string, h map[string]string) bool {
				out := nodeInterop(t, "verify", map[string]any{"method": method, "url": r.URL.String(), "headers": h,
					"alg": k.alg, "public_spki_b64": derB64(t, x509.MarshalPKIXPublicKey, k.priv.Public()), "keyid": "go-device"})
				var res struct{ Verified bool }
				require.NoError(t, json.Unmarshal(out, &res))
				return res.Verified
			}
			require.True(t, verify("POST", headers), "node verifies what the Go Signer produced")
			tampered := maps.Clone(headers)
			tampered["authorization"] = "Bearer other"
			require.False(t, verify("POST", tampered), "and refuses it when a covered header changes")
			require.False(t, verify("PUT", headers), "or the method")
		})
	}
}
