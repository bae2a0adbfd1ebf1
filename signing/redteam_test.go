package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Red-team tests: each fails if its attack works.

// TestHostileParamsNeverPanic (hostile_params): validly signed requests
// whose created, expires and other parameters are extreme, negative,
// far ahead or repeated get a 4xx, never a panic or a 5xx, and never
// reach the handler.
func TestHostileParamsNeverPanic(t *testing.T) {
	now := t0.Unix()
	for _, params := range []string{
		`("@method" "@target-uri");created=999999999999999;keyid="device-a";nonce="n"`,
		`("@method" "@target-uri");created=-999999999999999;keyid="device-a";nonce="n"`,
		`("@method" "@target-uri");created=0;keyid="device-a";nonce="n"`,
		fmt.Sprintf(`("@method" "@target-uri");created=%d;keyid="device-a";nonce="n"`, now+31),
		fmt.Sprintf(`("@method" "@target-uri");created=%d;keyid="device-a";nonce="n";expires=-999999999999999`, now),
		fmt.Sprintf(`("@method" "@target-uri");created=%d;keyid="device-a";nonce="n";expires=%d`, now, now),
		fmt.Sprintf(`("@method" "@target-uri");created=%d;keyid="device-a";nonce=""`, now),
		fmt.Sprintf(`("@method" "@target-uri");created=%d.5;keyid="device-a";nonce="n"`, now),
		fmt.Sprintf(`("@method" "@target-uri");created="%d";keyid="device-a";nonce="n"`, now),
		fmt.Sprintf(`("@method" "@method" "@target-uri");created=%d;keyid="device-a";nonce="n"`, now),
	} {
		// (expires far ahead with a fresh created is valid: expires only
		// shortens the window.)
		v, _, _ := newTestVerifier(t, nil)
		r := signRaw(t, "device-a", secretA, "%s", params)
		var rec *int
		require.NotPanics(t, func() {
			w, reached, _ := serve(v, r)
			require.False(t, reached, params)
			rec = &w.Code
		}, params)
		require.True(t, *rec >= 400 && *rec < 500, "%s: %d", params, *rec)
	}
	// Repeated parameters: the last wins (RFC 8941 §4.2.3.2), and the
	// whole text is signed, so the signer chose it; no panic, no 5xx.
	for _, params := range []string{
		fmt.Sprintf(`("@method" "@target-uri");created=%d;created=%d;keyid="device-a";nonce="n"`, now+99999, now),
		fmt.Sprintf(`("@method" "@target-uri");created=%d;keyid="device-b";keyid="device-a";nonce="n"`, now),
		fmt.Sprintf(`("@method" "@target-uri");created=%d;keyid="device-a";nonce="a";nonce="b"`, now),
	} {
		v, _, _ := newTestVerifier(t, nil)
		r := signRaw(t, "device-a", secretA, "%s", params)
		var code int
		require.NotPanics(t, func() { w, _, _ := serve(v, r); code = w.Code }, params)
		require.Less(t, code, 500, params)
	}
}

// TestKeyKindOracle (key_kind_oracle): a known key that cannot verify
// the request (an HMAC key with a short secret, an ECDSA key given an
// HMAC-sized signature) answers as an unknown key does.
func TestKeyKindOracle(t *testing.T) {
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	keys := KeyStoreFunc(func(_ context.Context, id string) (Key, error) {
		switch id {
		case "short":
			return Key{Algorithm: AlgHMACSHA256, Secret: []byte("short")}, nil
		case "ec":
			return Key{Algorithm: AlgECDSAP256SHA256, PublicKey: &pk.PublicKey}, nil
		}
		return Key{}, ErrUnknownKey
	})
	type answer struct {
		status int
		header http.Header
		body   string
	}
	var answers []answer
	for _, id := range []string{"short", "ec", "nobody"} {
		v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = keys })
		r := signRaw(t, id, secretA, `("@method" "@target-uri");created=%d;keyid="%s";nonce="n1"`, clk.Now().Unix(), id)
		w, reached, _ := serve(v, r)
		require.False(t, reached)
		answers = append(answers, answer{w.Code, w.Header(), w.Body.String()})
	}
	require.Equal(t, answers[2], answers[0], "short secret told apart from unknown")
	require.Equal(t, answers[2], answers[1], "asymmetric key told apart from unknown")
}

// TestClockStepBackReplaysSignature (clock_steps_back_replays, through
// the verifier): a signature accepted, its nonce evicted once expired,
// and the server's clock stepped back into its window: the capture must
// not be accepted again.
func TestClockStepBackReplaysSignature(t *testing.T) {
	v, clk, _ := newTestVerifier(t, func(c *Config) { c.ReplayCacheSize = 1 })
	capture := signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="once"`, clk.Now().Unix())
	replay := capture.Clone(context.Background())
	_, reached, _ := serve(v, capture)
	require.True(t, reached)
	clk.Advance(6 * time.Minute) // past the window: another key's request evicts the nonce, expired
	_, reached, _ = serve(v, signRaw(t, "device-b", secretB, `("@method" "@target-uri");created=%d;keyid="device-b";nonce="other"`, clk.Now().Unix()))
	require.True(t, reached)
	clk.Advance(-5 * time.Minute) // NTP steps the clock back
	_, reached, _ = serve(v, replay)
	require.False(t, reached, "replayed capture accepted after the clock stepped back")
}
