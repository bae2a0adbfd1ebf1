package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
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
	hash := RequestHash("POST", "/premium", "", body)
	// A token shaped like a compact JWE: the last segment is a 16-byte tag.
	tag := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef"))
	captured := "eyJhbGciOiJBMjU2S1ciLCJlbmMiOiJBMjU2R0NNIn0.AAAA.BBBB.CCCC." + tag
	play, _ := newPlay(t, nil, func(c *PlayIntegrityConfig) {
		api := lenientPlayAPI(t, hash)
		c.APIBaseURL, c.HTTPClient = api.URL, api.Client()
	})
	v, err := New(Config{PlayIntegrity: play, Subject: func(*http.Request) (string, error) { return "", nil },
		Now: func() time.Time { return synthNow }, Logger: nopLogger()})
	require.NoError(t, err)
	th := Thresholds{Monitor: 30, StepUp: 60, Deny: 85}
	request := func(token string) *http.Request {
		r := httptest.NewRequest("POST", "/premium", strings.NewReader(string(body)))
		r.Header.Set(HeaderPlayIntegrity, token)
		return r
	}
	risk, _, err := v.Assess(request(captured), th)
	require.NoError(t, err)
	require.Empty(t, risk.Reasons, "the app's own request")
	for _, tok := range reencodings(captured) {
		require.Equal(t, canonicalToken(captured), canonicalToken(tok), "the API reads %q as the captured token", tok)
		risk, _, err := v.Assess(request(tok), th)
		require.NoError(t, err)
		require.Equal(t, []string{ReasonAttestationFailed}, risk.Reasons, "the captured token re-encoded as %q", tok)
	}
	t.Run("via_verify_standard", func(t *testing.T) {
		for _, tok := range reencodings(captured) {
			_, err := play.VerifyStandard(context.Background(), tok, hash)
			require.ErrorIs(t, err, ErrIntegrityPolicy, "re-encoded as %q", tok)
		}
	})
	t.Run("a_new_token_for_the_same_request_passes", func(t *testing.T) {
		risk, _, err := v.Assess(request(captured[:len(captured)-len(tag)]+base64.RawURLEncoding.EncodeToString([]byte("fedcba9876543210"))), th)
		require.NoError(t, err)
		require.Empty(t, risk.Reasons)
	})
}
