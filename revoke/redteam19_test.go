package revoke

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSETEventTimestampOverflowRevokesNothing: a numeric date past 2262
// (but under the 2^40 s numericTime accepts) overflowed int64 nanoseconds
// and became a time in 1677: an event_timestamp so far ahead made a
// subject revocation with At in 1677, which revokes no token, and the SET
// was still acknowledged (202), so the transmitter never sent it again.
// An event time ahead of the clock must be refused instead.
func TestSETEventTimestampOverflowRevokesNothing(t *testing.T) {
	x := newTx(t, "k1")
	r, l, _, _ := newTestReceiver(t, x, nil)
	set := x.sign(t, nil, map[string]any{"jti": "far", "events": map[string]any{
		EventAccountDisabled: map[string]any{"event_timestamp": int64(1e10)},
	}})
	rec := push(r, set, nil)
	require.Equal(t, http.StatusBadRequest, rec.Code, "an event time ahead of the clock is a bad SET, not an accepted one")
	require.Equal(t, "invalid_request", errCode(t, rec))
	require.Zero(t, l.Stats().Entries)

	// And an exp far ahead is not an expired SET.
	rec = push(r, x.sign(t, nil, map[string]any{"jti": "far-exp", "exp": int64(1e10)}), nil)
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	require.True(t, l.Revoked(transmitter, "u1", "", "", "", t0.Add(-time.Minute)))
}

// TestSubjectRevokedTokenWithFractionalIatSameSecond: SET event times
// and most iat values are whole seconds, but NumericDate allows
// fractions. A token issued at 12:00:00.5 by an issuer that writes
// fractional iat, for an account disabled at 12:00:00.9 and reported with
// event_timestamp 12:00:00, had iat after At and escaped the revocation.
// Within one second the order is unknown: the token is refused.
func TestSubjectRevokedTokenWithFractionalIatSameSecond(t *testing.T) {
	for _, give := range []Revocation{{Issuer: iss, Subject: "u1", At: t0}, {Issuer: iss, ClientID: "app", At: t0}} {
		l, _, _ := newTestList(t, nil)
		require.NoError(t, l.Revoke(t.Context(), give))
		require.True(t, l.Revoked(iss, "u1", "", "", "app", t0.Add(500*time.Millisecond)), "%+v", give)
		require.False(t, l.Revoked(iss, "u1", "", "", "app", t0.Add(time.Second)), "a login in the next second works")
	}
}
