package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSigningExample(t *testing.T) {
	h, err := newHandler(slog.New(slog.DiscardHandler), "http")
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	c, err := client("device-7.v1")
	require.NoError(t, err)
	resp, err := c.Post(srv.URL+"/transfer", "application/json", strings.NewReader(`{"amount":1}`))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "device-7.v1: {\"amount\":1}\n", string(b))

	resp, err = http.Post(srv.URL+"/transfer", "application/json", strings.NewReader(`{"amount":1}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode, "unsigned")
	require.NotEmpty(t, resp.Header.Get("Accept-Signature"))
}
