package signing

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestComponentWithLineBreak: a covered field value holding CR or LF
// would add a line to the signature base, so that one component could
// pose as several; the base is refused, wherever in a long value the
// break is.
func TestComponentWithLineBreak(t *testing.T) {
	const input = `sig1=("@method" "x-note");created=1;keyid="k";nonce="n"`
	for _, value := range []string{"a\nb", "a\rb", strings.Repeat("t", 800) + "\n", "\r" + strings.Repeat("t", 800)} {
		r := httptest.NewRequest("GET", api+"/v1/orders", nil)
		r.Header["X-Note"] = []string{value}
		_, err := baseFor(t, r, input)
		require.ErrorIs(t, err, ErrMalformed, "%q", value[:min(len(value), 8)])
		require.ErrorContains(t, err, "line break")
	}
	r := httptest.NewRequest("GET", api+"/v1/orders", nil)
	r.Header["X-Note"] = []string{strings.Repeat("t", 800)}
	base, err := baseFor(t, r, input)
	require.NoError(t, err)
	require.Contains(t, string(base), `"x-note": `+strings.Repeat("t", 800)+"\n")
}

// TestMalformedListLogsClaimedKey: a signature whose component list is
// refused before its key is looked up (a component covered twice, one
// unsupported) is logged with the key ID it claims, as one whose covered
// field is absent is: the log tells which client sends it.
func TestMalformedListLogsClaimedKey(t *testing.T) {
	for _, list := range []string{`("@method" "@target-uri" "@method")`, `("@method" "@target-uri" "@status")`, `("@method" "@target-uri" "x-absent")`} {
		v, clk, logs := newTestVerifier(t, nil)
		r := signRaw(t, "device-a", secretA, list+`;created=%d;keyid="device-a";nonce="n1"`, clk.Now().Unix())
		rec := httptest.NewRecorder()
		v.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("reached") })).ServeHTTP(rec, r)
		require.Equal(t, http.StatusBadRequest, rec.Code, list)
		require.Contains(t, logs.String(), `"key_id":"device-a"`, list)
	}
}
