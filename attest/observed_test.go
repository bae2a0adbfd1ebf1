package attest

import (
	"bytes"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A risk engine whose logger counts no security events says so at New,
// naming the fix, so that risk_denied and impossible_travel never vanish
// from the metrics unnoticed.
func TestNewWarnsWhenEventsUncounted(t *testing.T) {
	is := newAppCheckIssuer(t)
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	var buf bytes.Buffer
	_, err := New(Config{AppCheck: c, Subject: func(*http.Request) (string, error) { return "", nil },
		Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	require.Contains(t, buf.String(), "level=WARN")
	require.Contains(t, buf.String(), "attest: Config.Logger does not count security events")
}
