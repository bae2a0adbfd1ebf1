package telemetry

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReportHandler(t *testing.T) {
	const pinning = `[{"type":"pinning-failure","age":1200,"url":"https://api.example.com/v1/pay?token=SECRET-QUERY","user_agent":"App/1.0","body":{"hostname":"api.example.com"}}]`
	tests := []struct {
		name        string
		method      string
		ctype       string
		body        string
		wantStatus  int
		wantType    string
		wantEvents  map[string]int64
		wantLogHost string
	}{
		{name: "pinning_failure", ctype: "application/reports+json", body: pinning, wantStatus: 204,
			wantEvents: map[string]int64{"client_pinning_failure/pinning-failure": 1}, wantLogHost: "api.example.com"},
		{name: "application_json_accepted", ctype: "application/json; charset=utf-8", body: pinning, wantStatus: 204,
			wantEvents: map[string]int64{"client_pinning_failure/pinning-failure": 1}},
		{name: "several_kinds", ctype: "application/reports+json", body: `[
			{"type":"tls-failure","age":0,"url":"https://a.example","user_agent":"x","body":{}},
			{"type":"attestation-failure","age":5,"url":"","user_agent":"","body":{"provider":"app-attest"}},
			{"type":"network-error","age":5,"url":"https://a.example","user_agent":"","body":{"type":"tls.cert.invalid"}},
			{"type":"network-error","age":5,"url":"https://a.example","user_agent":"","body":{"type":"dns.name_not_resolved"}},
			{"type":"made-up","age":5,"url":"https://a.example","user_agent":"","body":{}}]`, wantStatus: 204,
			wantEvents: map[string]int64{
				"client_tls_failure/tls-failure":                 1,
				"client_attestation_failure/attestation-failure": 1,
				"client_tls_failure/network-error":               1,
				"client_network_error/network-error":             1,
				"client_report/other":                            1,
			}},
		{name: "get_not_allowed", method: "GET", wantStatus: 405, wantType: "method-not-allowed"},
		{name: "wrong_content_type", ctype: "text/plain", body: pinning, wantStatus: 415, wantType: "unsupported-media-type"},
		{name: "missing_content_type", body: pinning, wantStatus: 415, wantType: "unsupported-media-type"},
		{name: "malformed_json", ctype: "application/reports+json", body: `[{"type":`, wantStatus: 400, wantType: "invalid-report"},
		{name: "not_a_list", ctype: "application/reports+json", body: `{"type":"x"}`, wantStatus: 400, wantType: "invalid-report"},
		{name: "empty_list", ctype: "application/reports+json", body: `[]`, wantStatus: 400, wantType: "invalid-report"},
		{name: "empty_body", ctype: "application/reports+json", body: ``, wantStatus: 400, wantType: "invalid-report"},
		{name: "unknown_member", ctype: "application/reports+json", body: `[{"type":"x","age":1,"url":"","user_agent":"","body":{},"evil":1}]`, wantStatus: 400, wantType: "invalid-report"},
		{name: "body_not_object", ctype: "application/reports+json", body: `[{"type":"x","age":1,"url":"","user_agent":"","body":"str"}]`, wantStatus: 400, wantType: "invalid-report"},
		{name: "missing_type", ctype: "application/reports+json", body: `[{"age":1,"body":{}}]`, wantStatus: 400, wantType: "invalid-report"},
		{name: "negative_age", ctype: "application/reports+json", body: `[{"type":"x","age":-1,"body":{}}]`, wantStatus: 400, wantType: "invalid-report"},
		{name: "trailing_data", ctype: "application/reports+json", body: pinning + `{"x":1}`, wantStatus: 400, wantType: "invalid-report"},
		{name: "two_lists", ctype: "application/reports+json", body: pinning + pinning, wantStatus: 400, wantType: "invalid-report"},
		{name: "too_many_reports", ctype: "application/reports+json", body: "[" + strings.Repeat(`{"type":"x","age":1,"body":{}},`, 3) + `{"type":"x","age":1,"body":{}}]`, wantStatus: 400, wantType: "too-many-reports"},
		{name: "oversize", ctype: "application/reports+json", body: `[{"type":"x","age":1,"url":"` + strings.Repeat("a", 5000) + `","body":{}}]`, wantStatus: 413, wantType: "report-too-large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, logs, reader := newObserver(t, Config{MaxReportBytes: 4096, MaxReports: 3})
			method := tt.method
			if method == "" {
				method = "POST"
			}
			if tt.name == "several_kinds" {
				o.maxReports = 10
			}
			req := httptest.NewRequest(method, "/reports", strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			rec := httptest.NewRecorder()
			o.Handler(o.ReportHandler()).ServeHTTP(rec, req)
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			id := rec.Header().Get("X-Request-ID")
			if tt.wantType != "" {
				require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
				require.Contains(t, rec.Body.String(), `"type":"urn:apiguard:problem:`+tt.wantType+`"`)
				require.NotContains(t, rec.Body.String(), "SECRET")
				require.Empty(t, eventCounts(t, reader), "rejected reports log no events")
				if tt.wantStatus == 405 {
					require.Equal(t, "POST", rec.Header().Get("Allow"))
				}
				return
			}
			require.Equal(t, tt.wantEvents, eventCounts(t, reader))
			recs := logs.records(t)
			require.NotEmpty(t, recs)
			for _, r := range recs {
				require.Equal(t, id, r["correlation_id"], "each report event carries the correlation ID")
			}
			if tt.wantLogHost != "" {
				require.Equal(t, tt.wantLogHost, recs[0]["host"])
				require.Equal(t, float64(1200), recs[0]["age_ms"])
			}
			out := logs.String()
			require.NotContains(t, out, "SECRET-QUERY", "URL query never logged")
			require.NotContains(t, out, "/v1/pay", "URL path never logged")
			require.NotContains(t, out, "App/1.0", "user agent never logged")
		})
	}
}

func TestReportHost(t *testing.T) {
	require.Equal(t, "api.example.com", reportHost("https://user:pw@api.example.com:8443/x?y"))
	require.Equal(t, "", reportHost("https://exa\"mple.com/"))
	require.Equal(t, "", reportHost("::::"))
	require.Equal(t, "", reportHost("https://"+strings.Repeat("a", 3000)))
}

func FuzzReportHandler(f *testing.F) {
	f.Add(`[{"type":"pinning-failure","age":1,"url":"https://a/","user_agent":"x","body":{}}]`)
	f.Add(`[{"type":"network-error","age":1,"url":"https://a/","user_agent":"x","body":{"type":"tls.x"}}]`)
	f.Add(`[]`)
	f.Add(`[{"type":`)
	o, err := New(Config{Logger: nopLogger(), MaxReportBytes: 1024, MaxReports: 4})
	if err != nil {
		f.Fatal(err)
	}
	h := o.ReportHandler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/reports", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/reports+json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusNoContent, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}
