package shadowbody

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRestoreAfterPartialRead: a check that read part of the body (a body
// over its limit) or all of it (a tampered body) hands the next handler
// the whole body; the caller's request is not modified.
func TestRestoreAfterPartialRead(t *testing.T) {
	tests := []struct {
		name string
		read int
	}{
		{name: "none_read", read: 0},
		{name: "part_read_over_limit", read: 7},
		{name: "all_read", read: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/pay", strings.NewReader(`{"amount":100,"to":"bob"}`))
			orig := r.Body
			in, b := Watch(r)
			require.NotSame(t, r, in)
			_, err := io.ReadAll(io.LimitReader(in.Body, int64(tt.read)))
			require.NoError(t, err)
			out := b.Restore(r)
			got, err := io.ReadAll(out.Body)
			require.NoError(t, err)
			require.Equal(t, `{"amount":100,"to":"bob"}`, string(got))
			require.True(t, orig == r.Body, "the caller's request keeps its body")
		})
	}
}

func TestNoBody(t *testing.T) {
	r := httptest.NewRequest("GET", "/orders", nil)
	r.Body = http.NoBody
	in, b := Watch(r)
	require.Same(t, r, in)
	require.Nil(t, b)
	require.Same(t, r, b.Restore(r))
}
