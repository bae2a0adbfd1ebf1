package problem

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		give       Problem
		wantStatus int
		wantBody   map[string]any
	}{
		{
			name:       "full",
			give:       Problem{Type: TypeBase + "invalid-token", Title: "Invalid token", Status: 401, Detail: "The access token is not valid."},
			wantStatus: 401,
			wantBody:   map[string]any{"type": TypeBase + "invalid-token", "title": "Invalid token", "status": float64(401), "detail": "The access token is not valid."},
		},
		{
			name:       "defaults_fill_type_and_title",
			give:       Problem{Status: 429},
			wantStatus: 429,
			wantBody:   map[string]any{"type": "about:blank", "title": "Too Many Requests", "status": float64(429)},
		},
		{
			name:       "non_error_status_becomes_400",
			give:       Problem{Status: 200, Title: "x"},
			wantStatus: 400,
			wantBody:   map[string]any{"type": "about:blank", "title": "x", "status": float64(400)},
		},
		{
			name:       "server_error_status_zero_never_500",
			give:       Problem{},
			wantStatus: 400,
			wantBody:   map[string]any{"type": "about:blank", "title": "Bad Request", "status": float64(400)},
		},
		{
			name:       "extension_cannot_override_standard_members",
			give:       Problem{Status: 429, Title: "Quota", Extensions: map[string]any{"status": 200, "violated-policies": []string{"api"}}},
			wantStatus: 429,
			wantBody:   map[string]any{"type": "about:blank", "title": "Quota", "status": float64(429), "violated-policies": []any{"api"}},
		},
		{
			name:       "unencodable_extension_dropped",
			give:       Problem{Status: 403, Title: "No", Extensions: map[string]any{"bad": make(chan int)}},
			wantStatus: 403,
			wantBody:   map[string]any{"type": "about:blank", "title": "No", "status": float64(403)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			Write(rec, tt.give)
			require.Equal(t, tt.wantStatus, rec.Code)
			require.Equal(t, ContentType, rec.Header().Get("Content-Type"))
			require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
			require.Equal(t, `Bearer error="invalid_token"`, rec.Header().Get("WWW-Authenticate"), "caller headers kept")
			var got map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			require.Equal(t, tt.wantBody, got)
		})
	}
}

func TestMarshalStableOrder(t *testing.T) {
	p := Problem{Type: "about:blank", Title: "Too Many Requests", Status: http.StatusTooManyRequests, Detail: "d"}
	require.Equal(t, `{"detail":"d","status":429,"title":"Too Many Requests","type":"about:blank"}`+"\n", string(Marshal(p)))
}
