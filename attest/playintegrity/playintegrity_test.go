package playintegrity

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

const (
	pkg        = "com.example.shop"
	certDigest = "Ru4hFDTmPMbDjG1tLyXf7jdxa7vC8bp3l4eSqeapmBo"
)

func newPlay(t *testing.T, keys []*attesttest.PlayKeys, mod func(*Config)) (*Verifier, *logSink) {
	t.Helper()
	logs := &logSink{}
	cfg := Config{
		Policy: Policy{PackageName: pkg, CertificateDigests: []string{certDigest}, MinVersionCode: 40},
		Now:    func() time.Time { return synthNow },
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	}
	for _, k := range keys {
		cfg.DecryptionKeys = append(cfg.DecryptionKeys, k.DecryptionKey)
		cfg.VerificationKeys = append(cfg.VerificationKeys, &k.SigningKey.PublicKey)
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	require.NoError(t, err)
	return p, logs
}

func set(m map[string]any, path string, v any) map[string]any {
	parts := strings.Split(path, ".")
	cur := m
	for _, p := range parts[:len(parts)-1] {
		cur = cur[p].(map[string]any)
	}
	if v == nil {
		delete(cur, parts[len(parts)-1])
	} else {
		cur[parts[len(parts)-1]] = v
	}
	return m
}

func TestPlayIntegrityClassic(t *testing.T) {
	keys, err := attesttest.NewPlayKeys()
	require.NoError(t, err)
	old, _ := attesttest.NewPlayKeys()
	ts := synthNow.Add(-10 * time.Second).UnixMilli()
	ok := func() map[string]any { return attesttest.Verdict(pkg, "nonce-1", "", ts, certDigest) }
	tests := []struct {
		name  string
		mint  func() (string, error)
		nonce string
		want  error
	}{
		{name: "valid", mint: func() (string, error) { return keys.Classic(ok()) }},
		{name: "rotated_old_key_still_accepted", mint: func() (string, error) { return old.Classic(ok()) }},
		{name: "timestamp_as_string", mint: func() (string, error) {
			return keys.Classic(set(ok(), "requestDetails.timestampMillis", strconv.FormatInt(ts, 10)))
		}},
		{name: "wrong_nonce", nonce: "nonce-2", mint: func() (string, error) { return keys.Classic(ok()) }, want: ErrPolicy},
		{name: "stale_timestamp", mint: func() (string, error) {
			return keys.Classic(set(ok(), "requestDetails.timestampMillis", synthNow.Add(-time.Hour).UnixMilli()))
		}, want: ErrPolicy},
		{name: "testing_response", mint: func() (string, error) {
			return keys.Classic(set(ok(), "testingDetails", map[string]any{"isTestingResponse": true}))
		}, want: ErrPolicy},
		{name: "not_play_recognized", mint: func() (string, error) {
			return keys.Classic(set(ok(), "appIntegrity.appRecognitionVerdict", "UNRECOGNIZED_VERSION"))
		}, want: ErrPolicy},
		{name: "other_signing_certificate", mint: func() (string, error) {
			return keys.Classic(set(ok(), "appIntegrity.certificateSha256Digest", []string{"cmVwYWNrYWdlZA"}))
		}, want: ErrPolicy},
		{name: "old_version", mint: func() (string, error) { return keys.Classic(set(ok(), "appIntegrity.versionCode", 12)) }, want: ErrPolicy},
		{name: "basic_device_only", mint: func() (string, error) {
			return keys.Classic(set(ok(), "deviceIntegrity.deviceRecognitionVerdict", []string{"MEETS_BASIC_INTEGRITY"}))
		}, want: ErrPolicy},
		{name: "no_device_verdict", mint: func() (string, error) {
			return keys.Classic(set(ok(), "deviceIntegrity.deviceRecognitionVerdict", []string{}))
		}, want: ErrPolicy},
		{name: "other_package", mint: func() (string, error) {
			return keys.Classic(set(ok(), "requestDetails.requestPackageName", "com.example.clone"))
		}, want: ErrPolicy},
		{name: "unknown_keys", mint: func() (string, error) {
			stranger, _ := attesttest.NewPlayKeys()
			return stranger.Classic(ok())
		}, want: ErrToken},
		{name: "a128kw_refused", mint: func() (string, error) {
			k := &attesttest.PlayKeys{DecryptionKey: keys.DecryptionKey[:16], SigningKey: keys.SigningKey}
			return k.ClassicWith(ok(), jwa.A128KW)
		}, want: ErrToken},
		{name: "not_a_jwe", mint: func() (string, error) { return "a.b.c", nil }, want: ErrToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, logs := newPlay(t, []*attesttest.PlayKeys{keys, old}, nil)
			tok, err := tt.mint()
			require.NoError(t, err)
			nonce := tt.nonce
			if nonce == "" {
				nonce = "nonce-1"
			}
			v, err := p.VerifyClassic(context.Background(), tok, nonce)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				require.Contains(t, logs.String(), `"provider":"play_integrity"`)
				return
			}
			require.NoError(t, err)
			require.Equal(t, DeviceIntegrity, v.Device)
			require.True(t, v.Licensed)
			require.Equal(t, int64(42), v.VersionCode)
			_, err = p.VerifyClassic(context.Background(), tok, nonce)
			require.ErrorIs(t, err, ErrPolicy, "nonce single use")
		})
	}
}

// fakeAPI answers like Google's decodeIntegrityToken.
func fakeAPI(t *testing.T, status int, payload map[string]any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/v1/"+pkg+":decodeIntegrityToken", r.URL.Path)
		var in struct{ IntegrityToken string }
		b, _ := io.ReadAll(r.Body)
		require.NoError(t, json.Unmarshal(b, &in))
		if status != 200 {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"error":{"code":400,"message":"bad"}}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": payload})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPlayIntegrityStandard(t *testing.T) {
	ts := synthNow.Add(-5 * time.Second).UnixMilli()
	good := attesttest.Verdict(pkg, "", "hash-of-request", ts, certDigest)
	tests := []struct {
		name   string
		status int
		hash   string
		want   error
	}{
		{name: "valid", status: 200, hash: "hash-of-request"},
		{name: "request_hash_mismatch", status: 200, hash: "hash-of-another-request", want: ErrPolicy},
		{name: "api_refuses_token", status: 400, hash: "hash-of-request", want: ErrToken},
		{name: "api_down", status: 503, hash: "hash-of-request", want: ErrVendor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t, tt.status, good)
			p, _ := newPlay(t, nil, func(c *Config) { c.APIBaseURL = srv.URL; c.HTTPClient = srv.Client() })
			v, err := p.VerifyStandard(context.Background(), "opaque-standard-token", tt.hash)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "NO_ISSUES", v.PlayProtect)
		})
	}
	p, _ := newPlay(t, nil, nil)
	_, err := p.VerifyStandard(context.Background(), "x", "y")
	require.ErrorIs(t, err, ErrVendor, "no credentials configured")
}

func TestNewPlayIntegrityConfig(t *testing.T) {
	_, err := New(Config{})
	require.ErrorContains(t, err, "PackageName and CertificateDigests")
	_, err = New(Config{Policy: Policy{PackageName: "p", CertificateDigests: []string{"d"}}, DecryptionKeys: [][]byte{{1}}})
	require.ErrorContains(t, err, "32-byte")
	_, err = New(Config{Policy: Policy{PackageName: "p", CertificateDigests: []string{"d"}}, VerificationKeys: []*ecdsa.PublicKey{{}}})
	require.ErrorContains(t, err, "both")
}

// TestClassicTokenEmptyEncryptedKey is a regression test for a panic in
// jwx's key unwrapping on an empty encrypted key, found by FuzzClassicToken.
func TestClassicTokenEmptyEncryptedKey(t *testing.T) {
	keys, err := attesttest.NewPlayKeys()
	require.NoError(t, err)
	p, _ := newPlay(t, []*attesttest.PlayKeys{keys}, nil)
	_, err = p.VerifyClassic(context.Background(), "eyJhbGciOiJBMjU2S1ciLCJlbmMiOiJBMjU2R0NNIn0....", "n")
	require.ErrorIs(t, err, ErrToken)
}

// TestNegativeConfigNamesField: a negative timeout or count is an error
// naming its field, never a silent default (a negative MaxAge used to
// become two minutes).
func TestNegativeConfigNamesField(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative_max_age", func(c *Config) { c.Policy.MaxAge = -time.Minute }, "playintegrity.Config.Policy.MaxAge must not be negative (got -1m0s)"},
		{"negative_api_timeout", func(c *Config) { c.APITimeout = -time.Second }, "playintegrity.Config.APITimeout must not be negative (got -1s)"},
		{"negative_max_concurrent_calls", func(c *Config) { c.MaxConcurrentCalls = -1 }, "playintegrity.Config.MaxConcurrentCalls must not be negative"},
		{"negative_min_version_code", func(c *Config) { c.Policy.MinVersionCode = -1 }, "playintegrity.Config.Policy.MinVersionCode must not be negative"},
		{"min_device_out_of_range", func(c *Config) { c.Policy.MinDevice = DeviceStrong + 1 }, "playintegrity.Config.Policy.MinDevice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Policy: Policy{PackageName: pkg, CertificateDigests: []string{certDigest}}}
			tt.mod(&cfg)
			_, err := New(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
