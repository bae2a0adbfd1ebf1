package appattest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type vector struct {
	Name           string `json:"name"`
	AppID          string `json:"app_id"`
	Environment    string `json:"environment"`
	Attestation    string `json:"attestation_object_b64"`
	ClientDataHash string `json:"client_data_hash_b64"`
	KeyID          string `json:"key_id_b64"`
	VerifyAt       string `json:"verify_at"`
	PublicKey      string `json:"public_key_b64"`
	Assertions     []struct {
		Assertion       string `json:"assertion_b64"`
		ClientData      string `json:"client_data_b64"`
		ExpectedCounter uint32 `json:"expected_counter"`
	} `json:"assertions"`
	Expected struct {
		OSVersion     string `json:"os_version"`
		LeafNotAfter  string `json:"leaf_not_after"`
		LeafNotBefore string `json:"leaf_not_before"`
	} `json:"expected"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	out := loadVectorsF(t)
	require.Len(t, out, 7)
	return out
}

func loadVectorsF(t testing.TB) []vector {
	t.Helper()
	files, err := filepath.Glob("testdata/veehaitch-*.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []vector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v vector
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return tm
}

func newAppAttestAt(t *testing.T, at time.Time, mod func(*Config)) (*Verifier, *logSink) {
	t.Helper()
	logs := &logSink{}
	cfg := Config{
		AppIDs:       []string{"6MURL8TA57.de.vincent-haupert.apple-appattest-poc"},
		Environments: []Environment{Development},
		Now:          func() time.Time { return at },
		Logger:       slog.New(slog.NewJSONHandler(logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	require.NoError(t, err)
	return a, logs
}

func TestRealAttestationsVerify(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			a, _ := newAppAttestAt(t, mustTime(t, v.VerifyAt), nil)
			ctx := context.Background()
			k, err := a.VerifyAttestation(ctx, v.KeyID, b64(t, v.Attestation), b64(t, v.ClientDataHash))
			require.NoError(t, err)
			require.Equal(t, v.AppID, k.AppID)
			require.Equal(t, Development, k.Environment)
			require.Equal(t, v.Expected.OSVersion, k.OSVersion)
			require.Equal(t, b64(t, v.PublicKey), k.PublicKey)
			require.NotEmpty(t, k.Receipt)

			for _, as := range v.Assertions {
				got, err := a.VerifyAssertion(ctx, v.KeyID, b64(t, as.Assertion), b64(t, as.ClientData))
				require.NoError(t, err)
				require.Equal(t, as.ExpectedCounter, got.Counter)
				_, err = a.VerifyAssertion(ctx, v.KeyID, b64(t, as.Assertion), b64(t, as.ClientData))
				require.ErrorIs(t, err, ErrCounter, "replayed counter")
			}
		})
	}
}

func TestAttestationMutations(t *testing.T) {
	v := loadVectors(t)[len(loadVectors(t))-1]
	at := mustTime(t, v.VerifyAt)
	att, cdh := b64(t, v.Attestation), b64(t, v.ClientDataHash)
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	otherKeyID := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	tests := []struct {
		name  string
		mod   func(*Config)
		keyID string
		att   []byte
		cdh   []byte
		at    time.Time
		want  error
	}{
		{name: "wrong_app_id", mod: func(c *Config) { c.AppIDs = []string{"ABCDE12345.com.example.other"} }, want: ErrAppID},
		{name: "wrong_environment", mod: func(c *Config) { c.Environments = []Environment{Production} }, want: ErrEnvironment},
		{name: "wrong_key_id", keyID: otherKeyID, want: ErrKeyID},
		{name: "key_id_not_base64", keyID: "!!!", want: ErrKeyID},
		{name: "other_client_data_hash", cdh: ClientDataHash([]byte("another challenge")), want: ErrNonce},
		{name: "expired_leaf", at: mustTime(t, v.Expected.LeafNotAfter).Add(time.Hour), want: ErrCertificate},
		{name: "not_yet_valid_leaf", at: mustTime(t, v.Expected.LeafNotBefore).Add(-time.Hour), want: ErrCertificate},
		{name: "untrusted_root", mod: func(c *Config) { c.Roots = x509PoolFromFile(t, "testdata/apple_root_ca_g3.pem") }, want: ErrCertificate},
		{name: "flipped_byte_in_auth_data", att: flip(att, len(att)-40), want: ErrNonce},
		{name: "flipped_byte_in_leaf", att: flip(att, 400), want: ErrCertificate},
		{name: "truncated", att: att[:len(att)/2], want: ErrMalformed},
		{name: "not_cbor", att: []byte("{}"), want: ErrMalformed},
		{name: "empty", att: []byte{}, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			when := at
			if !tt.at.IsZero() {
				when = tt.at
			}
			a, logs := newAppAttestAt(t, when, tt.mod)
			keyID, obj, hash := v.KeyID, att, cdh
			if tt.keyID != "" {
				keyID = tt.keyID
			}
			if tt.att != nil {
				obj = tt.att
			}
			if tt.cdh != nil {
				hash = tt.cdh
			}
			_, err := a.VerifyAttestation(context.Background(), keyID, obj, hash)
			require.ErrorIs(t, err, tt.want)
			require.Contains(t, logs.String(), `"event":"attestation_failed"`)
			_, err = a.VerifyAssertion(context.Background(), v.KeyID, b64(t, v.Assertions[0].Assertion), b64(t, v.Assertions[0].ClientData))
			// Nothing was enrolled: the key is unknown (or, for a verifier
			// of another app, its App ID is refused before any lookup).
			require.True(t, errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrAppID), "a refused attestation enrols nothing: %v", err)
		})
	}
}

func TestAssertionMutations(t *testing.T) {
	v := loadVectors(t)[0]
	at := mustTime(t, v.VerifyAt)
	as, cd := b64(t, v.Assertions[0].Assertion), b64(t, v.Assertions[0].ClientData)
	tests := []struct {
		name  string
		keyID string
		as    []byte
		cd    []byte
		want  error
	}{
		{name: "tampered_client_data", cd: append(bytes.Clone(cd), 'x'), want: ErrSignature},
		{name: "unknown_key_never_enrolled", keyID: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)), want: ErrUnknownKey},
		{name: "flipped_signature", as: func() []byte { c := bytes.Clone(as); c[20] ^= 1; return c }(), want: ErrSignature},
		{name: "not_cbor", as: []byte("nope"), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newAppAttestAt(t, at, nil)
			_, err := a.VerifyAttestation(context.Background(), v.KeyID, b64(t, v.Attestation), b64(t, v.ClientDataHash))
			require.NoError(t, err)
			keyID, obj, data := v.KeyID, as, cd
			if tt.keyID != "" {
				keyID = tt.keyID
			}
			if tt.as != nil {
				obj = tt.as
			}
			if tt.cd != nil {
				data = tt.cd
			}
			_, err = a.VerifyAssertion(context.Background(), keyID, obj, data)
			require.ErrorIs(t, err, tt.want)
			// The genuine assertion still passes after a refused one.
			_, err = a.VerifyAssertion(context.Background(), v.KeyID, as, cd)
			require.NoError(t, err)
		})
	}
}

func TestAttestTwiceRefused(t *testing.T) {
	v := loadVectors(t)[0]
	a, _ := newAppAttestAt(t, mustTime(t, v.VerifyAt), nil)
	_, err := a.VerifyAttestation(context.Background(), v.KeyID, b64(t, v.Attestation), b64(t, v.ClientDataHash))
	require.NoError(t, err)
	_, err = a.VerifyAttestation(context.Background(), v.KeyID, b64(t, v.Attestation), b64(t, v.ClientDataHash))
	require.ErrorIs(t, err, ErrKeyExists, "an attestation cannot be replayed to reset the counter")
}

func TestNewAppAttestConfig(t *testing.T) {
	_, err := New(Config{})
	require.ErrorContains(t, err, "AppIDs is required")
	_, err = New(Config{AppIDs: []string{"A.b"}, Environments: []Environment{"staging"}})
	require.ErrorContains(t, err, "unknown environment")
}
