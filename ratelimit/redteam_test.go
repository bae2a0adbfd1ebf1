package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ctxStore is a shared FailureStore that, like redisstore's, fails a call
// whose caller's context has already ended, and otherwise answers.
type ctxStore struct{ FailureStore }

func (s ctxStore) Reserve(ctx context.Context, key string, p FailurePolicy, now time.Time) (bool, int64, int, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, 0, 0, err
	}
	return s.FailureStore.Reserve(ctx, key, p, now)
}

// ctxLimitStore is the same for a Limiter's Store.
type ctxLimitStore struct{ Store }

func (s ctxLimitStore) Take(ctx context.Context, key string, interval time.Duration, burst int, now time.Time) (bool, int, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, 0, err
	}
	return s.Store.Take(ctx, key, interval, burst, now)
}

// goneRequest is a request whose client hung up before the middleware ran.
func goneRequest(account string) *http.Request {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "POST", "/otp", nil)
	r.Header.Set("X-Account", account)
	return r
}

// TestRedTeamHangupBypassesSharedBudget: a client that hangs up before
// its attempt is reserved makes the shared store's call fail; that must
// not hand the attempt to the outage policy (a local budget per instance,
// or none), since the shared store is healthy: the guess would be checked
// outside the budget every instance shares.
func TestRedTeamHangupBypassesSharedBudget(t *testing.T) {
	for _, policy := range []StorePolicy{FallbackLocal, FailOpen, FailClosed} {
		t.Run(fmt.Sprintf("hangup_takes_local_budget_policy_%d", policy), func(t *testing.T) {
			store := ctxStore{NewMemoryFailureStore(100, OverflowReject)}
			b, err := NewFailureBudget(FailureConfig{Name: "otp", Key: KeyByHeader("X-Account"), Budget: 2, Per: time.Hour,
				Store: store, KeySecret: bytes.Repeat([]byte{1}, 32), StorePolicy: policy, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			var entered atomic.Int64
			h := b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered.Add(1) // the OTP is checked here, client or not
				w.WriteHeader(http.StatusUnauthorized)
			}))
			for range 20 {
				h.ServeHTTP(httptest.NewRecorder(), goneRequest("alice"))
			}
			require.Zero(t, entered.Load(), "no guess checked outside the shared budget")
			for range 5 {
				r := httptest.NewRequest("POST", "/otp", nil)
				r.Header.Set("X-Account", "alice")
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
			require.EqualValues(t, 2, entered.Load(), "the shared budget, once")
		})
	}
	for _, policy := range []StorePolicy{FallbackLocal, FailOpen} {
		t.Run(fmt.Sprintf("hangup_takes_local_bucket_policy_%d", policy), func(t *testing.T) {
			l, err := New(Config{Name: "api", Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByHeader("X-Account"),
				Store: ctxLimitStore{NewMemoryStore(100, OverflowReject)}, KeySecret: bytes.Repeat([]byte{1}, 32),
				StorePolicy: policy, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			var entered atomic.Int64
			h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { entered.Add(1) }))
			for range 20 {
				h.ServeHTTP(httptest.NewRecorder(), goneRequest("alice"))
			}
			require.Zero(t, entered.Load(), "no request served outside the shared bucket")
		})
	}
}

// TestRedTeamKeyJoinBoundaries: a client-chosen part can never move the
// boundary between KeyJoin's parts.
func TestRedTeamKeyJoinBoundaries(t *testing.T) {
	j := KeyJoin(KeyByHeader("A"), KeyByHeader("B"))
	key := func(a, b string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("A", a)
		r.Header.Set("B", b)
		k, err := j(r)
		require.NoError(t, err)
		return k
	}
	pairs := [][2]string{{"a|b", "c"}, {"a", "b|c"}, {"1:a", "b"}, {"1", "a1:b"}, {"a1:", "b"}, {"a", "1:b"}, {"12:", "x"}, {"1", "2:x"},
		{"ip4:1.2.3.4", "x"}, {"ip4:1.2.3.", "4x"}, {"\xff", "\xfe"}, {"\xff\xfe", "\x00"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		k := key(p[0], p[1])
		prev, dup := seen[k]
		require.False(t, dup, "%q and %q join to one key", p, prev)
		seen[k] = p
	}
}

// TestRedTeamHostileKeys: empty, huge and non-UTF-8 keys neither panic
// nor answer 500, and stay apart.
func TestRedTeamHostileKeys(t *testing.T) {
	var raw string
	key := func(*http.Request) (string, error) { return raw, nil }
	b, _, _ := newBudget(t, FailureConfig{Key: key, Budget: 1, Per: time.Hour, MaxKeys: 10})
	l, err := New(Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: key, MaxKeys: 10, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	for _, k := range []string{"", strings.Repeat("x", 1<<20), "\xff\xfe\x00", "\u202e"} {
		raw = k
		rec := httptest.NewRecorder()
		b.Handler(login).ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		require.Equal(t, 401, rec.Code)
		rec = httptest.NewRecorder()
		b.Handler(login).ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		require.Equal(t, 429, rec.Code, "key %.8q is locked, not another's", k)
		rec = httptest.NewRecorder()
		l.Handler(login).ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		require.NotEqual(t, 500, rec.Code)
	}
}
