package signing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNewNamesNegativeField: a negative duration or size is an error at
// New that names its field.
func TestNewNamesNegativeField(t *testing.T) {
	keys := StaticKeys(map[string][]byte{"device-a": secretA})
	for field, cfg := range map[string]Config{
		"Window":          {Keys: keys, Window: -time.Second},
		"FutureSkew":      {Keys: keys, FutureSkew: -time.Second},
		"ReorderSlack":    {Keys: keys, ReorderSlack: -time.Second},
		"MaxBodyBytes":    {Keys: keys, MaxBodyBytes: -1},
		"ReplayCacheSize": {Keys: keys, ReplayCacheSize: -1},
	} {
		_, err := New(cfg)
		require.ErrorContains(t, err, "signing: Config."+field+" must not be negative", field)
	}
}

// TestNewRefusesShortSecrets: a StaticKeys secret or a DerivedKeys master
// shorter than 32 bytes (guessable, or a truncated environment variable)
// is an error at New naming the field, never a panic; the secret itself
// is not in the error.
func TestNewRefusesShortSecrets(t *testing.T) {
	_, err := New(Config{Keys: StaticKeys(map[string][]byte{"device-a": secretA, "device-weak": []byte("hunter2")})})
	require.ErrorContains(t, err, "Config.Keys")
	require.ErrorContains(t, err, `"device-weak" is 7 bytes`)
	require.ErrorContains(t, err, "at least 32")
	require.NotContains(t, err.Error(), "hunter2")

	var ks KeyStore
	require.NotPanics(t, func() { ks = DerivedKeys([]byte("short-master"), []byte("salt")) })
	_, err = New(Config{Keys: ks})
	require.ErrorContains(t, err, "Config.Keys: the DerivedKeys master secret is 12 bytes")
	require.NotContains(t, err.Error(), "short-master")
	_, err = ks.Key(context.Background(), "device-42")
	require.Error(t, err, "a short master derives nothing, even without New")
	require.NotErrorIs(t, err, ErrUnknownKey, "a wiring error, not an unknown key")

	_, err = New(Config{Keys: StaticKeys(map[string][]byte{"device-a": secretA[:32]})})
	require.NoError(t, err, "32 bytes is enough")
	_, err = New(Config{Keys: DerivedKeys(secretA[:32], nil)})
	require.NoError(t, err)
}

// TestNewChecksProfileComponents: Profile.Components are parsed and
// checked at New, as a signature's components are at request time, so a
// profile no request can meet is a start-up error, not a 400 on every
// request.
func TestNewChecksProfileComponents(t *testing.T) {
	keys := StaticKeys(map[string][]byte{"device-a": secretA})
	for _, bad := range []string{`"x`, `@unknown`, `X-Device-Id`, `"x-device-id";req`, `"@method";name="x"`, `"@query-param"`, `"x";bs;sf`} {
		_, err := New(Config{Keys: keys, Profile: Profile{Components: []string{bad}}})
		require.ErrorContains(t, err, "Profile.Components", bad)
		require.Panics(t, func() { (&Verifier{}).RequireProfile(Profile{Components: []string{bad}}) }, bad)
	}
	for _, good := range []string{`x-device-id`, `"x-device-id"`, `"@query-param";name="id"`, `"content-type";sf`, `"example-dict";key="a"`} {
		_, err := New(Config{Keys: keys, Profile: Profile{Components: []string{good}}})
		require.NoError(t, err, good)
	}
}

type readyStub struct {
	KeyStore
	ReplayStore
	err   error
	calls int
}

func (s *readyStub) Ready(context.Context) error { s.calls++; return s.err }

// TestReady: Ready asks the key store and the replay store, each when it
// can answer, and names the one that is not ready.
func TestReady(t *testing.T) {
	v, _, _ := newTestVerifier(t, nil)
	require.NoError(t, v.Ready(context.Background()), "in-memory stores are always ready")

	down := errors.New("connection refused")
	keys := &readyStub{KeyStore: StaticKeys(map[string][]byte{"device-a": secretA}), err: down}
	store := &readyStub{ReplayStore: NewMemoryReplayStore(16, time.Minute, nil)}
	v, _, _ = newTestVerifier(t, func(c *Config) { c.Keys, c.ReplayStore = keys, store })
	err := v.Ready(context.Background())
	require.ErrorIs(t, err, down)
	require.ErrorContains(t, err, "Config.Keys not ready")

	keys.err, store.err = nil, down
	err = v.Ready(context.Background())
	require.ErrorIs(t, err, down)
	require.ErrorContains(t, err, "Config.ReplayStore not ready")
	keys.err, store.err = nil, nil
	require.NoError(t, v.Ready(context.Background()))
	require.Equal(t, 3, keys.calls)
	require.Equal(t, 2, store.calls)
}

// TestMismatchLogNamesSchemeAndAuthority: a client that signed http (no
// TLS in development, or a TLS-terminating proxy) against a server on the
// default Scheme https gets a mismatch whose log says what the server
// used for @scheme and @authority and what to set; the log holds no
// secret, no signature and no nonce.
func TestMismatchLogNamesSchemeAndAuthority(t *testing.T) {
	v, clk, logs := newTestVerifier(t, nil)
	r := signed(t, signer(clk, "device-a", secretA), "POST", "http://api.example.com:8080/v1/pay", `{"amount":1}`, nil)
	rec, reached, _ := serve(v, r)
	require.False(t, reached)
	require.Equal(t, 401, rec.Code)
	out := logs.String()
	require.Contains(t, out, `"event":"signature_mismatch"`)
	require.Contains(t, out, `"scheme":"https"`)
	require.Contains(t, out, `"authority":"api.example.com:8080"`)
	require.Contains(t, out, "Config.Scheme (default https)")

	nonce := regexp.MustCompile(`nonce="([^"]+)"`).FindStringSubmatch(r.Header.Get("Signature-Input"))[1]
	sig := strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Signature"), "sig1=:"), ":")
	for name, secret := range map[string]string{"secret": string(secretA), "signature": sig, "nonce": nonce} {
		require.NotEmpty(t, secret)
		require.NotContains(t, out, secret, name)
	}

	// Configured as the client signs, the same request verifies.
	v, clk, _ = newTestVerifier(t, func(c *Config) { c.Scheme = "http" })
	_, reached, _ = serve(v, signed(t, signer(clk, "device-a", secretA), "POST", "http://api.example.com:8080/v1/pay", `{"amount":1}`, nil))
	require.True(t, reached)
}

// A Verifier whose logger counts no security events says so at New, naming
// the fix, so that signature failures never vanish from the metrics
// unnoticed.
func TestNewWarnsWhenEventsUncounted(t *testing.T) {
	var buf bytes.Buffer
	_, err := New(Config{Keys: StaticKeys(map[string][]byte{"device-a": secretA}), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	require.Contains(t, buf.String(), "level=WARN")
	require.Contains(t, buf.String(), "signing: Config.Logger does not count security events")
}
