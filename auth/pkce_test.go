package auth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPKCEVector(t *testing.T) {
	var vec struct {
		Verifier  string `json:"code_verifier"`
		Challenge string `json:"code_challenge"`
		Method    string `json:"code_challenge_method"`
	}
	readVector(t, "testdata/rfc7636-pkce.json", &vec)
	require.Equal(t, vec.Challenge, PKCEChallengeS256(vec.Verifier))
	require.NoError(t, VerifyPKCE(vec.Verifier, vec.Challenge, vec.Method))
}

func TestNewPKCEVerifier(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		v, err := NewPKCEVerifier()
		require.NoError(t, err)
		require.Len(t, v, 43)
		require.True(t, validVerifier(v))
		require.False(t, seen[v])
		seen[v] = true
		require.NoError(t, VerifyPKCE(v, PKCEChallengeS256(v), "S256"))
	}
}

func TestVerifyPKCERejects(t *testing.T) {
	const v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	c := PKCEChallengeS256(v)
	tests := []struct {
		name                        string
		verifier, challenge, method string
		want                        error
	}{
		{name: "plain_method", verifier: v, challenge: v, method: "plain", want: ErrPKCEMethod},
		{name: "empty_method", verifier: v, challenge: c, method: "", want: ErrPKCEMethod},
		{name: "lowercase_method", verifier: v, challenge: c, method: "s256", want: ErrPKCEMethod},
		{name: "too_short", verifier: v[:42], challenge: PKCEChallengeS256(v[:42]), method: "S256", want: ErrPKCEVerifier},
		{name: "too_long", verifier: strings.Repeat("a", 129), challenge: PKCEChallengeS256(strings.Repeat("a", 129)), method: "S256", want: ErrPKCEVerifier},
		{name: "bad_charset", verifier: v[:42] + "+", challenge: PKCEChallengeS256(v[:42] + "+"), method: "S256", want: ErrPKCEVerifier},
		{name: "mismatch", verifier: v, challenge: PKCEChallengeS256(v + "x"), method: "S256", want: ErrPKCEMismatch},
		{name: "challenge_is_verifier", verifier: v, challenge: v, method: "S256", want: ErrPKCEMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, VerifyPKCE(tt.verifier, tt.challenge, tt.method), tt.want)
		})
	}
}
