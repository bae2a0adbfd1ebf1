package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAuthExample(t *testing.T) {
	k, err := newKeys()
	require.NoError(t, err)
	h, v, err := newHandler(k, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer v.Close()
	tok, err := k.token("orders:read", time.Now())
	require.NoError(t, err)
	call := func(method, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/orders", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	rec := call("GET", tok)
	require.Equal(t, 200, rec.Code)
	require.Equal(t, "orders of user-1\n", rec.Body.String())
	require.Equal(t, http.StatusForbidden, call("POST", tok).Code)
	require.Equal(t, 401, call("GET", "").Code)
	expired, _ := k.token("orders:read", time.Now().Add(-time.Hour))
	require.Equal(t, 401, call("GET", expired).Code)
}
