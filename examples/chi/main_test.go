package main

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChiExample(t *testing.T) {
	a, err := newApp(slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer a.tokens.Close()
	call := func(path, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		a.handler.ServeHTTP(rec, r)
		return rec
	}
	rec := call("/orders/7", a.token("orders:read"))
	require.Equal(t, 200, rec.Code)
	require.Equal(t, "order 7 of user-1\n", rec.Body.String())
	require.NotEmpty(t, rec.Header().Get("X-Request-ID"), "telemetry outermost")
	require.NotEmpty(t, rec.Header().Get("RateLimit"))
	require.Equal(t, 401, call("/orders/7", "").Code)
	require.Equal(t, 403, call("/orders/7", a.token("profile")).Code)
	require.Equal(t, 200, call("/health", "").Code)
}
