package revoke

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

const iss = "https://idp.example/"

var t0 = time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)

func newTestList(t testing.TB, mod func(*Config)) (*List, *testkit.Clock, *testkit.LogSink) {
	t.Helper()
	clk := testkit.NewClock(t0)
	logs := &testkit.LogSink{}
	cfg := Config{Now: clk.Now, Logger: slogTo(logs)}
	if mod != nil {
		mod(&cfg)
	}
	l, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l, clk, logs
}

func TestRevokedKinds(t *testing.T) {
	before, after := t0.Add(-time.Minute), t0.Add(time.Second)
	tests := []struct {
		name string
		give Revocation
		// the token checked
		iss, sub, sid, jti, client string
		iat                        time.Time
		want                       bool
	}{
		{"subject_token_issued_before", Revocation{Issuer: iss, Subject: "u1"}, iss, "u1", "", "", "", before, true},
		{"subject_token_issued_at_revocation", Revocation{Issuer: iss, Subject: "u1"}, iss, "u1", "", "", "", t0, true},
		{"subject_login_after_revocation_works", Revocation{Issuer: iss, Subject: "u1"}, iss, "u1", "", "", "", after, false},
		{"subject_of_another_issuer_untouched", Revocation{Issuer: iss, Subject: "u1"}, "https://other/", "u1", "", "", "", before, false},
		{"another_subject_untouched", Revocation{Issuer: iss, Subject: "u1"}, iss, "u2", "", "", "", before, false},
		{"session_any_iat", Revocation{Issuer: iss, SessionID: "s1"}, iss, "u1", "s1", "", "", after, true},
		{"session_other_issuer", Revocation{Issuer: iss, SessionID: "s1"}, "https://other/", "u1", "s1", "", "", before, false},
		{"token_id", Revocation{Issuer: iss, TokenID: "j1"}, iss, "u1", "", "j1", "", after, true},
		{"client_before", Revocation{Issuer: iss, ClientID: "app"}, iss, "u1", "", "", "app", before, true},
		{"client_after", Revocation{Issuer: iss, ClientID: "app"}, iss, "u1", "", "", "app", after, false},
		{"empty_claims_match_nothing", Revocation{Issuer: iss, SessionID: "s1"}, iss, "", "", "", "", before, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, _ := newTestList(t, nil)
			require.NoError(t, l.Revoke(t.Context(), tt.give))
			require.Equal(t, tt.want, l.Revoked(tt.iss, tt.sub, tt.sid, tt.jti, tt.client, tt.iat))
		})
	}
}

func TestRevocationExpires(t *testing.T) {
	l, clk, _ := newTestList(t, nil)
	require.NoError(t, l.Revoke(t.Context(), Revocation{Issuer: iss, TokenID: "j1"}))
	clk.Advance(time.Hour + 30*time.Second - time.Nanosecond)
	require.True(t, l.Revoked(iss, "", "", "j1", "", t0), "held for MaxTokenLifetime + ClockSkew")
	clk.Advance(time.Nanosecond)
	require.False(t, l.Revoked(iss, "", "", "j1", "", t0))
}

// TestRevokeRequestAttacks: requests that would revoke too much, for too
// long, or nothing at all.
func TestRevokeRequestAttacks(t *testing.T) {
	tests := []struct {
		name string
		give Revocation
	}{
		{"no_issuer", Revocation{Subject: "u1"}},
		{"nothing_named", Revocation{Issuer: iss}},
		{"two_things_named", Revocation{Issuer: iss, Subject: "u1", TokenID: "j1"}},
		{"expired_revocation_request", Revocation{Issuer: iss, Subject: "u1", ExpiresAt: t0}},
		{"at_in_the_future_blocks_next_logins", Revocation{Issuer: iss, Subject: "u1", At: t0.Add(time.Hour)}},
		{"oversized_value", Revocation{Issuer: iss, Subject: string(make([]byte, maxRecord))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, _ := newTestList(t, nil)
			require.ErrorIs(t, l.Revoke(t.Context(), tt.give), ErrInvalid)
			require.Zero(t, l.Stats().Entries)
		})
	}
}

// TestTooLongRevocationRequestClamped: an expiry past the longest token
// lifetime is clamped to it, said in the log and counted.
func TestTooLongRevocationRequestClamped(t *testing.T) {
	l, clk, logs := newTestList(t, func(c *Config) { c.MaxTokenLifetime = 10 * time.Minute; c.ClockSkew = time.Second })
	require.NoError(t, l.Revoke(t.Context(), Revocation{Issuer: iss, TokenID: "j1", ExpiresAt: t0.Add(365 * 24 * time.Hour)}))
	require.Equal(t, uint64(1), l.Stats().Clamped)
	require.Contains(t, logs.String(), `"event":"revocation_clamped"`)
	clk.Advance(10*time.Minute + time.Second)
	require.False(t, l.Revoked(iss, "", "", "j1", "", t0), "gone at the ceiling, not a year later")
}

func TestMergeKeepsLaterAtAndExpiry(t *testing.T) {
	l, _, _ := newTestList(t, nil)
	require.NoError(t, l.Revoke(t.Context(), Revocation{Issuer: iss, Subject: "u1", At: t0}))
	require.NoError(t, l.Revoke(t.Context(), Revocation{Issuer: iss, Subject: "u1", At: t0.Add(-time.Minute), ExpiresAt: t0.Add(time.Minute)}))
	require.True(t, l.Revoked(iss, "u1", "", "", "", t0), "an older revocation does not narrow a newer one")
	require.Equal(t, 1, l.Stats().Entries)
}

// TestRevocationFloodBounded: a flood of revocations fills the cap; the
// next is refused with ErrFull and counted, no unexpired one is dropped,
// and expired ones make room.
func TestRevocationFloodBounded(t *testing.T) {
	const maxEntries = 1000
	l, clk, logs := newTestList(t, func(c *Config) { c.MaxEntries = maxEntries })
	for i := range maxEntries {
		require.NoError(t, l.Revoke(t.Context(), Revocation{Issuer: iss, TokenID: fmt.Sprint("j", i), ExpiresAt: t0.Add(time.Duration(i+1) * time.Second)}))
	}
	for i := range 5000 {
		require.ErrorIs(t, l.Revoke(t.Context(), Revocation{Issuer: iss, TokenID: fmt.Sprint("flood", i)}), ErrFull)
	}
	st := l.Stats()
	require.Equal(t, maxEntries, st.Entries)
	require.Equal(t, uint64(5000), st.Refused)
	require.Contains(t, logs.String(), `"event":"revocation_refused"`)
	for i := range maxEntries {
		require.True(t, l.Revoked(iss, "", "", fmt.Sprint("j", i), "", t0), "j%d dropped", i)
	}
	clk.Advance(10 * time.Second) // j0..j9 expire
	for i := range 10 {
		require.NoError(t, l.Revoke(t.Context(), Revocation{Issuer: iss, TokenID: fmt.Sprint("new", i)}))
	}
	require.ErrorIs(t, l.Revoke(t.Context(), Revocation{Issuer: iss, TokenID: "new-10"}), ErrFull)
	require.Equal(t, maxEntries, l.Stats().Entries)
}

// TestConcurrentRevokeAndCheck: many goroutines revoke distinct tokens
// and check them; every revocation is seen by its own check after
// Revoke returns, none is lost, and none of the untouched tokens is
// refused.
func TestConcurrentRevokeAndCheck(t *testing.T) {
	const workers, each = 32, 200
	l, _, _ := newTestList(t, nil)
	var seen, falsePos atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				jti := fmt.Sprintf("w%d-%d", w, i)
				if l.Revoked(iss, "u", "", jti, "", t0) {
					falsePos.Add(1)
				}
				if err := l.Revoke(t.Context(), Revocation{Issuer: iss, TokenID: jti}); err != nil {
					errs <- err
					return
				}
				if l.Revoked(iss, "u", "", jti, "", t0) {
					seen.Add(1)
				}
				if l.Revoked(iss, "u", "", jti+"-other", "", t0) {
					falsePos.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(workers*each), seen.Load())
	require.Zero(t, falsePos.Load())
	require.Equal(t, workers*each, l.Stats().Entries)
}

func TestRevokedAllocatesNothing(t *testing.T) {
	l, _, _ := newTestList(t, nil)
	require.NoError(t, l.Revoke(t.Context(), Revocation{Issuer: iss, Subject: "u1"}))
	allocs := testing.AllocsPerRun(100, func() {
		_ = l.Revoked(iss, "u2", "s", "j", "c", t0)
		_ = l.Revoked(iss, "u1", "s", "j", "c", t0)
	})
	require.Zero(t, allocs)
}

func TestNewRejectsNegative(t *testing.T) {
	_, err := New(Config{MaxEntries: -1})
	require.Error(t, err)
}

func BenchmarkRevoked(b *testing.B) {
	l, _, _ := newTestList(b, nil)
	for i := range 10000 {
		require.NoError(b, l.Revoke(b.Context(), Revocation{Issuer: iss, TokenID: fmt.Sprint("j", i)}))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = l.Revoked(iss, "user-1", "sess", "tok", "app", t0)
		}
	})
}

func BenchmarkRevokedSerial(b *testing.B) {
	l, _, _ := newTestList(b, nil)
	for i := range 10000 {
		require.NoError(b, l.Revoke(b.Context(), Revocation{Issuer: iss, TokenID: fmt.Sprint("j", i)}))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Revoked(iss, "user-1", "sess", "tok", "app", t0)
	}
}

// fakeStore is a Store that delivers what the test hands it.
type fakeStore struct {
	recs   chan []byte
	synced chan struct{}
}

func (f *fakeStore) Publish(context.Context, []byte, time.Time) error { return nil }

func (f *fakeStore) Watch(ctx context.Context, apply func([]byte), synced func()) error {
	synced()
	f.synced <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-f.recs:
			apply(b)
			f.synced <- struct{}{}
		}
	}
}

// TestStoreRecordAttacks: records read from the shared store are held to
// this instance's bounds: malformed ones are counted and ignored, an At
// in the future (refusing logins to come) is refused, and an expiry past
// the longest token lifetime is clamped.
func TestStoreRecordAttacks(t *testing.T) {
	f := &fakeStore{recs: make(chan []byte), synced: make(chan struct{})}
	l, clk, _ := newTestList(t, func(c *Config) { c.Store = f })
	<-f.synced
	require.NoError(t, l.Ready(t.Context()))
	send := func(r record) {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		f.recs <- b
		<-f.synced
	}
	f.recs <- []byte("{not json")
	<-f.synced
	send(record{Iss: iss, Kind: kindSubject, Val: "u1", At: t0.Add(time.Hour).UnixNano(), Exp: t0.Add(time.Hour).UnixNano()})
	send(record{Iss: iss, Kind: 9, Val: "x", At: t0.UnixNano(), Exp: t0.Add(time.Hour).UnixNano()})
	require.Equal(t, uint64(3), l.Stats().Invalid)
	require.Zero(t, l.Stats().Entries)
	send(record{Iss: iss, Kind: kindToken, Val: "j1", At: t0.UnixNano(), Exp: t0.Add(1000 * time.Hour).UnixNano()})
	require.True(t, l.Revoked(iss, "", "", "j1", "", t0))
	clk.Advance(time.Hour + 30*time.Second)
	require.False(t, l.Revoked(iss, "", "", "j1", "", t0), "clamped to the longest token lifetime")
}
