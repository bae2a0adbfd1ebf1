package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/telemetry"
)

// issuer is the authorization server of the test: its JWKS on loopback
// and its signing key.
type issuer struct {
	url  string
	priv ed25519.PrivateKey
	jwks *httptest.Server
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	k, err := jwk.FromRaw(pub)
	require.NoError(t, err)
	require.NoError(t, k.Set(jwk.KeyIDKey, "k1"))
	set := jwk.NewSet()
	require.NoError(t, set.AddKey(k))
	body, err := json.Marshal(set)
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return &issuer{url: "https://login.example.com/", priv: priv, jwks: srv}
}

// token signs an access token with key (the issuer's when nil) that
// expires after ttl.
func (is *issuer) token(t *testing.T, key ed25519.PrivateKey, ttl time.Duration) string {
	t.Helper()
	if key == nil {
		key = is.priv
	}
	now := time.Now()
	payload, err := json.Marshal(map[string]any{
		"iss": is.url, "aud": audience, "sub": "user-1", "scope": "orders:read",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(ttl).Unix(),
	})
	require.NoError(t, err)
	hdr := jws.NewHeaders()
	require.NoError(t, hdr.Set("typ", "at+jwt"))
	require.NoError(t, hdr.Set("kid", "k1"))
	b, err := jws.Sign(payload, jws.WithKey(jwa.EdDSA, key, jws.WithProtectedHeaders(hdr)))
	require.NoError(t, err)
	return string(b)
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// attack sends the quick start's API a valid request and three attacks,
// and returns its /metrics page.
func attack(t *testing.T, is *issuer, base string) string {
	t.Helper()
	code, body := get(t, base+"/orders", is.token(t, nil, 5*time.Minute))
	require.Equal(t, 200, code, body)
	require.Equal(t, "orders of user-1\n", body, "the handler was reached")

	_, forger, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for _, tok := range []string{
		"not.a.jwt",                        // garbage
		is.token(t, forger, 5*time.Minute), // signed with the attacker's key
		is.token(t, nil, -30*time.Second),  // expired
	} {
		code, _ := get(t, base+"/orders", tok)
		require.Equal(t, http.StatusUnauthorized, code)
	}
	_, metrics := get(t, base+"/metrics", "")
	return metrics
}

var (
	eventLine   = regexp.MustCompile(`(?m)^apiguard_security_events_total\{([^}]*)\} (\d+)`)
	reasonLabel = regexp.MustCompile(`reason="([^"]*)"`)
)

// authFailures returns the auth_failed counts of a /metrics page by reason.
func authFailures(metrics string) map[string]int {
	out := map[string]int{}
	for _, m := range eventLine.FindAllStringSubmatch(metrics, -1) {
		if !strings.Contains(m[1], `event="auth_failed"`) {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		out[reasonLabel.FindStringSubmatch(m[1])[1]] = n
	}
	return out
}

// TestQuickStartCountsAttacksOnMetrics runs the README's quick start,
// attacks it, and finds the security-event counters on its /metrics,
// whether or not the application touches slog.SetDefault.
func TestQuickStartCountsAttacksOnMetrics(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T)
	}{
		{name: "slog_default_untouched", setup: func(*testing.T) {}},
		{name: "app_sets_its_own_slog_default", setup: func(t *testing.T) {
			old := slog.Default()
			t.Cleanup(func() { slog.SetDefault(old) })
			slog.SetDefault(slog.New(slog.NewJSONHandler(io.Discard, nil)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup(t)
			is := newIssuer(t)
			h, stop, err := newAPI(is.url, is.jwks.URL)
			require.NoError(t, err)
			t.Cleanup(func() { _ = stop() })
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)

			metrics := attack(t, is, srv.URL)
			failures := authFailures(metrics)
			require.Equal(t, map[string]int{"malformed": 1, "signature": 1, "expired": 1}, failures,
				"each attack counted once, by reason, on /metrics:\n%s", metrics)
			require.Contains(t, metrics, "http_server_request_duration_seconds_count{")
			logMetricNames(t, metrics)

			resp, err := srv.Client().Get(srv.URL + "/readyz")
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, "the key set is loaded: %s", body)
			require.Contains(t, string(body), `"name":"jwks"`)
		})
	}
}

// TestPackageLoggerLeftNil: an application that forgets to pass
// obs.Logger() to a package still gets the package's in-request events
// counted on its observer, once.
func TestPackageLoggerLeftNil(t *testing.T) {
	is := newIssuer(t)
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	require.NoError(t, err)
	obs, err := telemetry.New(telemetry.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))})
	require.NoError(t, err)
	var logs bytes.Buffer
	tokens, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{Issuer: is.url, Audience: []string{audience}, JWKSURL: is.jwks.URL}},
		Logger:  slog.New(slog.NewJSONHandler(&logs, nil)), // not the observer's
	})
	require.NoError(t, err)
	defer tokens.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /orders", tokens.Require("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := auth.ClaimsFrom(r.Context())
		_, _ = io.WriteString(w, "orders of "+claims.Subject+"\n")
	})))
	srv := httptest.NewServer(obs.Handler(mux))
	defer srv.Close()

	failures := authFailures(attack(t, is, srv.URL))
	require.Equal(t, map[string]int{"malformed": 1, "signature": 1, "expired": 1}, failures, "each attack counted once")
	require.Equal(t, 3, strings.Count(logs.String(), `"event":"auth_failed"`), "and logged by the package's own logger")
}

// logMetricNames logs the apiguard and HTTP metric names of a /metrics
// page, as Prometheus sees them.
func logMetricNames(t *testing.T, metrics string) {
	t.Helper()
	var names []string
	for _, line := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) == 2 && (strings.HasPrefix(f[0], "apiguard") || strings.HasPrefix(f[0], "http_")) {
				names = append(names, f[0]+" ("+f[1]+")")
			}
		}
	}
	slices.Sort(names)
	t.Log("metric names:", names)
}

// keySource stands for auth.Verifier: ready, with a key set loaded 90 s
// ago whose last refresh failed.
type keySource struct{}

func (keySource) Ready(context.Context) error { return nil }
func (keySource) KeySetAge() (time.Duration, bool, error) {
	return 90 * time.Second, true, errors.New("auth: jwks: connection refused")
}

// store stands for a redisstore store that is down.
type store struct{}

func (store) Ready(context.Context) error { return errors.New("redisstore: ping: connection refused") }

// TestDependencyGaugesOnPrometheus pins the names under which the
// Prometheus exporter publishes the dependency gauges, which the
// operations pack's dashboard and alerts query.
func TestDependencyGaugesOnPrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	require.NoError(t, err)
	obs, err := telemetry.New(telemetry.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /readyz", obs.Health(telemetry.Check{Name: "jwks", Ready: keySource{}}, telemetry.Check{Name: "redis", Ready: store{}}))
	srv := httptest.NewServer(obs.Handler(mux))
	defer srv.Close()

	code, body := get(t, srv.URL+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, `"name":"redis","status":"not_ready"`)
	_, metrics := get(t, srv.URL+"/metrics", "")
	for _, want := range []string{
		`apiguard_dependency_ready{dependency="jwks",otel_scope_name="github.com/apiguard/apiguard/telemetry"`,
		`apiguard_dependency_ready{dependency="redis",otel_scope_name="github.com/apiguard/apiguard/telemetry"`,
		`apiguard_dependency_latency_seconds{dependency="redis"`,
		`apiguard_keyset_age_seconds{dependency="jwks"`,
		`apiguard_keyset_refresh_failing{dependency="jwks"`,
	} {
		require.Contains(t, metrics, want)
	}
	require.NotContains(t, metrics, `apiguard_keyset_age_seconds{dependency="redis"`, "no key set, no age")
	logMetricNames(t, metrics)
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "apiguard_") {
			t.Log(line)
		}
	}
}
