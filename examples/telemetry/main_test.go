package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTelemetryExample(t *testing.T) {
	var logs bytes.Buffer
	h, err := newHandler(slog.New(slog.NewJSONHandler(&logs, nil)))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/hello", nil)
	req.Header.Set("X-Request-ID", "app-1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "app-1", resp.Header.Get("X-Request-ID"))
	require.Contains(t, logs.String(), `"correlation_id":"app-1"`)

	resp, err = http.Post(srv.URL+"/reports", "application/reports+json", strings.NewReader(`[{"type":"pinning-failure","age":0,"url":"https://a.example/","user_agent":"x","body":{}}]`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 204, resp.StatusCode)
	require.Contains(t, logs.String(), `"event":"client_pinning_failure"`)
}
