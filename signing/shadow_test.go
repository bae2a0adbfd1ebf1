package signing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiguard/apiguard/internal/shadowtest"
	"github.com/apiguard/apiguard/internal/testkit"
)

// TestShadowDecidesAsEnforce replays one recorded table of requests,
// valid ones and the attacks of the verifier tests, through an
// enforce-mode and a shadow-mode Verifier (each with its own replay store,
// both clocks at the same instants) and compares every decision: shadow
// mode refuses nothing, logs each refusal enforce mode makes as the same
// event and reason with shadow=true, and no other. Replays are refused in
// shadow mode too, because the first use was recorded there as well.
func TestShadowDecidesAsEnforce(t *testing.T) {
	require.Equal(t, t0, shadowtest.Start)
	now := t0.Add(time.Minute) // past the start-up floor of an instance started at t0
	clk := testkit.NewClock(now)
	s := signer(clk, "device-a", secretA)
	body := `{"amount":100}`
	valid := func() *http.Request { return signed(t, s, "POST", api+"/v1/pay", body, nil) }
	rec := func(name string, r *http.Request, want error) shadowtest.Case {
		return shadowtest.Record(t, name, r, want)
	}

	paid := valid()
	bodyTampered := valid()
	bodyTampered.Body = io.NopCloser(strings.NewReader(`{"amount":999}`))
	digestSwapped := valid()
	digestSwapped.Header.Set("Content-Digest", ContentDigest([]byte(`{"amount":999}`)))
	digestSwapped.Body = io.NopCloser(strings.NewReader(`{"amount":999}`))
	authSwapped := signed(t, s, "GET", api+"/v1/orders", "", map[string]string{"Authorization": "Bearer victim"})
	authSwapped.Header.Set("Authorization", "Bearer attacker")
	pathChanged := signed(t, s, "GET", api+"/v1/orders/7", "", nil)
	pathChanged.URL.Path = "/v1/orders/8"
	methodChanged := signed(t, s, "GET", api+"/v1/orders/7", "", nil)
	methodChanged.Method = "DELETE"
	queryChanged := signed(t, s, "GET", api+"/v1/orders?limit=1", "", nil)
	queryChanged.URL.RawQuery = "limit=1000"
	malformed := signed(t, s, "GET", api+"/v1/orders", "", nil)
	malformed.Header.Set("Signature", `sig1="not-bytes"`)
	capture := signed(t, s, "GET", api+"/v1/orders", "", nil)
	oversize := signed(t, s, "POST", api+"/v1/pay", strings.Repeat("x", 65), nil)
	oversize.ContentLength = -1

	cases := []shadowtest.Case{
		rec("valid_post", paid, nil),
		rec("signature_replayed", paid, ErrReplay),
		rec("valid_get", signed(t, s, "GET", api+"/v1/orders?page=2", "", nil), nil),
		rec("unsigned", httptest.NewRequest("GET", api+"/v1/orders", nil), ErrMissingSignature),
		rec("body_tampered", bodyTampered, ErrDigest),
		rec("digest_header_swapped", digestSwapped, ErrSignature),
		rec("authorization_swapped", authSwapped, ErrSignature),
		rec("signature_base_tampered_path", pathChanged, ErrSignature),
		rec("signature_base_tampered_method", methodChanged, ErrSignature),
		rec("signature_base_tampered_query", queryChanged, ErrSignature),
		rec("signature_of_another_key", signed(t, signer(clk, "device-a", secretB), "GET", api+"/v1/orders", "", nil), ErrSignature),
		rec("unknown_key", signed(t, signer(clk, "device-zzz", secretA), "GET", api+"/v1/orders", "", nil), ErrUnknownKey),
		rec("malformed_signature", malformed, ErrMalformed),
		rec("missing_nonce", signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a"`, now.Unix()), ErrProfile),
		rec("created_in_future", signed(t, signer(testkit.NewClock(now.Add(10*time.Minute)), "device-a", secretA), "GET", api+"/v1/orders", "", nil), ErrFuture),
		rec("created_before_process_start", signed(t, signer(testkit.NewClock(t0.Add(-time.Minute)), "device-b", secretB), "GET", api+"/v1/orders", "", nil), ErrReplayFloor),
		rec("oversize_body_unknown_length", oversize, ErrBodyTooLarge),
		rec("key_store_down", signed(t, signer(clk, "device-down", secretA), "GET", api+"/v1/orders", "", nil), ErrStoreUnavailable),
	}
	clk.Advance(30 * time.Second)
	newer := rec("newer_traffic", signed(t, s, "GET", api+"/v1/orders", "", nil), nil)
	newer.Advance = 30 * time.Second
	stale := rec("capture_replayed_after_newer_traffic", capture, ErrStale)
	late := rec("signature_expired_since", signed(t, s, "GET", api+"/v1/orders", "", nil), ErrExpired)
	late.Advance = 6 * time.Minute
	cases = append(cases, newer, stale, late)
	cases[0].Advance = time.Minute

	shadowtest.Run(t, cases, func(t *testing.T, w shadowtest.Wiring) shadowtest.Instance {
		keys := StaticKeys(map[string][]byte{"device-a": secretA, "device-b": secretB})
		v, err := New(Config{
			Keys: KeyStoreFunc(func(ctx context.Context, id string) (Key, error) {
				if id == "device-down" {
					return Key{}, errors.New("db down")
				}
				return keys.Key(ctx, id)
			}),
			MaxBodyBytes: 64,
			Shadow:       w.Shadow, Now: w.Now, Logger: w.Logger, ErrorHandler: w.ErrorHandler,
		})
		require.NoError(t, err)
		return v.Handler
	})
}

// TestShadowNextHandlerSeesWholeBody pins what the next handler gets in
// shadow mode: no Result for a refused request, and its whole body, also
// when the check read part of it (a body over MaxBodyBytes of unknown
// length) or all of it (a tampered body).
func TestShadowNextHandlerSeesWholeBody(t *testing.T) {
	v, clk, logs := newTestVerifier(t, func(c *Config) { c.Shadow = true; c.MaxBodyBytes = 16 })
	s := signer(clk, "device-a", secretA)
	tampered := signed(t, s, "POST", api+"/v1/pay", `{"amount":1}`, nil)
	tampered.Body = io.NopCloser(strings.NewReader(`{"amount":9}`))
	oversize := signed(t, s, "POST", api+"/v1/pay", strings.Repeat("x", 40), nil)
	oversize.ContentLength = -1
	tests := []struct {
		name   string
		give   *http.Request
		reason string
		body   string
	}{
		{name: "body_tampered", give: tampered, reason: "digest", body: `{"amount":9}`},
		{name: "oversize_body_unknown_length", give: oversize, reason: "body_too_large", body: strings.Repeat("x", 40)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			rec, reached, got := serve(v, tt.give)
			require.True(t, reached, "shadow mode never refuses")
			require.Equal(t, http.StatusOK, rec.Code)
			require.Empty(t, rec.Header().Get("Accept-Signature"))
			require.Equal(t, "|"+tt.body, got, "no key ID in the context; the whole body")
			require.Contains(t, logs.String(), `"reason":"`+tt.reason+`"`)
			require.Contains(t, logs.String(), `"shadow":true`)
		})
	}
}

// TestShadowConcurrentReplaysCountedExactly: 64 signed requests, each
// sent twice at once by many goroutines through a Verifier in shadow
// mode: all 128 reach the handler, exactly one of each pair with a
// verified Result, and exactly 64 replay events carry shadow=true, the
// count enforce mode would refuse.
func TestShadowConcurrentReplaysCountedExactly(t *testing.T) {
	var events eventCount
	v, clk, _ := newTestVerifier(t, func(c *Config) {
		c.Shadow = true
		c.Logger = slog.New(&events)
	})
	s := signer(clk, "device-a", secretA)
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ResultFrom(r.Context()); ok {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusAccepted) // passed in shadow mode
	}))
	type sent struct{ code int }
	out := make(chan sent, 128)
	var wg sync.WaitGroup
	for i := range 64 {
		r := signed(t, s, "POST", api+"/v1/pay", fmt.Sprintf(`{"n":%d}`, i), nil)
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		for range 2 {
			r2 := r.Clone(context.Background())
			r2.Body = io.NopCloser(bytes.NewReader(body))
			wg.Go(func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r2)
				out <- sent{rec.Code}
			})
		}
	}
	wg.Wait()
	close(out)
	codes := map[int]int{}
	for s := range out {
		codes[s.code]++
	}
	require.Equal(t, map[int]int{http.StatusOK: 64, http.StatusAccepted: 64}, codes)
	require.Equal(t, int64(64), events.shadow.Load(), "would-deny events")
	require.Equal(t, int64(64), events.all.Load(), "no other event")
}

// eventCount is a slog handler that counts security events, and those
// with shadow=true, from many goroutines.
type eventCount struct{ all, shadow atomic.Int64 }

func (h *eventCount) Enabled(context.Context, slog.Level) bool { return true }
func (h *eventCount) Handle(_ context.Context, rec slog.Record) error {
	var isEvent, isShadow bool
	rec.Attrs(func(a slog.Attr) bool {
		isEvent = isEvent || a.Key == "event"
		isShadow = isShadow || a.Key == "shadow" && a.Value.Kind() == slog.KindBool && a.Value.Bool()
		return true
	})
	if isEvent {
		h.all.Add(1)
	}
	if isShadow {
		h.shadow.Add(1)
	}
	return nil
}
func (h *eventCount) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *eventCount) WithGroup(string) slog.Handler      { return h }
