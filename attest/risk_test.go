package attest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/playintegrity"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/stretchr/testify/require"
	"log/slog"
)

var cdn = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

var (
	paris  = [2]string{"48.8566", "2.3522"}
	sydney = [2]string{"-33.8688", "151.2093"}
	lyon   = [2]string{"45.7640", "4.8357"}
)

type riskEnv struct {
	t     *testing.T
	a     *appattest.Verifier
	ca    *attesttest.CA
	keys  *swapKeys
	chs   *swapChallenges
	v     *Verifier
	clock *time.Time
	logs  *logSink
}

func newRiskEnv(t *testing.T, mod func(*Config)) *riskEnv {
	t.Helper()
	clock := synthNow
	ae := newSynthetic(t, func(c *appattest.Config) { c.Now = func() time.Time { return clock } })
	cfg := Config{
		AppAttest: ae.a,
		Subject:   func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
		Locator:   &HeaderLocator{TrustedProxies: cdn, AccuracyHeader: "X-Geo-Accuracy"},
		Now:       func() time.Time { return clock },
		Logger:    slog.New(slog.NewJSONHandler(ae.logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	return &riskEnv{t: t, a: ae.a, ca: ae.ca, keys: ae.keys, chs: ae.chs, v: v, clock: &clock, logs: ae.logs}
}

func (e *riskEnv) device(opt attesttest.AttestOptions) *attesttest.Device {
	d, err := attesttest.NewDevice(testAppID)
	require.NoError(e.t, err)
	cdh := appattest.ClientDataHash([]byte("enrol"))
	obj, err := e.ca.Attest(d, cdh, opt)
	require.NoError(e.t, err)
	_, err = e.a.VerifyAttestation(context.Background(), d.KeyID, obj, cdh)
	require.NoError(e.t, err)
	return d
}

// request builds a request from user at place, attested by d (nil: none).
func (e *riskEnv) request(d *attesttest.Device, user string, place [2]string, body string) *http.Request {
	r := httptest.NewRequest("POST", "https://api.example.com/premium", strings.NewReader(body))
	r.RemoteAddr = "10.1.2.3:443" // the CDN
	r.Header.Set("X-User", user)
	if place != ([2]string{}) {
		r.Header.Set("X-Geo-Latitude", place[0])
		r.Header.Set("X-Geo-Longitude", place[1])
		r.Header.Set("X-Geo-Accuracy", "20")
	}
	if d != nil {
		ch, _, err := e.a.IssueChallenge(context.Background(), d.KeyID)
		require.NoError(e.t, err)
		as, err := d.Assert(appattest.ClientData("POST", "/premium", "", []byte(body), ch))
		require.NoError(e.t, err)
		r.Header.Set(appattest.HeaderKeyID, d.KeyID)
		r.Header.Set(appattest.HeaderChallenge, ch)
		r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(as))
	}
	return r
}

func (e *riskEnv) serve(h func(http.Handler) http.Handler, r *http.Request) (*httptest.ResponseRecorder, *Risk, string) {
	var risk *Risk
	var body string
	rec := httptest.NewRecorder()
	h(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		risk, _ = RiskFrom(r.Context())
		b, _ := io.ReadAll(r.Body)
		body = string(b)
	})).ServeHTTP(rec, r)
	return rec, risk, body
}

func TestRiskBands(t *testing.T) {
	e := newRiskEnv(t, nil)
	d := e.device(attesttest.AttestOptions{})

	rec, risk, body := e.serve(e.v.Handler, e.request(d, "u1", paris, `{"a":1}`))
	require.Equal(t, 200, rec.Code)
	require.Equal(t, 0, risk.Score)
	require.Equal(t, BandAllow, risk.Band)
	require.Equal(t, "app_attest", risk.Provider)
	require.Equal(t, `{"a":1}`, body, "body handed on intact")

	rec, risk, _ = e.serve(e.v.Handler, e.request(nil, "u2", paris, ""))
	require.Equal(t, 200, rec.Code, "no attestation: monitored, served")
	require.Equal(t, BandMonitor, risk.Band)
	require.Equal(t, []string{ReasonAttestationMissing}, risk.Reasons)

	bad := e.request(d, "u1", paris, "x")
	bad.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString([]byte("forged")))
	rec, _, _ = e.serve(e.v.Handler, bad)
	require.Equal(t, 401, rec.Code, "a failed attestation steps up")
	require.Equal(t, `Bearer error="insufficient_user_authentication"`, rec.Header().Get("WWW-Authenticate"))
	var p map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.NotContains(t, p, "reasons", "the signals that fired are not disclosed")
	require.Equal(t, "reattest", p["action"])
	require.Contains(t, e.logs.String(), `"event":"risk_step_up"`)
}

func TestImpossibleTravel(t *testing.T) {
	e := newRiskEnv(t, func(c *Config) { c.StepUpACR = []string{"urn:example:mfa"}; c.StepUpMaxAge = 5 * time.Minute })
	d := e.device(attesttest.AttestOptions{})
	premium := e.v.Require(Thresholds{Monitor: 20, StepUp: 50, Deny: 95})

	rec, _, _ := e.serve(premium, e.request(d, "alice", paris, ""))
	require.Equal(t, 200, rec.Code)
	*e.clock = e.clock.Add(2 * time.Hour)
	rec, _, _ = e.serve(premium, e.request(d, "alice", lyon, ""))
	require.Equal(t, 200, rec.Code, "Paris to Lyon in two hours is believable")

	*e.clock = e.clock.Add(time.Hour)
	rec, _, _ = e.serve(premium, e.request(d, "alice", sydney, ""))
	require.Equal(t, 401, rec.Code, "Lyon to Sydney in an hour is not")
	require.Equal(t, `Bearer error="insufficient_user_authentication", acr_values="urn:example:mfa", max_age="300"`, rec.Header().Get("WWW-Authenticate"))
	require.NotContains(t, rec.Body.String(), `"impossible_travel"`, "reasons are logged, not disclosed")
	require.Contains(t, rec.Body.String(), `"action":"mfa"`)
	require.Contains(t, e.logs.String(), `"event":"impossible_travel"`)

	// Accuracy-aware: two fixes 120 km apart, each accurate to 100 km,
	// are not travel at all.
	r1 := e.request(d, "bob", [2]string{"48.0", "2.0"}, "")
	r1.Header.Set("X-Geo-Accuracy", "100")
	e.serve(premium, r1)
	*e.clock = e.clock.Add(time.Minute)
	r2 := e.request(d, "bob", [2]string{"49.08", "2.0"}, "")
	r2.Header.Set("X-Geo-Accuracy", "100")
	rec, risk, _ := e.serve(premium, r2)
	require.Equal(t, 200, rec.Code)
	require.NotContains(t, risk.Reasons, ReasonImpossibleTravel)
}

func TestForgedGeoHeadersIgnored(t *testing.T) {
	e := newRiskEnv(t, nil)
	d := e.device(attesttest.AttestOptions{})
	r := e.request(d, "carol", paris, "")
	e.serve(e.v.Handler, r)
	*e.clock = e.clock.Add(time.Minute)
	forged := e.request(d, "carol", sydney, "")
	forged.RemoteAddr = "203.0.113.9:5000" // not the CDN: its geo headers are the client's own
	_, risk, _ := e.serve(e.v.Handler, forged)
	require.NotContains(t, risk.Reasons, ReasonImpossibleTravel)
}

type fakeSIM struct{ swapped map[string]bool }

func (f fakeSIM) CheckSIMSwap(_ context.Context, subject string, _ time.Duration) (bool, error) {
	return f.swapped[subject], nil
}

func TestRiskSignals(t *testing.T) {
	t.Run("os_outdated", func(t *testing.T) {
		e := newRiskEnv(t, func(c *Config) { c.MinIOSVersion = "17.0" })
		old := e.device(attesttest.AttestOptions{OSVersion: "15.8"})
		_, risk, _ := e.serve(e.v.Handler, e.request(old, "u", paris, ""))
		require.Equal(t, []string{ReasonOSOutdated}, risk.Reasons)
		cur := e.device(attesttest.AttestOptions{OSVersion: "18.1"})
		_, risk, _ = e.serve(e.v.Handler, e.request(cur, "v", paris, ""))
		require.Empty(t, risk.Reasons)
	})
	t.Run("sim_swap", func(t *testing.T) {
		e := newRiskEnv(t, func(c *Config) { c.SIMSwap = fakeSIM{swapped: map[string]bool{"dave": true}} })
		d := e.device(attesttest.AttestOptions{})
		_, risk, _ := e.serve(e.v.Handler, e.request(d, "dave", paris, ""))
		require.Equal(t, []string{ReasonSIMSwap}, risk.Reasons)
		require.Equal(t, ActionFreshAuth, ActionFreshAuth)
		require.Equal(t, ActionMFA, risk.Action)
	})
	t.Run("key_churn", func(t *testing.T) {
		e := newRiskEnv(t, nil)
		var risk *Risk
		for range 4 { // one account, four freshly attested devices: a farm
			_, risk, _ = e.serve(e.v.Handler, e.request(e.device(attesttest.AttestOptions{}), "erin", paris, ""))
		}
		require.Contains(t, risk.Reasons, ReasonKeyChurn)
	})
	t.Run("counter_anomaly", func(t *testing.T) {
		e := newRiskEnv(t, nil)
		d := e.device(attesttest.AttestOptions{})
		r := e.request(nil, "fred", paris, "")
		ch, _, _ := e.a.IssueChallenge(context.Background(), d.KeyID)
		as, _ := d.AssertWithCounter(appattest.ClientData("POST", "/premium", "", nil, ch), 50_000)
		r.Header.Set(appattest.HeaderKeyID, d.KeyID)
		r.Header.Set(appattest.HeaderChallenge, ch)
		r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(as))
		_, risk, _ := e.serve(e.v.Handler, r)
		require.Equal(t, []string{ReasonCounterAnomaly}, risk.Reasons)
	})
	t.Run("deny_when_everything_is_wrong", func(t *testing.T) {
		e := newRiskEnv(t, func(c *Config) { c.SIMSwap = fakeSIM{swapped: map[string]bool{"gus": true}} })
		r := e.request(e.device(attesttest.AttestOptions{}), "gus", paris, "")
		r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString([]byte("forged")))
		rec, _, _ := e.serve(e.v.Handler, r)
		require.Equal(t, 403, rec.Code)
		require.Contains(t, rec.Body.String(), "risk-denied")
		require.Contains(t, e.logs.String(), `"event":"risk_denied"`)
	})
	t.Run("monitor_only_never_rejects", func(t *testing.T) {
		e := newRiskEnv(t, func(c *Config) { c.MonitorOnly = true })
		r := e.request(e.device(attesttest.AttestOptions{}), "hal", paris, "")
		r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString([]byte("forged")))
		rec, risk, _ := e.serve(e.v.Handler, r)
		require.Equal(t, 200, rec.Code)
		require.Equal(t, BandStepUp, risk.Band)
		require.Contains(t, e.logs.String(), `"monitor_only":true`)
	})
}

type downKeys struct{ appattest.KeyStore }

func (downKeys) Lookup(context.Context, string) ([]byte, uint32, bool, error) {
	return nil, 0, false, errors.New("redis down")
}

func TestVendorOutagePolicy(t *testing.T) {
	for _, tt := range []struct {
		name   string
		policy OutagePolicy
		want   int
	}{{"fail_open_with_penalty", OutageFailOpen, 200}, {"fail_closed", OutageFailClosed, 503}} {
		t.Run(tt.name, func(t *testing.T) {
			e := newRiskEnv(t, func(c *Config) { c.Outage = tt.policy })
			d := e.device(attesttest.AttestOptions{})
			e.keys.set(downKeys{e.keys.get()})
			rec, risk, _ := e.serve(e.v.Handler, e.request(d, "ivy", paris, ""))
			require.Equal(t, tt.want, rec.Code)
			if tt.want == 200 {
				require.Equal(t, []string{ReasonVendorOutage}, risk.Reasons)
			} else {
				require.NotEmpty(t, rec.Header().Get("Retry-After"))
			}
		})
	}
}

func TestOutagePolicyPerRoute(t *testing.T) {
	e := newRiskEnv(t, nil) // the Verifier fails open
	d := e.device(attesttest.AttestOptions{})
	e.keys.set(downKeys{e.keys.get()})
	payments := e.v.RequireRoute(Route{Thresholds: Thresholds{Monitor: 30, StepUp: 60, Deny: 85}, Outage: OutageFailClosed})
	rec, _, _ := e.serve(payments, e.request(d, "jo", paris, ""))
	require.Equal(t, 503, rec.Code, "this route fails closed")
	rec, _, _ = e.serve(e.v.Handler, e.request(d, "jo", paris, ""))
	require.Equal(t, 200, rec.Code, "the default fails open")
}

func TestAndroidSDKMinimum(t *testing.T) {
	ts := synthNow.Add(-5 * time.Second).UnixMilli()
	verdict := attesttest.Verdict(pkg, "", "", ts, certDigest)
	verdict["deviceIntegrity"].(map[string]any)["deviceAttributes"] = map[string]any{"sdkVersion": 28}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verdict["requestDetails"].(map[string]any)["requestHash"] = playintegrity.RequestHash("POST", "/premium", "", []byte("{}"))
		_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": verdict})
	}))
	defer api.Close()
	play, _ := newPlay(t, nil, func(c *playintegrity.Config) { c.APIBaseURL = api.URL; c.HTTPClient = api.Client() })
	v, err := New(Config{PlayIntegrity: play, MinAndroidSDK: 33, Subject: func(*http.Request) (string, error) { return "", nil },
		Now: func() time.Time { return synthNow }, Logger: nopLogger()})
	require.NoError(t, err)
	r := httptest.NewRequest("POST", "/premium", strings.NewReader("{}"))
	r.Header.Set(playintegrity.Header, "standard-token")
	risk, err := assessRequest(v, r, Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
	require.NoError(t, err)
	require.Equal(t, "play_integrity", risk.Provider)
	require.Equal(t, []string{ReasonOSOutdated}, risk.Reasons)
}

func TestMaxMindLocator(t *testing.T) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", RecordSize: 24})
	require.NoError(t, err)
	insert := func(cidr string, lat, lon float64, acc uint16) {
		_, n, err := net.ParseCIDR(cidr)
		require.NoError(t, err)
		require.NoError(t, tree.Insert(n, mmdbtype.Map{"location": mmdbtype.Map{
			"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon), "accuracy_radius": mmdbtype.Uint16(acc)}}))
	}
	insert("81.2.69.0/24", 51.5142, -0.0931, 10)   // London
	insert("1.128.0.0/11", -33.8688, 151.2093, 50) // Sydney
	var buf bytes.Buffer
	_, err = tree.WriteTo(&buf)
	require.NoError(t, err)
	loc, err := NewMaxMindLocatorBytes(buf.Bytes(), cdn...)
	require.NoError(t, err)
	defer loc.Close()

	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "81.2.69.160:1234"
	got, ok := loc.Locate(r)
	require.True(t, ok)
	require.InDelta(t, 51.5142, got.Lat, 1e-6)
	require.Equal(t, 10.0, got.AccuracyKm)

	r.RemoteAddr = "10.0.0.1:1"
	r.Header.Set("X-Forwarded-For", "81.2.69.160, 1.130.0.1")
	got, ok = loc.Locate(r)
	require.True(t, ok, "behind the trusted proxy, the rightmost untrusted hop")
	require.InDelta(t, -33.8688, got.Lat, 1e-6)

	r.RemoteAddr = "192.0.2.1:1"
	_, ok = loc.Locate(r)
	require.False(t, ok, "an address not in the database")
	require.InDelta(t, 16993, haversineKm(Location{Lat: 51.5142, Lon: -0.0931}, got), 30, "London to Sydney")
}

func TestVersionLess(t *testing.T) {
	require.True(t, versionLess("9.3", "17.0"))
	require.True(t, versionLess("17.0", "17.0.1"))
	require.False(t, versionLess("17.4", "17.4"))
	require.False(t, versionLess("18", "17.9"))
}

func TestNewRiskConfig(t *testing.T) {
	_, err := New(Config{})
	require.ErrorContains(t, err, "at least one provider")
	a := newSynthetic(t, nil).a
	_, err = New(Config{AppAttest: a})
	require.ErrorContains(t, err, "Subject is required")
	_, err = New(Config{AppAttest: a, Subject: func(*http.Request) (string, error) { return "", nil }, Thresholds: Thresholds{Monitor: 50, StepUp: 40, Deny: 90}})
	require.ErrorContains(t, err, "must rise")
	play, _ := newPlay(t, nil, nil)
	_, err = New(Config{AppAttest: play, Subject: func(*http.Request) (string, error) { return "", nil }})
	require.ErrorContains(t, err, "Config.AppAttest holds a play_integrity verifier", "a vendor in the wrong field")
}

func TestBandString(t *testing.T) {
	for b, want := range map[Band]string{BandAllow: "allow", BandMonitor: "monitor", BandStepUp: "step_up", BandDeny: "deny", Band(9): "band(9)", Band(-1): "band(-1)"} {
		require.Equal(t, want, b.String())
	}
}

// TestNegativeConfigNamesField: a negative timeout, age or count is an
// error naming its field, never a silent default (a negative HistoryTTL
// used to become 30 days, a negative SIMSwapMaxAge 72 hours).
func TestNegativeConfigNamesField(t *testing.T) {
	a := newSynthetic(t, nil).a
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative_history_ttl", func(c *Config) { c.HistoryTTL = -time.Hour }, "Config.HistoryTTL must not be negative (got -1h0m0s)"},
		{"negative_sim_swap_max_age", func(c *Config) { c.SIMSwapMaxAge = -time.Hour }, "Config.SIMSwapMaxAge must not be negative"},
		{"negative_store_timeout", func(c *Config) { c.StoreTimeout = -time.Millisecond }, "Config.StoreTimeout must not be negative (got -1ms)"},
		{"negative_step_up_max_age", func(c *Config) { c.StepUpMaxAge = -time.Minute }, "Config.StepUpMaxAge must not be negative"},
		{"negative_max_keys_per_subject", func(c *Config) { c.MaxKeysPerSubject = -1 }, "Config.MaxKeysPerSubject must not be negative"},
		{"negative_min_android_sdk", func(c *Config) { c.MinAndroidSDK = -1 }, "Config.MinAndroidSDK must not be negative"},
		{"negative_max_body_bytes", func(c *Config) { c.MaxBodyBytes = -1 }, "Config.MaxBodyBytes must not be negative"},
		{"negative_max_speed", func(c *Config) { c.MaxSpeedKmh = -1 }, "Config.MaxSpeedKmh"},
		{"negative_min_travel", func(c *Config) { c.MinTravelKm = -1 }, "Config.MinTravelKm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{AppAttest: a, Subject: func(*http.Request) (string, error) { return "", nil }}
			tt.mod(&cfg)
			_, err := New(cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}
