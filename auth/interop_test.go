package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInteropJose verifies tokens and a DPoP proof minted by the npm
// package jose, a JOSE implementation nobody here wrote. .ci/run installs
// it (npm install in testdata/interop) and sets APIGUARD_REQUIRE_INTEROP=1
// so that CI never skips this test.
func TestInteropJose(t *testing.T) {
	dir := "testdata/interop"
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(dir + "/node_modules/jose"); err != nil || statErr != nil {
		msg := "node or the jose package is missing: run npm install in auth/testdata/interop"
		if os.Getenv("APIGUARD_REQUIRE_INTEROP") == "1" {
			t.Fatal(msg)
		}
		// Said on stderr too, so that it shows without -v (where go test
		// shows a passing package's output: one directory, -json).
		fmt.Fprintln(os.Stderr, "auth: SKIP TestInteropJose:", msg, "(APIGUARD_REQUIRE_INTEROP=1 makes it fail)")
		t.Skip(msg)
	}
	cmd := exec.Command(node, "mint.mjs", "GET", "https://api.example.com/orders")
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err)
	var minted struct {
		JWKS       json.RawMessage   `json:"jwks"`
		Tokens     map[string]string `json:"tokens"`
		BoundToken string            `json:"boundToken"`
		Proof      string            `json:"proof"`
		JKT        string            `json:"jkt"`
		Iss        string            `json:"iss"`
		Aud        string            `json:"aud"`
	}
	require.NoError(t, json.Unmarshal(out, &minted))

	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(minted.JWKS)
	}))
	defer jwks.Close()
	logs := &logSink{}
	v, err := New(Config{
		Issuers: []Issuer{{Issuer: minted.Iss, Audience: []string{minted.Aud}, JWKSURL: jwks.URL}},
		DPoP:    DPoPAllowed,
		DPoPURL: "https://api.example.com",
		Logger:  logs.logger(),
	})
	require.NoError(t, err)
	defer v.Close()

	require.Len(t, minted.Tokens, 4)
	for alg, tok := range minted.Tokens {
		t.Run(alg, func(t *testing.T) {
			c, err := v.VerifyToken(t.Context(), tok)
			require.NoError(t, err, logs.String())
			require.Equal(t, "user-"+alg, c.Subject)
			require.True(t, c.HasScope("orders:read"))
		})
	}
	t.Run("dpop_bound_token_and_proof", func(t *testing.T) {
		r := httptest.NewRequest("GET", "https://api.example.com/orders", nil)
		r.Header.Set("Authorization", "DPoP "+minted.BoundToken)
		r.Header.Set("DPoP", minted.Proof)
		rec, reached, claims := call(v.Handler, r)
		require.True(t, reached, rec.Body.String()+logs.String())
		require.Equal(t, minted.JKT, claims.KeyThumbprint)

		replay := httptest.NewRequest("GET", "https://api.example.com/orders", nil)
		replay.Header = r.Header.Clone()
		_, reached, _ = call(v.Handler, replay)
		require.False(t, reached, "the jose proof is single use")
	})
}
