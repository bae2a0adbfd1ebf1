package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest"
	"github.com/apiguard/apiguard/attest/androidkey"
	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/signing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// stores are the demo's stores: in memory by default, Redis with -redis.
type stores struct {
	authReplay       auth.ReplayStore
	signingReplay    signing.ReplayStore
	limits           ratelimit.Store
	failures         ratelimit.FailureStore
	keySecret        []byte
	attestKeys       appattest.KeyStore
	attestChallenges appattest.ChallengeStore
	attestHistory    attest.HistoryStore
	deviceKeys       deviceKeyStore        // enrolled device public keys
	androidNonces    androidkey.NonceStore // used Android enrolment challenges; nil: in memory
	deviceReplay     signing.ReplayStore   // the device-key verifier's; nil: in memory
	closers          []func()
}

// newStores connects to Redis at redisAddr; keySecret hashes the
// rate-limit keys stored there (the same on every instance that shares
// the limits).
func newStores(redisAddr string, keySecret []byte) (*stores, error) {
	if redisAddr == "" {
		return &stores{deviceKeys: newMemoryDeviceKeys()}, nil // every package's bounded in-memory default
	}
	// The client settings redisstore's documentation asks for: deadlines
	// from the context, no retry of commands that are not idempotent, one
	// dial per call.
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{redisAddr},
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           200 * time.Millisecond,
		PoolTimeout:           200 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", redisAddr, err)
	}
	// One breaker for every store on this Redis: found down once, it fails
	// fast for all of them.
	opts := redisstore.Options{Prefix: "apiguard-demo:", Timeout: 200 * time.Millisecond, Breaker: redisstore.NewBreaker(redisstore.BreakerConfig{})}
	replay := redisstore.NewReplayStore(rdb, opts)
	as := redisstore.NewAttestStore(rdb, opts)
	return &stores{
		authReplay: replay, signingReplay: replay,
		limits: redisstore.NewLimitStore(rdb, opts), failures: redisstore.NewFailureStore(rdb, opts), keySecret: keySecret,
		attestKeys: as, attestChallenges: as, attestHistory: as,
		deviceKeys: redisstore.NewDeviceKeyStore(rdb, opts), androidNonces: replay.WithNamespace("android-enrol"), deviceReplay: replay.WithNamespace("device-keys"),
		closers: []func(){func() { _ = rdb.Close() }},
	}, nil
}

// metricsSetup is an OpenTelemetry meter provider exporting to a
// Prometheus handler.
type metricsSetup struct {
	provider metric.MeterProvider
	handler  http.Handler
}

func newMetrics() (*metricsSetup, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	return &metricsSetup{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// enrollHandler takes an App Attest attestation for a challenge the app
// got from /v1/attest/challenge.
func enrollHandler(a *appattest.Verifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			KeyID       string `json:"key_id"`
			Attestation string `json:"attestation"`
			Challenge   string `json:"challenge"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		obj, err := base64.StdEncoding.DecodeString(in.Attestation)
		if err != nil || a.ConsumeChallenge(r.Context(), in.Challenge, "") != nil {
			http.Error(w, "bad attestation", http.StatusUnauthorized)
			return
		}
		if _, err := a.VerifyAttestation(r.Context(), in.KeyID, obj, appattest.ClientDataHash([]byte(in.Challenge))); err != nil {
			http.Error(w, "bad attestation", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
}

// printEvents reads the API's /metrics and prints the security events it
// counted during the run.
func printEvents(ctx context.Context, out io.Writer, base string, hc *http.Client) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	counts, handshakes := map[string]string{}, map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		labels, value, _ := strings.Cut(line, "} ")
		switch {
		case strings.HasPrefix(line, "apiguard_security_events_total{"):
			counts[label(labels, "event")+" ("+label(labels, "reason")+")"] = value
		case strings.HasPrefix(line, "apiguard_tls_handshake_failures_total{"):
			handshakes[label(labels, "reason")+" (TLS "+label(labels, "tls_protocol_version")+")"] = value
		}
	}
	printCounts(out, "security events counted (apiguard.security.events, from /metrics):", counts)
	printCounts(out, "TLS handshakes refused (apiguard.tls.handshake.failures, from /metrics):", handshakes)
}

func printCounts(out io.Writer, title string, counts map[string]string) {
	if len(counts) == 0 {
		return
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(out, "\n"+title)
	for _, k := range keys {
		fmt.Fprintf(out, "  %-48s %s\n", k, counts[k])
	}
}

func label(labels, name string) string {
	_, after, ok := strings.Cut(labels, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, `"`)
	return v
}
