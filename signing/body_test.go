package signing

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestHandlerBodyAfterReturn: Handler reads the body into a recycled
// buffer. A reader kept past the handler's return (the request's Body or
// one from GetBody) fails with an error, and never reads the bytes of a
// later request that reuses the buffer.
func TestHandlerBodyAfterReturn(t *testing.T) {
	v, _, _ := newTestVerifier(t, nil)
	s := signer(testkit.NewClock(t0), "device-a", secretA)
	var kept []io.Reader
	var inside []string
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		again, err := r.GetBody()
		require.NoError(t, err)
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		inside = append(inside, string(b))
		kept = append(kept, r.Body, again)
		res, ok := ResultFrom(r.Context())
		require.True(t, ok)
		require.Nil(t, res.Body, "Handler hands the body on as r.Body only")
		w.WriteHeader(http.StatusNoContent)
	}))
	for i, body := range []string{`{"first":"secret-one"}`, `{"second":"secret-two-longer"}`} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, signed(t, s, "POST", api+"/v1/pay", body, nil))
		require.Equal(t, http.StatusNoContent, rec.Code)
		require.Equal(t, body, inside[i], "next read the verified body")
	}
	for i, rd := range kept {
		b, err := io.ReadAll(rd)
		require.ErrorIs(t, err, errBodyReleased, "reader %d used after its handler returned", i)
		require.Empty(t, b, "reader %d read bytes after its handler returned", i)
	}
}

// TestHandlerBodiesConcurrent: requests served at once each hand next
// their own body, whatever buffers they share over time.
func TestHandlerBodiesConcurrent(t *testing.T) {
	v, _, _ := newTestVerifier(t, nil)
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusTeapot)
			return
		}
		_, _ = w.Write(b)
	}))
	const n = 64
	reqs := make([]*http.Request, n)
	bodies := make([]string, n)
	for i := range reqs {
		s := signer(testkit.NewClock(t0), "device-a", secretA)
		bodies[i] = fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", i*37))
		reqs[i] = signed(t, s, "POST", api+"/v1/pay", bodies[i], nil)
	}
	var wg sync.WaitGroup
	got := make([]string, n)
	codes := make([]int, n)
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, reqs[i])
			got[i], codes[i] = rec.Body.String(), rec.Code
		}()
	}
	wg.Wait()
	for i := range reqs {
		require.Equal(t, http.StatusOK, codes[i], "request %d", i)
		require.Equal(t, bodies[i], got[i], "request %d got its own body", i)
	}
}

// TestBodyUnknownLength: a body without Content-Length (chunked) is read to
// its end, by Verify and by Handler, up to MaxBodyBytes.
func TestBodyUnknownLength(t *testing.T) {
	v, _, _ := newTestVerifier(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	for _, size := range []int{1, 511, 512, 513, 4096} {
		body := strings.Repeat("b", size)
		s := signer(testkit.NewClock(t0), "device-a", secretA)
		r := signed(t, s, "POST", api+"/v1/pay", body, nil)
		r.ContentLength = -1
		res, err := v.Verify(r)
		require.NoError(t, err, "size %d", size)
		require.Equal(t, body, string(res.Body), "size %d", size)

		var got string
		h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got = string(b)
			require.Equal(t, int64(size), r.ContentLength, "next sees the length read")
		}))
		r = signed(t, s, "POST", api+"/v1/pay", body, nil)
		r.ContentLength = -1
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		require.Equal(t, http.StatusOK, rec.Code, "size %d", size)
		require.Equal(t, body, got, "size %d", size)
	}
}

func TestMaxBodyBytesBound(t *testing.T) {
	_, err := New(Config{Keys: StaticKeys(nil), MaxBodyBytes: 1<<30 + 1})
	require.ErrorContains(t, err, "MaxBodyBytes")
	_, err = New(Config{Keys: StaticKeys(nil), MaxBodyBytes: 1 << 30})
	require.NoError(t, err)
}
