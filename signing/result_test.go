package signing

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestResultCopies: a Result is plain data. A copy (c := *res, which go
// vet's copylocks check refuses for a type holding a lock; go vet ./...
// vets this file) equals the original, inside next and from Verify, and
// outlives the request's handler.
func TestResultCopies(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	s := signer(clk, "device-a", secretA)
	var inNext Result
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, ok := ResultFrom(r.Context())
		require.True(t, ok)
		inNext = *res
		w.WriteHeader(http.StatusNoContent)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signed(t, s, "POST", api+"/v1/pay", `{"amount":1}`, nil))
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	require.Equal(t, "device-a", inNext.KeyID, "the copy outlives the handler")
	require.Equal(t, "sig1", inNext.Label)
	require.Equal(t, AlgHMACSHA256, inNext.Algorithm)
	require.True(t, t0.Equal(inNext.Created), "created %v", inNext.Created)
	require.Nil(t, inNext.Body)
	require.Contains(t, inNext.Covered(), `"@method"`)

	res, err := v.Verify(signed(t, s, "POST", api+"/v1/pay", `{"amount":2}`, nil))
	require.NoError(t, err)
	c := *res
	require.Equal(t, *res, c)
	require.Equal(t, `{"amount":2}`, string(c.Body))
	require.Equal(t, res.Covered(), c.Covered())
}

// TestUnverifiedKeyIDBesideError: Verify never hands out the key ID a
// request claims beside an error, whichever check refuses it, replays
// included (TestVerifyAttacks covers each sentinel through the table).
func TestUnverifiedKeyIDBesideError(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	s := signer(clk, "device-a", secretA)
	replayed := func() *http.Request {
		r := signed(t, s, "POST", api+"/v1/pay", `{"amount":100}`, nil)
		c := r.Clone(context.Background())
		c.Body = io.NopCloser(strings.NewReader(`{"amount":100}`))
		_, err := v.Verify(c)
		require.NoError(t, err)
		r.Body = io.NopCloser(bytes.NewReader([]byte(`{"amount":100}`)))
		return r
	}
	stale := func() *http.Request {
		old := signed(t, s, "GET", api+"/v1/orders", "", nil)
		clk.Advance(30 * time.Second)
		_, err := v.Verify(signed(t, s, "GET", api+"/v1/orders", "", nil))
		require.NoError(t, err)
		return old
	}
	for _, tt := range []struct {
		name  string
		build func() *http.Request
		want  error
	}{
		{"replay_inside_window", replayed, ErrReplay},
		{"capture_replayed_after_newer_traffic", stale, ErrStale},
		{"signature_of_another_key", func() *http.Request {
			return signed(t, signer(testkit.NewClock(clk.Now()), "device-a", secretB), "GET", api+"/v1/orders", "", nil)
		}, ErrSignature},
		{"unknown_key", func() *http.Request {
			return signed(t, signer(testkit.NewClock(clk.Now()), "device-zzz", secretA), "GET", api+"/v1/orders", "", nil)
		}, ErrUnknownKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Verify(tt.build())
			require.ErrorIs(t, err, tt.want)
			require.Nil(t, res)
		})
	}
}
