package ratelimit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

var _ func(http.Handler) http.Handler = (*Limiter)(nil).Handler
var _ func(http.Handler) http.Handler = (*FailureBudget)(nil).Handler

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testClock is a settable clock.
type testClock = testkit.Clock

// logSink collects log output from concurrent writers.
type logSink = testkit.LogSink

func newLimiter(t *testing.T, cfg Config) (*Limiter, *testClock, *logSink) {
	t.Helper()
	clk := testkit.NewClock(t0)
	logs := &logSink{}
	cfg.Now = clk.Now
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	l, err := New(cfg)
	require.NoError(t, err)
	return l, clk, logs
}

func get(h http.Handler, remote string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/v1/orders", nil)
	r.RemoteAddr = remote
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

var ok204 = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })

func TestBurstThenRefill(t *testing.T) {
	l, clk, _ := newLimiter(t, Config{Limit: Limit{Requests: 60, Per: time.Minute, Burst: 3}, Key: KeyByIP()})
	h := l.Handler(ok204)
	for i := range 3 {
		rec := get(h, "203.0.113.7:1000", nil)
		require.Equal(t, 204, rec.Code, "burst request %d", i+1)
	}
	rec := get(h, "203.0.113.7:1000", nil)
	require.Equal(t, 429, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))

	clk.Advance(999 * time.Millisecond)
	require.Equal(t, 429, get(h, "203.0.113.7:1000", nil).Code, "not yet a whole token")
	clk.Advance(time.Millisecond)
	require.Equal(t, 204, get(h, "203.0.113.7:1000", nil).Code, "one token after one second")
	require.Equal(t, 429, get(h, "203.0.113.7:1000", nil).Code)
	require.Equal(t, 204, get(h, "198.51.100.1:1000", nil).Code, "another client has its own bucket")
}

func TestHeadersExact(t *testing.T) {
	l, _, _ := newLimiter(t, Config{Name: "api", Limit: Limit{Requests: 100, Per: time.Minute, Burst: 2}, Key: KeyByIP(), LegacyHeaders: true})
	h := l.Handler(ok204)
	rec := get(h, "203.0.113.7:1", nil)
	require.Equal(t, `"api";q=100;w=60`, rec.Header().Get("RateLimit-Policy"))
	require.Equal(t, `"api";r=1;t=1`, rec.Header().Get("RateLimit"), "1 left, the next in 0.6s rounds up to 1")
	require.Equal(t, "100", rec.Header().Get("X-RateLimit-Limit"))
	require.Equal(t, "1", rec.Header().Get("X-RateLimit-Remaining"))
	get(h, "203.0.113.7:1", nil)

	rec = get(h, "203.0.113.7:1", nil)
	require.Equal(t, 429, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Equal(t, `"api";q=100;w=60`, rec.Header().Get("RateLimit-Policy"))
	require.Equal(t, `"api";r=0;t=1`, rec.Header().Get("RateLimit"), "t never earlier than Retry-After")
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Equal(t, "https://iana.org/assignments/http-problem-types#quota-exceeded", body["type"])
	require.Equal(t, []any{"api"}, body["violated-policies"])
	require.Equal(t, float64(429), body["status"])
}

func TestRetryAfterRoundsUp(t *testing.T) {
	l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: 90 * time.Second}, Key: KeyByIP()})
	h := l.Handler(ok204)
	get(h, "203.0.113.7:1", nil)
	rec := get(h, "203.0.113.7:1", nil)
	require.Equal(t, "90", rec.Header().Get("Retry-After"))
	require.Equal(t, `"api";r=0;t=90`, rec.Header().Get("RateLimit"))
	require.Equal(t, `"api";q=1;w=90`, rec.Header().Get("RateLimit-Policy"))
}

func TestQuietAllow(t *testing.T) {
	l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Minute}, Key: KeyByIP(), QuietAllow: true})
	rec := get(l.Handler(ok204), "203.0.113.7:1", nil)
	require.Empty(t, rec.Header().Get("RateLimit"))
}

func TestTwoHandlersShareOneBudget(t *testing.T) {
	l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 2, Per: time.Minute}, Key: KeyByIP()})
	a, b := l.Handler(ok204), l.Handler(ok204)
	require.Equal(t, 204, get(a, "203.0.113.7:1", nil).Code)
	require.Equal(t, 204, get(b, "203.0.113.7:1", nil).Code)
	require.Equal(t, 429, get(a, "203.0.113.7:1", nil).Code, "one budget across both wraps")
	require.Equal(t, 429, get(b, "203.0.113.7:1", nil).Code)
}

func TestKeyByIPAttacks(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name    string
		key     KeyFunc
		remote  []string
		xff     []string
		wantHit bool // the requests share one bucket
	}{
		{name: "xff_spoofed_without_trusted_proxies", key: KeyByIP(), remote: []string{"203.0.113.7:1", "203.0.113.7:2"}, xff: []string{"1.1.1.1", "2.2.2.2"}, wantHit: true},
		{name: "xff_spoofed_leftmost_with_trusted_proxies", key: KeyByIP(proxies...), remote: []string{"10.0.0.5:1", "10.0.0.6:1"}, xff: []string{"1.1.1.1, 203.0.113.7", "2.2.2.2, 203.0.113.7"}, wantHit: true},
		{name: "xff_honoured_from_trusted_proxy", key: KeyByIP(proxies...), remote: []string{"10.0.0.5:1", "10.0.0.5:1"}, xff: []string{"203.0.113.7", "203.0.113.8"}, wantHit: false},
		{name: "ipv6_rotation_inside_one_64", key: KeyByIP(), remote: []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff:1:2:3]:1"}, wantHit: true},
		{name: "ipv6_other_64", key: KeyByIP(), remote: []string{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1"}, wantHit: false},
		{name: "ipv4_mapped_same_as_ipv4", key: KeyByIP(), remote: []string{"[::ffff:203.0.113.7]:1", "203.0.113.7:2"}, wantHit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: tt.key})
			h := l.Handler(ok204)
			var hdr map[string]string
			if len(tt.xff) > 0 {
				hdr = map[string]string{"X-Forwarded-For": tt.xff[0]}
			}
			require.Equal(t, 204, get(h, tt.remote[0], hdr).Code)
			if len(tt.xff) > 1 {
				hdr = map[string]string{"X-Forwarded-For": tt.xff[1]}
			}
			want := 204
			if tt.wantHit {
				want = 429
			}
			require.Equal(t, want, get(h, tt.remote[1], hdr).Code)
		})
	}
}

// TestKeyFlood: a flood of distinct keys, fifty times MaxKeys, leaves
// MaxKeys buckets and bounded heap, and evicts no bucket still refilling.
func TestKeyFlood(t *testing.T) { keyFlood(t, 1_000, 50_000, 2<<20) }

// TestKeyFloodSoak is TestKeyFlood at scale: a million keys over 10,000
// buckets (about a minute under -race on two cores).
func TestKeyFloodSoak(t *testing.T) {
	if os.Getenv("APIGUARD_SOAK") == "" {
		t.Skip("soak test: set APIGUARD_SOAK=1")
	}
	keyFlood(t, 10_000, 1_000_000, 16<<20)
}

func keyFlood(t *testing.T, maxKeys, flood int, heapBound int64) {
	t.Helper()
	l, clk, _ := newLimiter(t, Config{Limit: Limit{Requests: 10, Per: time.Second}, Key: KeyByIP(), MaxKeys: maxKeys})
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rejected := 0
	for i := range flood {
		d, err := l.Allow(ctx, "flood-"+strconv.Itoa(i))
		if err != nil {
			require.NoError(t, err)
		}
		if !d.Allowed {
			rejected++
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap after %d keys: %+d bytes, %d buckets, %d rejected", flood, int64(after.HeapAlloc)-int64(before.HeapAlloc), l.mem.len(), rejected)
	require.Equal(t, maxKeys, l.mem.len(), "the key count stays at MaxKeys")
	require.Equal(t, flood-maxKeys, rejected, "new keys overflow while every bucket is refilling")
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), heapBound, "heap bounded")

	// Buckets that are still refilling are never evicted: the first keys
	// keep their (drained) state instead of getting a fresh bucket.
	d, _ := l.Allow(ctx, "flood-0")
	require.True(t, d.Allowed, "flood-0 has 9 tokens left")
	require.Equal(t, 8, d.Remaining)

	// Once buckets have refilled they can be evicted for new keys.
	clk.Advance(2 * time.Second)
	d, _ = l.Allow(ctx, "newcomer")
	require.True(t, d.Allowed)
	require.Equal(t, maxKeys, l.mem.len())
}

func TestOverflowShare(t *testing.T) {
	// One bucket of room: almost every key overflows into the shared
	// bucket, which has the configured limit.
	l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 2, Per: time.Hour}, Key: KeyByIP(), MaxKeys: 1, Overflow: OverflowShare})
	allowed := 0
	for i := range 20 {
		d, _ := l.Allow(context.Background(), fmt.Sprintf("k-%d", i))
		if d.Allowed {
			allowed++
		}
	}
	require.LessOrEqual(t, allowed, 2+2, "the shared bucket's two, plus at most the one key that got the room (twice over)")
	require.GreaterOrEqual(t, allowed, 2)
	require.LessOrEqual(t, l.mem.len(), 1)

	rej, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 2, Per: time.Hour}, Key: KeyByIP(), MaxKeys: 1})
	allowed = 0
	for i := range 20 {
		d, _ := rej.Allow(context.Background(), fmt.Sprintf("k-%d", i))
		if d.Allowed {
			allowed++
		}
	}
	require.LessOrEqual(t, allowed, 1, "OverflowReject: only a key that got the room passes")
}

func TestDynamicLimit(t *testing.T) {
	tier := map[string]Limit{"gold": {Requests: 5, Per: time.Minute}}
	var mu sync.Mutex
	l, _, _ := newLimiter(t, Config{
		Limit: Limit{Requests: 2, Per: time.Minute},
		Key:   KeyByHeader("X-Device-ID"),
		LimitFor: func(r *http.Request, key string) Limit {
			mu.Lock()
			defer mu.Unlock()
			if lim, ok := tier[key]; ok {
				return lim
			}
			return Limit{Requests: 2, Per: time.Minute}
		},
	})
	h := l.Handler(ok204)
	dev := func(id string) map[string]string { return map[string]string{"X-Device-ID": id} }
	for range 5 {
		require.Equal(t, 204, get(h, "1.2.3.4:1", dev("gold")).Code)
	}
	require.Equal(t, 429, get(h, "1.2.3.4:1", dev("gold")).Code)
	require.Equal(t, 204, get(h, "1.2.3.4:1", dev("basic")).Code)
	require.Equal(t, 204, get(h, "1.2.3.4:1", dev("basic")).Code)
	require.Equal(t, 429, get(h, "1.2.3.4:1", dev("basic")).Code)

	// The device turns risky: an existing bucket adopts the tighter limit.
	mu.Lock()
	tier["risky"] = Limit{Requests: 10, Per: time.Minute}
	mu.Unlock()
	for range 3 {
		require.Equal(t, 204, get(h, "1.2.3.4:1", dev("risky")).Code)
	}
	mu.Lock()
	tier["risky"] = Limit{Requests: 1, Per: time.Hour, Burst: 1}
	mu.Unlock()
	rec := get(h, "1.2.3.4:1", dev("risky"))
	require.Equal(t, 204, rec.Code, "the bucket keeps what it had, capped at the new burst of 1")
	require.Equal(t, `"api";q=1;w=3600`, rec.Header().Get("RateLimit-Policy"))
	require.Equal(t, 429, get(h, "1.2.3.4:1", dev("risky")).Code, "then the tightened limit applies")
}

func TestRulesAllOrNothing(t *testing.T) {
	l, _, _ := newLimiter(t, Config{
		Name:  "per-token",
		Limit: Limit{Requests: 10, Per: time.Hour},
		Key:   KeyByHeader("X-Token"),
		Rules: []Rule{{Name: "per-device", Limit: Limit{Requests: 2, Per: time.Hour}, Key: KeyByHeader("X-Device-ID")}},
	})
	h := l.Handler(ok204)
	hdr := func(dev string) map[string]string { return map[string]string{"X-Token": "t1", "X-Device-ID": dev} }
	require.Equal(t, 204, get(h, "1.2.3.4:1", hdr("d1")).Code)
	require.Equal(t, 204, get(h, "1.2.3.4:1", hdr("d1")).Code)
	for range 5 {
		rec := get(h, "1.2.3.4:1", hdr("d1"))
		require.Equal(t, 429, rec.Code)
		require.Contains(t, rec.Body.String(), `"violated-policies":["per-device"]`)
	}
	// The five rejected requests charged nothing to the token's budget:
	// 10 - 2 = 8 remain for other devices.
	for i := range 8 {
		require.Equal(t, 204, get(h, "1.2.3.4:1", hdr(fmt.Sprintf("other-%d", i))).Code, "request %d", i)
	}
	rec := get(h, "1.2.3.4:1", hdr("another"))
	require.Equal(t, 429, rec.Code)
	require.Contains(t, rec.Body.String(), `"violated-policies":["per-token"]`)
}

func TestShadowMode(t *testing.T) {
	l, _, logs := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByIP(), Shadow: true})
	h := l.Handler(ok204)
	for range 5 {
		require.Equal(t, 204, get(h, "203.0.113.7:1", nil).Code, "shadow never rejects")
	}
	require.Contains(t, logs.String(), `"event":"rate_limited"`)
	require.Contains(t, logs.String(), `"shadow":true`)
}

// TestShadowModeMissingKeyIsWouldDeny: in shadow mode a request without
// a key, which enforce mode refuses with 400, reaches the handler and its
// event carries shadow=true (the would-deny count); with
// InsecureAllowNoKey enforce mode lets it through too, so it is no
// would-deny.
func TestShadowModeMissingKeyIsWouldDeny(t *testing.T) {
	l, _, logs := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByHeader("X-Device-ID"), Shadow: true})
	require.Equal(t, 204, get(l.Handler(ok204), "203.0.113.7:1", nil).Code, "shadow never rejects")
	require.Contains(t, logs.String(), `"event":"ratelimit_no_key"`)
	require.Contains(t, logs.String(), `"shadow":true`)

	open, _, openLogs := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByHeader("X-Device-ID"), Shadow: true, InsecureAllowNoKey: true})
	require.Equal(t, 204, get(open.Handler(ok204), "203.0.113.7:1", nil).Code)
	require.Contains(t, openLogs.String(), `"shadow":false`)
}

// TestShadowModeStoreOutageUnderFailClosedPasses: a store outage that
// enforce mode answers 503 under FailClosed reaches the handler in shadow
// mode, its event marked shadow=true (the would-deny count), like an
// outage in auth, signing and attest.
func TestShadowModeStoreOutageUnderFailClosedPasses(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	for _, shadow := range []bool{false, true} {
		l, _, logs := newLimiter(t, Config{Limit: Limit{Requests: 2, Per: time.Hour}, Key: KeyByIP(),
			Store: failingStore{}, KeySecret: secret, StorePolicy: FailClosed, Shadow: shadow})
		reached := 0
		h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached++; w.WriteHeader(204) }))
		for range 3 {
			code := get(h, "203.0.113.7:1", nil).Code
			if shadow {
				require.Equal(t, 204, code, "shadow never refuses, outages included")
			} else {
				require.Equal(t, 503, code)
			}
		}
		require.Equal(t, map[bool]int{false: 0, true: 3}[shadow], reached)
		require.Equal(t, 3, strings.Count(logs.String(), `"event":"ratelimit_store_error"`))
		require.Equal(t, map[bool]int{false: 0, true: 3}[shadow], strings.Count(logs.String(), `"shadow":true`))
	}
}

func TestNoKey(t *testing.T) {
	l, _, logs := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByHeader("X-Device-ID")})
	rec := get(l.Handler(ok204), "203.0.113.7:1", nil)
	require.Equal(t, 400, rec.Code, "fail closed without a key")
	require.Contains(t, rec.Body.String(), "rate-limit-key-missing")
	require.Contains(t, logs.String(), `"event":"ratelimit_no_key"`)

	open, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByHeader("X-Device-ID"), InsecureAllowNoKey: true})
	require.Equal(t, 204, get(open.Handler(ok204), "203.0.113.7:1", nil).Code)

	bad, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByIP()})
	require.Equal(t, 400, get(bad.Handler(ok204), "not-an-address", nil).Code)
}

func TestRejectionLogsNoRawKey(t *testing.T) {
	token := "eyJhbGciOiJFUzI1NiJ9.secret-token-payload.sig"
	l, _, logs := newLimiter(t, Config{Limit: Limit{Requests: 1, Per: time.Hour}, Key: KeyByHeader("Authorization")})
	h := l.Handler(ok204)
	get(h, "1.2.3.4:1", map[string]string{"Authorization": token})
	rec := get(h, "1.2.3.4:1", map[string]string{"Authorization": token})
	require.Equal(t, 429, rec.Code)
	require.Contains(t, logs.String(), `"event":"rate_limited"`)
	require.NotContains(t, logs.String(), "secret-token-payload")
	require.NotContains(t, rec.Body.String(), "secret-token-payload")
}

// failingStore fails every call.
type failingStore struct{}

func (failingStore) Take(context.Context, string, time.Duration, int, time.Time) (bool, int, time.Duration, error) {
	return false, 0, 0, errors.New("connection refused")
}

func (failingStore) Refund(context.Context, string, time.Duration, int, time.Time) error {
	return errors.New("connection refused")
}

func TestStorePolicies(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	tests := []struct {
		name   string
		policy StorePolicy
		want   []int
	}{
		{name: "fallback_local_default", policy: FallbackLocal, want: []int{204, 204, 429}},
		{name: "fail_open", policy: FailOpen, want: []int{204, 204, 204}},
		{name: "fail_closed", policy: FailClosed, want: []int{503, 503, 503}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, logs := newLimiter(t, Config{Limit: Limit{Requests: 2, Per: time.Hour}, Key: KeyByIP(),
				Store: failingStore{}, KeySecret: secret, StorePolicy: tt.policy})
			h := l.Handler(ok204)
			for i, want := range tt.want {
				rec := get(h, "203.0.113.7:1", nil)
				require.Equal(t, want, rec.Code, "request %d", i)
				if want == 503 {
					require.Equal(t, "1", rec.Header().Get("Retry-After"))
				}
			}
			require.Contains(t, logs.String(), `"event":"ratelimit_store_error"`)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no_key", cfg: Config{Limit: Limit{Requests: 1, Per: time.Second}}, want: "Config.Key is required"},
		{name: "no_limit", cfg: Config{Key: KeyByIP()}, want: "Config.Limit is required"},
		{name: "negative_burst", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second, Burst: -1}}, want: "ratelimit: Config.Limit.Burst must not be negative, got -1 (0 means Requests)"},
		{name: "negative_per", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: -time.Second}}, want: "ratelimit: Config.Limit.Per must not be negative, got -1s"},
		{name: "zero_per", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1}}, want: "Config.Limit.Per is required"},
		{name: "zero_requests", cfg: Config{Key: KeyByIP(), Limit: Limit{Per: time.Second}}, want: "Config.Limit.Requests must be positive, got 0"},
		{name: "negative_store_timeout", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}, StoreTimeout: -time.Millisecond}, want: "ratelimit: Config.StoreTimeout must not be negative, got -1ms"},
		{name: "negative_max_keys", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}, MaxKeys: -1}, want: "ratelimit: Config.MaxKeys must not be negative, got -1"},
		{name: "rule_negative_burst", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}, Rules: []Rule{{Name: "x", Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second, Burst: -2}}}}, want: "ratelimit: Config.Rules[0].Limit.Burst must not be negative, got -2"},
		{name: "rule_negative_per", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}, Rules: []Rule{{Name: "x", Key: KeyByIP(), Limit: Limit{Requests: 1, Per: -time.Minute}}}}, want: "ratelimit: Config.Rules[0].Limit.Per must not be negative, got -1m0s"},
		{name: "store_without_secret", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}, Store: failingStore{}}, want: "KeySecret"},
		{name: "rule_without_key", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}, Rules: []Rule{{Name: "x", Limit: Limit{Requests: 1, Per: time.Second}}}}, want: "Rules[0]"},
		{name: "duplicate_names", cfg: Config{Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}, Rules: []Rule{{Name: "api", Key: KeyByIP(), Limit: Limit{Requests: 1, Per: time.Second}}}}, want: "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
	require.Panics(t, func() { KeyByIP(netip.Prefix{}) })
}

func TestConcurrentExactBudget(t *testing.T) {
	l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: 100, Per: time.Hour}, Key: KeyByIP()})
	h := l.Handler(ok204)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				c := get(h, "203.0.113.7:1", nil).Code
				mu.Lock()
				codes[c]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, map[int]int{204: 100, 429: 300}, codes)
}

// TestDynamicLimitConcurrent changes one key's limit while many goroutines
// use its bucket: under -race this proves the bucket adopts a new limit
// without a data race, and the bucket never lets more through than the
// larger of the two limits allows.
func TestDynamicLimitConcurrent(t *testing.T) {
	var flip sync.Mutex
	n := 0
	l, err := New(Config{
		Limit:  Limit{Requests: 100, Per: time.Hour},
		Key:    KeyByHeader("X-Device-ID"),
		Logger: slog.New(slog.DiscardHandler),
		Now:    func() time.Time { return time.Unix(1_700_000_000, 0) }, // frozen: no refill
		LimitFor: func(r *http.Request, key string) Limit {
			flip.Lock()
			defer flip.Unlock()
			n++
			if n%2 == 0 {
				return Limit{Requests: 50, Per: time.Hour}
			}
			return Limit{Requests: 100, Per: time.Hour}
		},
	})
	require.NoError(t, err)
	var allowed sync.WaitGroup
	var mu sync.Mutex
	count := 0
	for range 8 {
		allowed.Go(func() {
			for range 100 {
				d, err := l.Allow(context.Background(), "device-1")
				require.NoError(t, err)
				if d.Allowed {
					mu.Lock()
					count++
					mu.Unlock()
				}
			}
		})
	}
	allowed.Wait()
	require.Positive(t, count)
	require.LessOrEqual(t, count, 100, "never more than the larger burst with the clock frozen")
}

// TestConcurrentRemainingExact proves that the Remaining each allowed
// decision reports is exact under concurrency: with the clock frozen, the
// allowed decisions of many goroutines report every count from burst-1
// down to 0 once each, and rejected ones report 0.
func TestConcurrentRemainingExact(t *testing.T) {
	const burst = 64
	l, _, _ := newLimiter(t, Config{Limit: Limit{Requests: burst, Per: time.Hour}, Key: KeyByIP()})
	var mu sync.Mutex
	seen := map[int]int{}
	rejected := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				d, err := l.Allow(context.Background(), "203.0.113.7")
				require.NoError(t, err)
				mu.Lock()
				if d.Allowed {
					seen[d.Remaining]++
				} else {
					rejected++
					require.Zero(t, d.Remaining)
					require.Positive(t, d.RetryAfter)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, burst)
	for r := range burst {
		require.Equal(t, 1, seen[r], "remaining %d reported once", r)
	}
	require.Equal(t, 8*20-burst, rejected)
}

func TestMonotonicClock(t *testing.T) {
	now := MonotonicClock()
	before := time.Now()
	a := now()
	b := now()
	after := time.Now()
	require.False(t, b.Before(a), "readings never go back")
	require.False(t, a.Before(before.Add(-time.Millisecond)))
	require.False(t, b.After(after.Add(time.Millisecond)))
	// The readings carry a monotonic component ("m=" in String), which is
	// what buckets measure elapsed time with.
	require.Contains(t, a.String(), "m=")
	require.Contains(t, b.String(), "m=")
}

// TestDefaultClockRefills uses the default clock (MonotonicClock for the
// in-memory store): a drained bucket refills in real time.
func TestDefaultClockRefills(t *testing.T) {
	l, err := New(Config{Limit: Limit{Requests: 1, Per: 20 * time.Millisecond}, Key: KeyByIP(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx := context.Background()
	d, _ := l.Allow(ctx, "k")
	require.True(t, d.Allowed)
	d, _ = l.Allow(ctx, "k")
	require.False(t, d.Allowed)
	require.Eventually(t, func() bool { d, _ := l.Allow(ctx, "k"); return d.Allowed }, 2*time.Second, 5*time.Millisecond)
}

// TestKeyByIPKeys pins the keys KeyByIP derives: the address, and for
// IPv6 its /64, so every address of a /64 shares one key.
func TestKeyByIPKeys(t *testing.T) {
	key := KeyByIP()
	for remote, want := range map[string]string{
		"203.0.113.7:1234":                    "ip4:203.0.113.7",
		"[::ffff:203.0.113.7]:1234":           "ip4:203.0.113.7",
		"[2001:db8:1:2:aaaa:bbbb:cccc:1]:443": "ip6:2001:db8:1:2::",
		"[2001:db8:1:2::ffff]:443":            "ip6:2001:db8:1:2::",
		"[fe80::1%eth0]:443":                  "ip6:fe80::",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		got, err := key(r)
		require.NoError(t, err, remote)
		require.Equal(t, want, got, remote)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "not an address"
	_, err := key(r)
	require.ErrorIs(t, err, ErrNoKey)
}
