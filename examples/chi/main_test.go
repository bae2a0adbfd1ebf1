package main

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/signing"

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

	// The payments route also needs the device's signature.
	pay := func(device string, sign bool, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "https://example.com/payments", strings.NewReader(`{"amount":5}`))
		r.Header.Set("Authorization", "Bearer "+token)
		if sign {
			secret, err := signing.DeriveSecret(a.master, []byte("chi-example"), device)
			require.NoError(t, err)
			require.NoError(t, signing.NewSigner(device, secret).Sign(r))
		}
		rec := httptest.NewRecorder()
		a.handler.ServeHTTP(rec, r)
		return rec
	}
	payToken := a.token("payments")
	rec = pay("device-7", true, payToken)
	require.Equal(t, 200, rec.Code, rec.Body.String())
	require.Equal(t, "payment signed by device-7\n", rec.Body.String())
	rec = pay("device-7", false, payToken)
	require.Equal(t, 401, rec.Code)
	require.Contains(t, rec.Body.String(), "signature-required")
	require.Equal(t, 403, pay("device-7", true, a.token("orders:read")).Code, "the scope is checked before the signature")
}
