package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/playintegrity"
	"github.com/stretchr/testify/require"
)

// Red-team regression tests of issue 14 (sections 1, 3, 5–8 as they apply
// to attest), written from outside: each fails if its attack succeeds.

// lenientPlayAPI is a decodeIntegrityToken API that, like the base64url
// decoders of common JOSE libraries, reads a token the same whatever its
// padding and the unused low bits of each segment's last character: every
// encoding of one token decodes to that token's verdict. Each distinct
// token (after that canonicalisation) gets its own timestampMillis, as
// Google's tokens do.
func lenientPlayAPI(t *testing.T, requestHash string) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	stamps := map[string]int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ IntegrityToken string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		canon := canonicalToken(in.IntegrityToken)
		mu.Lock()
		ts, ok := stamps[canon]
		if !ok {
			ts = synthNow.Add(-5*time.Second).UnixMilli() - int64(len(stamps))
			stamps[canon] = ts
		}
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": attesttest.Verdict(pkg, "", requestHash, ts, certDigest)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// canonicalToken decodes each dot-separated segment leniently (padding
// dropped, unused trailing bits ignored) and re-encodes it strictly.
func canonicalToken(tok string) string {
	segs := strings.Split(tok, ".")
	for i, s := range segs {
		// Not Strict: Go's decoder, like many, ignores unused trailing bits.
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil {
			segs[i] = base64.RawURLEncoding.EncodeToString(b)
		}
	}
	return strings.Join(segs, ".")
}

// reencodings returns encodings of tok that a lenient decoder reads as
// tok: padding added, and the last character of the last segment changed
// in its unused low bits.
func reencodings(tok string) []string {
	segs := strings.Split(tok, ".")
	last := segs[len(segs)-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	c := strings.IndexByte(alphabet, last[len(last)-1])
	flipped := last[:len(last)-1] + string(alphabet[c|1]) // a 16-byte tag leaves 4 unused bits
	out := []string{tok + "=="}
	if flipped != last {
		out = append(out, strings.Join(append(segs[:len(segs)-1:len(segs)-1], flipped), "."))
	}
	return out
}

// TestIntegrityTokenReencodedReplay: a standard token is single use, but
// the id recorded was a digest of the token's characters. A captured
// token re-encoded (padding added, or the unused bits of a segment's last
// character changed) is another string that Google's API decodes to the
// same verdict, so the captured request was replayed once per encoding.
// Single use must follow the verdict, not its spelling.
func TestIntegrityTokenReencodedReplay(t *testing.T) {
	body := []byte(`{"sku":"gold"}`)
	hash := playintegrity.RequestHash("POST", "/premium", "", body)
	// A token shaped like a compact JWE: the last segment is a 16-byte tag.
	tag := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef"))
	captured := "eyJhbGciOiJBMjU2S1ciLCJlbmMiOiJBMjU2R0NNIn0.AAAA.BBBB.CCCC." + tag
	play, _ := newPlay(t, nil, func(c *playintegrity.Config) {
		api := lenientPlayAPI(t, hash)
		c.APIBaseURL, c.HTTPClient = api.URL, api.Client()
	})
	v, err := New(Config{PlayIntegrity: play, Subject: func(*http.Request) (string, error) { return "", nil },
		Now: func() time.Time { return synthNow }, Logger: nopLogger()})
	require.NoError(t, err)
	th := Thresholds{Monitor: 30, StepUp: 60, Deny: 85}
	request := func(token string) *http.Request {
		r := httptest.NewRequest("POST", "/premium", strings.NewReader(string(body)))
		r.Header.Set(playintegrity.Header, token)
		return r
	}
	risk, err := assessRequest(v, request(captured), th)
	require.NoError(t, err)
	require.Empty(t, risk.Reasons, "the app's own request")
	for _, tok := range reencodings(captured) {
		require.Equal(t, canonicalToken(captured), canonicalToken(tok), "the API reads %q as the captured token", tok)
		risk, err := assessRequest(v, request(tok), th)
		require.NoError(t, err)
		require.Equal(t, []string{ReasonAttestationFailed}, risk.Reasons, "the captured token re-encoded as %q", tok)
	}
	t.Run("via_verify_standard", func(t *testing.T) {
		for _, tok := range reencodings(captured) {
			_, err := play.VerifyStandard(context.Background(), tok, hash)
			require.ErrorIs(t, err, playintegrity.ErrPolicy, "re-encoded as %q", tok)
		}
	})
	t.Run("reencoded_in_parallel", func(t *testing.T) {
		// Every spelling a lenient decoder reads as one fresh token (the 16
		// values of the unused bits, each with 0 to 2 padding characters),
		// sent at once: one request admitted.
		fresh := captured[:len(captured)-len(tag)] + base64.RawURLEncoding.EncodeToString([]byte("0123456789ABCDEF"))
		head, last := fresh[:len(fresh)-1], fresh[len(fresh)-1]
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		base := strings.IndexByte(alphabet, last) &^ 15
		var spellings []string
		for bits := range 16 {
			for _, pad := range []string{"", "=", "=="} {
				spellings = append(spellings, head+string(alphabet[base+bits])+pad)
			}
		}
		var wg sync.WaitGroup
		admitted := make(chan string, len(spellings))
		for _, tok := range spellings {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if risk, err := assessRequest(v, request(tok), th); err == nil && len(risk.Reasons) == 0 {
					admitted <- tok
				}
			}()
		}
		wg.Wait()
		close(admitted)
		var got []string
		for tok := range admitted {
			require.Equal(t, canonicalToken(fresh), canonicalToken(tok))
			got = append(got, tok)
		}
		require.Len(t, got, 1, "one token, one request, whatever its spelling")
	})
	t.Run("a_new_token_for_the_same_request_passes", func(t *testing.T) {
		risk, err := assessRequest(v, request(captured[:len(captured)-len(tag)]+base64.RawURLEncoding.EncodeToString([]byte("fedcba9876543210"))), th)
		require.NoError(t, err)
		require.Empty(t, risk.Reasons)
	})
}

// downChallenges is a challenge store that cannot be reached.
type downChallenges struct{}

func (downChallenges) Put(context.Context, string, string, time.Time) error {
	return errors.New("dial tcp: connection refused")
}
func (downChallenges) Take(context.Context, string) (string, bool, error) {
	return "", false, errors.New("dial tcp: connection refused")
}

// downNonces is a single-use store that cannot be reached.
type downNonces struct{}

func (downNonces) Use(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("dial tcp: connection refused")
}

// TestFailClosedEveryStore: the existing tests close the route for the
// key store and the history; the challenge store (App Attest) and the
// single-use store (Play Integrity) are the two other stores a request
// reaches. With either down, a fail-closed route answers 503 and never
// serves; a fail-open one serves with a penalty no better than no
// evidence, and the App Attest middleware itself answers 503.
func TestFailClosedEveryStore(t *testing.T) {
	th := Thresholds{Monitor: 30, StepUp: 60, Deny: 85}
	for _, policy := range []OutagePolicy{OutageFailOpen, OutageFailClosed} {
		name := map[OutagePolicy]string{OutageFailOpen: "fail_open", OutageFailClosed: "fail_closed"}[policy]
		t.Run("challenge_store_down/"+name, func(t *testing.T) {
			e := newRiskEnv(t, nil)
			d := e.device(attesttest.AttestOptions{})
			r := e.request(d, "rae", paris, "")
			e.chs.set(downChallenges{})
			served := false
			rec := httptest.NewRecorder()
			var risk *Risk
			e.v.RequireRoute(Route{Thresholds: th, Outage: policy})(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				served = true
				risk, _ = RiskFrom(r.Context())
			})).ServeHTTP(rec, r)
			if policy == OutageFailClosed {
				require.Equal(t, 503, rec.Code)
				require.False(t, served)
				require.Equal(t, "1", rec.Header().Get("Retry-After"))
				return
			}
			require.True(t, served)
			require.Contains(t, risk.Reasons, ReasonVendorOutage)
			require.GreaterOrEqual(t, risk.Score, weights[ReasonAttestationMissing])
		})
		t.Run("nonce_store_down/"+name, func(t *testing.T) {
			body := []byte(`{}`)
			api, _ := playAPI(t, func(tok string) map[string]any {
				return attesttest.Verdict(pkg, "", playintegrity.RequestHash("POST", "/premium", "", body), synthNow.Add(-time.Second).UnixMilli(), certDigest)
			})
			play, _ := newPlay(t, nil, func(c *playintegrity.Config) {
				c.APIBaseURL, c.HTTPClient, c.Nonces = api.URL, api.Client(), downNonces{}
			})
			v, err := New(Config{PlayIntegrity: play, Outage: policy, Subject: func(*http.Request) (string, error) { return "", nil },
				Now: func() time.Time { return synthNow }, Logger: nopLogger()})
			require.NoError(t, err)
			r := httptest.NewRequest("POST", "/premium", bytesReader(body))
			r.Header.Set(playintegrity.Header, "token")
			risk, err := assessRequest(v, r, th)
			if policy == OutageFailClosed {
				require.ErrorIs(t, err, ErrStore)
				return
			}
			require.NoError(t, err)
			require.Equal(t, []string{ReasonVendorOutage}, risk.Reasons, "a token that cannot be marked used is not vouched for")
		})
	}
	t.Run("challenge_store_down/app_attest_handler", func(t *testing.T) {
		e := newRiskEnv(t, nil)
		r := e.request(e.device(attesttest.AttestOptions{}), "sam", paris, "")
		e.chs.set(downChallenges{})
		rec := httptest.NewRecorder()
		e.a.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("served") })).ServeHTTP(rec, r)
		require.Equal(t, 503, rec.Code)
	})
}
