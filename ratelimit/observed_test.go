package ratelimit

import (
	"bytes"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A Limiter or FailureBudget whose logger counts no security events says so
// at New, naming the fix, so that rate_limited and lockouts never vanish
// from the metrics unnoticed.
func TestNewWarnsWhenEventsUncounted(t *testing.T) {
	key := func(*http.Request) (string, error) { return "k", nil }
	var buf bytes.Buffer
	_, err := New(Config{Name: "api", Limit: Limit{Requests: 1, Per: time.Second}, Key: key, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	require.Contains(t, buf.String(), "level=WARN")
	require.Contains(t, buf.String(), "ratelimit: Config.Logger does not count security events")

	buf.Reset()
	_, err = NewFailureBudget(FailureConfig{Name: "login", Budget: 3, Per: time.Minute, Key: key, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	require.Contains(t, buf.String(), "ratelimit: Config.Logger does not count security events")
}
