package revoke

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPollAcknowledges: the poller verifies each polled SET, records the
// revocations, acknowledges the accepted jti values and reports the
// refused ones with their RFC 8936 error on the next poll; the
// transmitter's authorization is sent.
func TestPollAcknowledges(t *testing.T) {
	x := newTx(t, "k1")
	forger := newTx(t, "k1")
	type poll struct {
		req  pollRequest
		auth string
	}
	polls := make(chan poll, 16)
	first := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p poll
		p.auth = r.Header.Get("Authorization")
		if err := json.NewDecoder(r.Body).Decode(&p.req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		polls <- p
		resp := pollResponse{Sets: map[string]string{}}
		if first {
			first = false
			resp.Sets["set-1"] = x.sign(t, nil, nil)
			resp.Sets["set-2"] = forger.sign(t, nil, map[string]any{"jti": "set-2"})
			resp.Sets["set-3"] = x.sign(t, nil, map[string]any{"jti": "set-3", "sub_id": map[string]any{"format": "opaque", "id": "u3"}})
		} else if !p.req.ReturnImmediately && len(p.req.Ack) == 0 {
			<-r.Context().Done() // a long poll, held until the poller stops
			return
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	r, l, _, _ := newTestReceiver(t, x, func(c *ReceiverConfig) { c.PollURL = srv.URL; c.PollAuthorization = "Bearer poll-token" }) // gitleaks:allow -- a test value

	p1 := <-polls
	require.Equal(t, "Bearer poll-token", p1.auth)
	require.Equal(t, 100, p1.req.MaxEvents)
	require.True(t, p1.req.ReturnImmediately, "the first poll asks at once")
	require.Empty(t, p1.req.Ack)
	p2 := <-polls
	require.ElementsMatch(t, []string{"set-1", "set-3"}, p2.req.Ack)
	require.Equal(t, map[string]setError{"set-2": {Err: "invalid_key", Description: "The SET's key or signature is invalid."}}, p2.req.SetErrs)
	p3 := <-polls
	require.False(t, p3.req.ReturnImmediately, "nothing pending: a long poll")
	require.Empty(t, p3.req.Ack)
	require.NoError(t, r.Close())
	require.True(t, l.Revoked(transmitter, "u1", "", "", "", t0.Add(-time.Second)))
	require.True(t, l.Revoked(transmitter, "u3", "", "", "", t0.Add(-time.Second)))
	require.Equal(t, ReceiverStats{Accepted: 2, Rejected: 1, Revoked: 2}, r.Stats())
}

// TestPollTransmitterDown: a transmitter that fails is polled again with
// back-off, and the acks are sent again.
func TestPollTransmitterDown(t *testing.T) {
	x := newTx(t, "k1")
	calls := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- struct{}{}
		http.Error(w, "down", http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	_, _, _, logs := newTestReceiver(t, x, func(c *ReceiverConfig) { c.PollURL = srv.URL })
	<-calls
	<-calls // again, after the back-off
	require.Contains(t, logs.String(), `"event":"set_poll_error"`)
}
