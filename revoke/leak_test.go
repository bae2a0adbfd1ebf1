package revoke

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestCloseStopsGoroutines: Close ends the List's store watch and the
// Receiver's poller, even mid long poll, and is idempotent.
func TestCloseStopsGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	polled := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client leave
		select {
		case polled <- struct{}{}:
		default:
		}
		<-r.Context().Done() // a long poll
	}))
	defer srv.Close()
	f := &fakeStore{recs: make(chan []byte), synced: make(chan struct{}, 1)}
	l, err := New(Config{Store: f, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	<-f.synced
	x := newTx(t, "k1")
	r, err := NewReceiver(ReceiverConfig{List: l, Issuer: transmitter, Audience: receiverAud, Keys: x.set, PollURL: srv.URL})
	require.NoError(t, err)
	<-polled
	require.NoError(t, r.Close())
	require.NoError(t, r.Close())
	require.NoError(t, l.Close())
	require.NoError(t, l.Close())
}
