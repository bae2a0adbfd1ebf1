package attest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/playintegrity"
	"github.com/stretchr/testify/require"
)

// playAPI answers every decodeIntegrityToken call with the verdict of its
// token and counts the calls.
func playAPI(t *testing.T, verdict func(token string) map[string]any) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var in struct{ IntegrityToken string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": verdict(in.IntegrityToken)})
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestIntegrityTokenSingleUse: a standard token without a challenge
// hashes to the same requestHash for identical requests, so a captured
// request with its token could be replayed for as long as the verdict is
// fresh. Single use is part of the default policy.
func TestIntegrityTokenSingleUse(t *testing.T) {
	body := []byte(`{"sku":"gold"}`)
	hash := playintegrity.RequestHash("POST", "/premium", "", body)
	// Each token is prepared at its own millisecond, as Google's are.
	verdict := func(token string) map[string]any {
		return attesttest.Verdict(pkg, "", hash, synthNow.Add(-5*time.Second).UnixMilli()-int64(len(token)), certDigest)
	}
	request := func(token string) *http.Request {
		r := httptest.NewRequest("POST", "/premium", strings.NewReader(string(body)))
		r.Header.Set(playintegrity.Header, token)
		return r
	}
	newVerifier := func(t *testing.T, mod func(*playintegrity.Config)) *Verifier {
		api, _ := playAPI(t, verdict)
		play, _ := newPlay(t, nil, func(c *playintegrity.Config) {
			c.APIBaseURL, c.HTTPClient = api.URL, api.Client()
			if mod != nil {
				mod(c)
			}
		})
		v, err := New(Config{PlayIntegrity: play, Subject: func(*http.Request) (string, error) { return "", nil },
			Now: func() time.Time { return synthNow }, Logger: nopLogger()})
		require.NoError(t, err)
		return v
	}
	th := Thresholds{Monitor: 30, StepUp: 60, Deny: 85}

	t.Run("integrity_token_replayed", func(t *testing.T) {
		v := newVerifier(t, nil)
		risk, err := assessRequest(v, request("captured-token"), th)
		require.NoError(t, err)
		require.Empty(t, risk.Reasons, "first use")
		risk, err = assessRequest(v, request("captured-token"), th)
		require.NoError(t, err)
		require.Equal(t, []string{ReasonAttestationFailed}, risk.Reasons, "the same token again")
		risk, err = assessRequest(v, request("another-token"), th)
		require.NoError(t, err)
		require.Empty(t, risk.Reasons, "a fresh token for the same request")
	})
	t.Run("integrity_token_replayed_via_verify_standard", func(t *testing.T) {
		api, _ := playAPI(t, verdict)
		play, _ := newPlay(t, nil, func(c *playintegrity.Config) { c.APIBaseURL, c.HTTPClient = api.URL, api.Client() })
		_, err := play.VerifyStandard(context.Background(), "captured-token", hash)
		require.NoError(t, err)
		_, err = play.VerifyStandard(context.Background(), "captured-token", hash)
		require.ErrorIs(t, err, playintegrity.ErrPolicy)
	})
	t.Run("integrity_token_replayed_in_parallel", func(t *testing.T) {
		v := newVerifier(t, nil)
		const n = 64
		var wg sync.WaitGroup
		var admitted atomic.Int64
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if risk, err := assessRequest(v, request("captured-token"), th); err == nil && len(risk.Reasons) == 0 {
					admitted.Add(1)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, int64(1), admitted.Load(), "one token, one request")
	})
	t.Run("token_reuse_allowed_when_insecure", func(t *testing.T) {
		v := newVerifier(t, func(c *playintegrity.Config) { c.Policy.InsecureAllowTokenReuse = true })
		for range 3 {
			risk, err := assessRequest(v, request("captured-token"), th)
			require.NoError(t, err)
			require.Empty(t, risk.Reasons)
		}
	})
}
