package attest

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appcheck"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// errorRecorder is a Config.ErrorHandler that records what it is handed.
type errorRecorder struct {
	err  error
	risk *Risk
}

func (e *errorRecorder) handle(w http.ResponseWriter, r *http.Request, err error) {
	e.err = err
	e.risk, _ = RiskFrom(r.Context())
	w.WriteHeader(http.StatusTeapot)
}

// TestRiskBodyOverLimit: a body larger than the limit, which would have
// to be held in memory to check what the assertion binds, is refused
// with 413 problem+json before any evidence is checked, even under
// MonitorOnly; a body at the limit is handed on intact.
func TestRiskBodyOverLimit(t *testing.T) {
	is := newAppCheckIssuer(t)
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	for _, tt := range []struct {
		name  string
		limit int64 // Config.MaxBodyBytes
		size  int   // the body sent
		want  int
	}{
		{"oversized_body_default_limit", 0, 1<<20 + 1, http.StatusRequestEntityTooLarge},
		{"oversized_body_configured_limit", 16, 17, http.StatusRequestEntityTooLarge},
		{"body_at_limit", 16, 16, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Config{AppCheck: c, MaxBodyBytes: tt.limit, MonitorOnly: true,
				Subject: func(*http.Request) (string, error) { return "", nil }, Now: func() time.Time { return clock }, Logger: nopLogger()})
			require.NoError(t, err)
			body := bytes.Repeat([]byte("a"), tt.size)
			var got []byte
			h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = make([]byte, len(body))
				n, _ := r.Body.Read(got)
				got = got[:n]
			}))
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			r.Header.Set(appcheck.Header, is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"iat": clock.Unix(), "exp": clock.Add(time.Hour).Unix()}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			require.Equal(t, tt.want, rec.Code)
			if tt.want == http.StatusOK {
				require.Equal(t, body, got, "the body is handed on intact")
				return
			}
			require.Nil(t, got, "next is not called")
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			require.Contains(t, rec.Body.String(), "body-too-large")
		})
	}
	t.Run("negative_limit_refused", func(t *testing.T) {
		_, err := New(Config{AppCheck: c, MaxBodyBytes: -1, Subject: func(*http.Request) (string, error) { return "", nil }})
		require.ErrorContains(t, err, "MaxBodyBytes")
	})
}

// TestRiskErrorHandlerGetsSentinel: a custom Config.ErrorHandler is
// handed every rejection as an error it can tell apart with errors.Is,
// and a risk rejection's request carries the Risk.
func TestRiskErrorHandlerGetsSentinel(t *testing.T) {
	is := newAppCheckIssuer(t)
	clock := synthNow
	c := newAppCheck(t, is, &clock)
	token := func() string {
		return is.mint(t, "k1", jwa.RS256, "JWT", map[string]any{"iat": clock.Unix(), "exp": clock.Add(time.Hour).Unix()})
	}
	for _, tt := range []struct {
		name   string
		cfg    Config
		body   string
		token  bool
		down   bool
		want   error
		reason string // a reason the Risk in the context holds
	}{
		{name: "oversized_body", cfg: Config{MaxBodyBytes: 4}, body: "12345", token: true, want: ErrBodyTooLarge},
		{name: "vendor_down_fail_closed", cfg: Config{Outage: OutageFailClosed}, token: true, down: true, want: ErrVendor},
		{name: "no_attestation_denied", cfg: Config{Thresholds: Thresholds{Monitor: 10, StepUp: 20, Deny: 30}}, want: ErrRiskDenied, reason: ReasonAttestationMissing},
		{name: "no_attestation_step_up", cfg: Config{Thresholds: Thresholds{Monitor: 10, StepUp: 40, Deny: 90}}, want: ErrRiskStepUp, reason: ReasonAttestationMissing},
	} {
		t.Run(tt.name, func(t *testing.T) {
			is.mu.Lock()
			is.down = tt.down
			is.mu.Unlock()
			rec := &errorRecorder{}
			cfg := tt.cfg
			cfg.AppCheck, cfg.ErrorHandler, cfg.Logger = c, rec.handle, nopLogger()
			cfg.Now = func() time.Time { return clock }
			cfg.Subject = func(*http.Request) (string, error) { return "", nil }
			if tt.down {
				cfg.AppCheck = newAppCheck(t, is, &clock) // a verifier that has not loaded the keys
			}
			v, err := New(cfg)
			require.NoError(t, err)
			called := false
			h := v.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			if tt.token {
				r.Header.Set(appcheck.Header, token())
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			require.False(t, called)
			require.Equal(t, http.StatusTeapot, w.Code)
			require.ErrorIs(t, rec.err, tt.want)
			if tt.reason != "" {
				require.NotNil(t, rec.risk)
				require.Contains(t, rec.risk.Reasons, tt.reason)
			}
			if errors.Is(tt.want, ErrVendor) {
				_, ok := errors.AsType[*UnavailableError](rec.err)
				require.True(t, ok, "the vendor's retry time reaches the handler")
			}
		})
	}
}
