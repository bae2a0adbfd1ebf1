package main

import (
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRateLimitExample(t *testing.T) {
	h, err := newHandler(slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	codes := []int{}
	for range 7 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/catalogue", nil))
		codes = append(codes, rec.Code)
	}
	require.Equal(t, []int{200, 200, 200, 200, 200, 429, 429}, codes)

	h, _ = newHandler(slog.New(slog.DiscardHandler))
	login := func(pw string) int {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"user": {"alice"}, "password": {pw}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "198.51.100.7:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	for range 3 {
		require.Equal(t, 401, login("guess"))
	}
	require.Equal(t, 429, login("open sesame"), "the third failure locked alice out from this address")
}
