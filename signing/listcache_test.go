package signing

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cachedLists returns the prefixes v's list cache holds.
func cachedLists(v *Verifier) []string {
	var out []string
	for i := range v.lists.entries {
		if e := v.lists.entries[i].Load(); e != nil {
			out = append(out, e.prefix)
		}
	}
	return out
}

// TestListCache: a verified signature's list is remembered, and later
// requests that start with it verify through it; a forged one does not
// teach the cache anything, and is refused through it as well as without.
func TestListCache(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	s := signer(clk, "device-a", secretA)
	hdr := map[string]string{"Authorization": "Bearer t"}

	forged := signed(t, s, "POST", api+"/v1/pay", `{"a":1}`, hdr)
	forged.Header.Set("Signature", "sig1=:"+b64std(make([]byte, 32))+":")
	_, err := v.Verify(forged)
	require.ErrorIs(t, err, ErrSignature)
	require.Empty(t, cachedLists(v), "an unverified signature is not remembered")

	first := signed(t, s, "POST", api+"/v1/pay", `{"a":1}`, hdr)
	line := first.Header.Get("Signature-Input")
	_, err = v.Verify(first)
	require.NoError(t, err)
	require.Equal(t, []string{line[:strings.IndexByte(line, ')')+1]}, cachedLists(v))

	// Through the cache: accepted with the parameters of its own line,
	// and refused for the reasons the parser would find.
	clk.Advance(time.Second)
	second := signed(t, s, "POST", api+"/v1/pay", `{"a":2}`, hdr)
	require.NotNil(t, v.lists.lookup(second.Header.Get("Signature-Input")), "the second line starts with the remembered list")
	replay := httptest.NewRequest("POST", api+"/v1/pay", strings.NewReader(`{"a":2}`))
	replay.Header = second.Header.Clone()
	res, err := v.Verify(second)
	require.NoError(t, err)
	require.Equal(t, clk.Now().Unix(), res.Created.Unix())
	require.Equal(t, `{"a":2}`, string(res.Body))
	require.Len(t, cachedLists(v), 1, "a list is remembered once")

	clk.Advance(time.Second)
	tampered := signed(t, s, "POST", api+"/v1/pay", `{"a":3}`, hdr)
	tampered.Header.Set("Signature-Input", strings.Replace(tampered.Header.Get("Signature-Input"), "keyid=", "tag=\"x\";keyid=", 1))
	_, err = v.Verify(tampered)
	require.ErrorIs(t, err, ErrSignature, "a parameter added after the list is covered by the signature")

	_, err = v.Verify(replay)
	require.ErrorIs(t, err, ErrReplay, "a replay is refused through the cache")

	bad := signed(t, s, "POST", api+"/v1/pay", `{"a":4}`, hdr)
	bad.Header.Set("Signature-Input", bad.Header.Get("Signature-Input")+";x=\"unterminated")
	_, err = v.Verify(bad)
	require.ErrorIs(t, err, ErrMalformed, "a line that does not parse is refused, cached list or not")
}
