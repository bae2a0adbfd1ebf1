package ops

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/signing"
	"github.com/stretchr/testify/require"
)

// attackAlerts are the alerts the demo's attacks must fire.
var attackAlerts = []string{
	"ApiguardReplaySpike",                     // replayed signed payment, replayed DPoP proof
	"ApiguardSignatureMismatchOneDeviceModel", // payment signed with another key, X-Device-Model iPhone16,1
	"ApiguardCredentialStuffingLockouts",      // 6 passwords against one account
	"ApiguardAttestationFailureRate",          // forged assertion, proxy-rewritten query
	"ApiguardClientPinningFailures",           // the client's pinning-failure report
}

// quiet are dashboard queries that the demo cannot make return series:
// its stores are in memory and never fail, a drift baseline takes five
// one-minute windows, and no control of the demo runs in shadow mode.
// Prometheus must accept them; alerts_test.yml covers the alerts and
// recording rules that read them.
var quiet = []string{`event="ratelimit_store_error"`, `reason=~"store|store_unavailable"`, `event="baseline_drift"`, `shadow="true"`}

// rounds is how many times the demo's attack script runs after the first
// round, whose events create the counter series. It must carry every
// attack alert past its threshold (the fewest events per round: one
// signature mismatch, one lockout, one pinning report; thresholds > 10).
const rounds = 20

// TestOperationsPackAgainstPrometheus is the end-to-end test of ops/: the
// demo under attack, scraped by a real Prometheus that loads the rules.
func TestOperationsPackAgainstPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("APIGUARD_REQUIRE_PROMETHEUS") == "1" {
			t.Fatal("ops: prometheus is not installed and APIGUARD_REQUIRE_PROMETHEUS=1 (apt-get install prometheus)")
		}
		fmt.Fprintln(os.Stderr, "ops: SKIP: prometheus is not installed (apt-get install prometheus); the end-to-end test of the operations pack did not run")
		t.Skip("prometheus is not installed")
	}
	start := time.Now()
	dir := t.TempDir()
	demo := startDemo(t, dir)
	prom := startPrometheus(t, promBin, dir, demo.addr)

	deadline := time.Now().Add(45 * time.Second)
	poll(t, deadline, "Prometheus scrapes the demo", func() (bool, string) {
		s, err := prom.query(`up{job="apiguard"} == 1`)
		return err == nil && len(s) == 1, fmt.Sprint(s, err)
	})
	// The first round creates the counter series; rate and increase see
	// only what happens after a series' first scrape.
	demo.attack(t)
	poll(t, deadline, "Prometheus has scraped the first round", func() (bool, string) {
		s, err := prom.query(`apiguard_security_events_total{job="apiguard",event="replay"}`)
		return err == nil && len(s) > 0, fmt.Sprint(s, err)
	})
	for range rounds {
		demo.attack(t)
	}
	metrics := demo.metrics(t)

	t.Run("attacks_fire_alerts", func(t *testing.T) {
		want := map[string]bool{}
		for _, a := range attackAlerts {
			want[a] = true
		}
		poll(t, deadline, "the attack alerts fire", func() (bool, string) {
			firing, err := prom.firing()
			if err != nil {
				return false, err.Error()
			}
			var missing []string
			for a := range want {
				if !firing[a] {
					missing = append(missing, a)
				}
			}
			return len(missing) == 0, fmt.Sprintf("not firing: %v; firing: %v", missing, firing)
		})
	})

	t.Run("every_dashboard_query_returns_series", func(t *testing.T) {
		for _, tg := range dashboardTargets(t) {
			expr := grafanaExpr(t, tg.expr)
			var series []promSample
			poll(t, deadline, fmt.Sprintf("panel %q target %s returns series: %s", tg.panel, tg.refID, expr), func() (bool, string) {
				s, err := prom.query(expr)
				if err != nil {
					return false, err.Error()
				}
				series = s
				return len(s) > 0 || isQuiet(expr), fmt.Sprint(len(s), " series")
			})
			if len(series) == 0 {
				t.Logf("quiet in the demo (query accepted, no series): %q (%s)", tg.panel, tg.refID)
				continue
			}
			for _, l := range byLabels(expr) {
				if slices.ContainsFunc(series, func(s promSample) bool { return s.Metric[l] != "" }) {
					continue
				}
				t.Errorf("panel %q target %s groups by %s, which no series carries: %s", tg.panel, tg.refID, l, expr)
			}
		}
	})

	t.Run("label_cardinality_bounded_under_flood", func(t *testing.T) {
		before := seriesPerFamily(metrics)
		flood(t, demo.base, 600)
		after := demo.metrics(t)
		require.NotContains(t, after, floodMarker, "a flooded path, token, key ID, user name, request ID, method or host became a label value")
		require.NotContains(t, after, `"127.0.1.`, "a client address became a label value")
		// The flood reached the checks behind the per-address limit.
		for _, ev := range [][]string{{`event="signature_mismatch"`}, {`event="auth_failed"`, `reason="malformed"`}} {
			require.GreaterOrEqual(t, eventCount(after, ev...)-eventCount(metrics, ev...), 600.0, "%v during the flood", ev)
		}
		grown := seriesPerFamily(after)
		for family, limit := range maxSeriesGrowth {
			require.LessOrEqual(t, grown[family]-before[family], limit, "%s: %d series before the flood, %d after", family, before[family], grown[family])
		}
		for family, n := range grown {
			if _, ok := maxSeriesGrowth[family]; !ok {
				require.LessOrEqual(t, n-before[family], 0, "%s grew under the flood", family)
			}
		}
		// Device models are a label on purpose (the emulator-farm alert),
		// so telemetry must cap how many it admits.
		models := regexp.MustCompile(`device_model="flood-model-\d+"`).FindAllString(after, -1)
		slices.Sort(models)
		require.LessOrEqual(t, len(slices.Compact(models)), maxDeviceModels, "distinct device_model values admitted")
		// Prometheus stored no more than the exporter showed.
		poll(t, deadline, "Prometheus scrapes after the flood", func() (bool, string) {
			s, err := prom.query(`count({job="apiguard", __name__=~"apiguard_.*|http_server_.*"})`)
			if err != nil || len(s) != 1 {
				return false, fmt.Sprint(s, err)
			}
			return true, ""
		})
	})
	t.Logf("operations pack end to end: %s", time.Since(start).Round(100*time.Millisecond))
}

// floodMarker is in every value the flood makes up, except device models.
const floodMarker = "xflood"

// maxSeriesGrowth bounds the new series per family that a flood of
// distinct values may add: the unmatched route and the _OTHER method with
// the statuses they meet; new (event, reason) pairs and the capped device
// models. Any other family must not grow at all.
var maxSeriesGrowth = map[string]int{
	"http_server_request_duration_seconds": 24,
	"apiguard_security_events_total":       300,
}

// maxDeviceModels is the most distinct device models the flood may add as
// label values.
const maxDeviceModels = 256

// flood sends n rounds of requests, each made of values never seen before:
// a path, a bearer token, a signing key ID and device model, a user name,
// a request ID, a method and a report host; from a new loopback address
// every 30 rounds, so that the per-address limit lets them reach every
// check.
func flood(t *testing.T, base string, n int) {
	t.Helper()
	token := login(t, base)
	jobs := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients := map[int]*http.Client{}
			for i := range jobs {
				src := i / 30
				c := clients[src]
				if c == nil {
					c = clientFrom(net.IPv4(127, 0, 1, byte(1+src%250)))
					clients[src] = c
				}
				if err := floodOnce(c, base, token, i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func floodOnce(c *http.Client, base, token string, i int) error {
	r := func() string { return floodMarker + randHex(8) }
	var reqs []*http.Request
	add := func(method, path string, body string, h map[string]string) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			return
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		reqs = append(reqs, req)
	}
	add("GET", "/v1/orders/"+r()+"?q="+r(), "", map[string]string{"X-Request-ID": r()})
	add("GET", "/v1/orders", "", map[string]string{"Authorization": "Bearer " + r() + "." + r() + "." + r()})
	add("POST", "/v1/login", url.Values{"username": {r()}, "password": {r()}}.Encode(), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	add("FLOOD"+strings.ToUpper(randHex(4)), "/"+r(), "", nil)
	add("POST", "/v1/reports", `[{"type":"pinning-failure","age":1,"url":"https://`+r()+`.example.com/`+r()+`","user_agent":"`+r()+`","body":{}}]`,
		map[string]string{"Content-Type": "application/reports+json"})
	pay, err := http.NewRequest("POST", base+"/v1/pay", strings.NewReader(`{"amount":1}`))
	if err != nil {
		return err
	}
	pay.Header.Set("Authorization", "Bearer "+token)
	pay.Header.Set("Content-Type", "application/json")
	pay.Header.Set("X-Device-Model", fmt.Sprintf("flood-model-%d", i))
	if err := signing.NewSigner(r(), []byte(r()+r()+r()+r())).Sign(pay); err != nil {
		return err
	}
	reqs = append(reqs, pay)
	for _, req := range reqs {
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("%s %s: %d", req.Method, req.URL.Path, resp.StatusCode)
		}
	}
	return nil
}

// login gets an access token from the demo's authorization server (PKCE),
// so that flooded signed requests get past auth to the signature check.
func login(t *testing.T, base string) string {
	t.Helper()
	verifier, err := auth.NewPKCEVerifier()
	require.NoError(t, err)
	code := postForm(t, base+"/oauth/authorize", url.Values{"code_challenge": {auth.PKCEChallengeS256(verifier)}, "code_challenge_method": {"S256"}})["code"]
	require.NotEmpty(t, code)
	tok := postForm(t, base+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}})["access_token"]
	require.NotEmpty(t, tok)
	return tok
}

func postForm(t *testing.T, u string, v url.Values) map[string]string {
	t.Helper()
	resp, err := http.PostForm(u, v)
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string]any{}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	m := map[string]string{}
	for k, val := range out {
		m[k] = fmt.Sprint(val)
	}
	return m
}

// clientFrom dials from src when it can be bound (Linux routes all of
// 127.0.0.0/8 to loopback), and from the default address otherwise.
func clientFrom(src net.IP) *http.Client {
	addr := &net.TCPAddr{IP: src}
	tr := &http.Transport{}
	if ln, err := net.ListenTCP("tcp", addr); err == nil {
		_ = ln.Close()
		tr.DialContext = (&net.Dialer{LocalAddr: addr, Timeout: 5 * time.Second}).DialContext
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// seriesPerFamily counts the series of each metric family in a text
// exposition; a histogram counts once per label set (its _count line).
func seriesPerFamily(text string) map[string]int {
	out := map[string]int{}
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		switch {
		case strings.HasSuffix(name, "_bucket"), strings.HasSuffix(name, "_sum"):
			continue
		case strings.HasSuffix(name, "_count"):
			name = strings.TrimSuffix(name, "_count")
		}
		out[name]++
	}
	return out
}

// eventCount sums the apiguard_security_events_total series whose labels
// contain every sel.
func eventCount(text string, sel ...string) float64 {
	var sum float64
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "apiguard_security_events_total{") || !containsAll(line, sel) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// demoProc is examples/demo -serve -attacks -http, built and started.
type demoProc struct {
	base, addr string
}

func startDemo(t *testing.T, dir string) *demoProc {
	t.Helper()
	goBin, err := exec.LookPath("go")
	require.NoError(t, err)
	bin := filepath.Join(dir, "demo")
	out, err := exec.Command(goBin, "build", "-o", bin, "../examples/demo").CombinedOutput()
	require.NoError(t, err, "go build ./examples/demo: %s", out)
	ctx, cancel := context.WithCancel(context.Background())
	// -http: Prometheus scrapes plain HTTP, as behind a proxy that terminates TLS.
	cmd := exec.CommandContext(ctx, bin, "-serve", "-attacks", "-http", "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	br := bufio.NewReader(stdout)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	base := strings.TrimSpace(strings.TrimPrefix(line, "apiguard demo API on "))
	u, err := url.Parse(base)
	require.NoError(t, err, line)
	go func() { _, _ = io.Copy(io.Discard, br) }()
	return &demoProc{base: base, addr: u.Host}
}

// attack runs the demo's attack script once.
func (d *demoProc) attack(t *testing.T) {
	t.Helper()
	resp, err := http.Post(d.base+"/demo/attacks", "", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	require.Contains(t, string(b), "summary:")
}

// metrics returns the demo's /metrics.
func (d *demoProc) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(d.base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// promProc is Debian's prometheus on loopback.
type promProc struct{ base string }

// forClause is a rule's `for:` duration; the test copy of alerts.yml
// sets every one to 0s, so alerts fire at their first evaluation.
var forClause = regexp.MustCompile(`(?m)^(\s+)for: \S+$`)

func startPrometheus(t *testing.T, bin, dir, target string) *promProc {
	t.Helper()
	rules, err := os.ReadFile("prometheus/rules.yml")
	require.NoError(t, err)
	alerts, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	require.Regexp(t, forClause, string(alerts))
	alerts = forClause.ReplaceAll(alerts, []byte("${1}for: 0s"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), rules, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts.yml"), alerts, 0o600))
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yml, alerts.yml]
scrape_configs:
  - job_name: apiguard
    static_configs:
      - targets: [%q]
`, target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithCancel(context.Background())
	var logs strings.Builder
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: &logs}, &lockedWriter{w: &logs}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	p := &promProc{base: "http://" + addr}
	poll(t, time.Now().Add(20*time.Second), "prometheus is ready", func() (bool, string) {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
}

// query runs an instant query and returns its vector.
func (p *promProc) query(expr string) ([]promSample, error) {
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status, Error string
		Data          struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, out.Error)
	}
	if out.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s", expr, out.Data.ResultType)
	}
	var s []promSample
	return s, json.Unmarshal(out.Data.Result, &s)
}

// firing returns the names of the alerts firing now.
func (p *promProc) firing() (map[string]bool, error) {
	resp, err := http.Get(p.base + "/api/v1/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string
				State  string
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, a := range out.Data.Alerts {
		if a.State == "firing" {
			m[a.Labels["alertname"]] = true
		}
	}
	return m, nil
}

// poll calls f until it reports done, every 200ms, and fails the test at
// the deadline with f's last word.
func poll(t *testing.T, deadline time.Time, what string, f func() (bool, string)) {
	t.Helper()
	for {
		done, detail := f()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s: %s", what, detail)
		}
		<-time.After(200 * time.Millisecond)
	}
}

type target struct{ panel, refID, expr string }

// dashboardTargets returns every query of the dashboard, rows' panels
// included.
func dashboardTargets(t *testing.T) []target {
	t.Helper()
	b, err := os.ReadFile("grafana/apiguard.json")
	require.NoError(t, err)
	type panel struct {
		Title   string
		Panels  json.RawMessage
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string
		}
	}
	var d struct{ Panels []panel }
	require.NoError(t, json.Unmarshal(b, &d))
	var out []target
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, target{p.Title, tg.RefID, tg.Expr})
			}
			var sub []panel
			if len(p.Panels) > 0 && json.Unmarshal(p.Panels, &sub) == nil {
				walk(sub)
			}
		}
	}
	walk(d.Panels)
	require.NotEmpty(t, out)
	return out
}

// grafanaVars are the values the test gives the dashboard's variables.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m",
	"$__interval", "15s",
	"$__range", "5m",
	"$job", ".*",
	"${job}", ".*",
)

func grafanaExpr(t *testing.T, expr string) string {
	t.Helper()
	out := grafanaVars.Replace(expr)
	require.NotContains(t, out, "$", "a dashboard variable the test does not know: %s", expr)
	return out
}

var byClause = regexp.MustCompile(`\bby \(([^)]*)\)`)

// byLabels returns the labels a query groups by, but le.
func byLabels(expr string) []string {
	var out []string
	for _, m := range byClause.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" && l != "le" && !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}

func isQuiet(expr string) bool {
	return slices.ContainsFunc(quiet, func(q string) bool { return strings.Contains(expr, q) })
}

var alertName = regexp.MustCompile(`(?m)^\s+- alert: (\w+)$`)

// TestEveryAlertHasARunbookAndATest checks, without Prometheus, that each
// alert of alerts.yml has its section in RUNBOOKS.md (the anchor its
// runbook_url names) and a case in alerts_test.yml.
func TestEveryAlertHasARunbookAndATest(t *testing.T) {
	alerts, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	runbooks, err := os.ReadFile("RUNBOOKS.md")
	require.NoError(t, err)
	tests, err := os.ReadFile("prometheus/alerts_test.yml")
	require.NoError(t, err)
	names := alertName.FindAllStringSubmatch(string(alerts), -1)
	require.NotEmpty(t, names)
	for _, m := range names {
		name := m[1]
		require.Contains(t, string(runbooks), "\n## "+name+"\n", "RUNBOOKS.md has no section for %s", name)
		require.Contains(t, string(alerts), "RUNBOOKS.md#"+strings.ToLower(name), "%s's runbook_url", name)
		require.Contains(t, string(tests), "alertname: "+name+"\n", "alerts_test.yml has no case for %s", name)
	}
	for _, a := range attackAlerts {
		require.Contains(t, string(alerts), "- alert: "+a+"\n")
	}
}
