package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/problem"
	"github.com/apiguard/apiguard/internal/shadowbody"
)

// Band is what a risk score leads to.
type Band int

// Bands, by rising score.
const (
	// BandAllow: serve normally.
	BandAllow Band = iota
	// BandMonitor: serve, and let handlers reduce access ([RiskFrom]).
	BandMonitor
	// BandStepUp: answer 401 insufficient_user_authentication (RFC 9470).
	BandStepUp
	// BandDeny: answer 403.
	BandDeny
)

// String returns the band's name as logged: allow, monitor, step_up or
// deny ("band(N)" for a value outside them).
func (b Band) String() string {
	names := [...]string{"allow", "monitor", "step_up", "deny"}
	if b < 0 || int(b) >= len(names) {
		return "band(" + strconv.Itoa(int(b)) + ")"
	}
	return names[b]
}

// Action tells the client how to recover from a step-up.
type Action string

// Actions.
const (
	ActionReattest  Action = "reattest"   // attest the app again
	ActionMFA       Action = "mfa"        // a second factor
	ActionFreshAuth Action = "fresh_auth" // sign in again
)

// Reasons that raise the score, with their weights (added, capped at 100).
const (
	ReasonAttestationMissing = "attestation_missing" // 40: no attestation evidence on the request
	ReasonAttestationFailed  = "attestation_failed"  // 70: evidence that does not verify
	ReasonAppCheckOnly       = "app_check_only"      // 10: App Check, weaker than device attestation
	ReasonVendorOutage       = "vendor_outage"       // 40: the vendor or a store could not be asked (fail-open penalty; as much as no evidence, so that unverifiable evidence never scores better than none)
	ReasonImpossibleTravel   = "impossible_travel"   // 50: faster than MaxSpeedKmh since the last request
	ReasonOSOutdated         = "os_outdated"         // 20: OS below the minimum
	ReasonSIMSwap            = "sim_swap"            // 40: SIM changed recently
	ReasonKeyChurn           = "key_churn"           // 30: more keys per subject than MaxKeysPerSubject
	ReasonCounterAnomaly     = "counter_anomaly"     // 20: assertion counter jumped
	ReasonPlayProtect        = "play_protect"        // 15: Play Protect found issues
	ReasonDeviceActivity     = "device_activity"     // 15: very high recent device activity (a farm)
)

var weights = map[string]int{
	ReasonAttestationMissing: 40, ReasonAttestationFailed: 70, ReasonAppCheckOnly: 10, ReasonVendorOutage: 40,
	ReasonImpossibleTravel: 50, ReasonOSOutdated: 20, ReasonSIMSwap: 40, ReasonKeyChurn: 30,
	ReasonCounterAnomaly: 20, ReasonPlayProtect: 15, ReasonDeviceActivity: 15,
}

// Risk is the assessment of one request.
type Risk struct {
	Score   int
	Band    Band
	Reasons []string
	Action  Action
	// Provider is the attestation that vouched for the request:
	// app_attest, play_integrity, app_check, or "".
	Provider string
	// SpeedKmh is the travel speed since the subject's last request, when
	// both were located.
	SpeedKmh float64
}

// Thresholds map scores to bands: a score at or above Deny denies, at or
// above StepUp steps up, at or above Monitor monitors.
type Thresholds struct {
	Monitor, StepUp, Deny int
}

// OutagePolicy says what happens when the evidence of a request cannot
// be checked because an attestation vendor (Google's API, the App Check
// key set) or a store (App Attest keys and challenges, Play Integrity
// nonces, the subjects' history) cannot be asked.
type OutagePolicy int

const (
	// OutageDefault is the zero value: in Config it means OutageFailOpen;
	// in a Route, the Verifier's Config.Outage.
	OutageDefault OutagePolicy = iota
	// OutageFailOpen serves the request with a risk penalty
	// (vendor_outage, as much as no evidence at all). While the key store
	// is down this admits, with the penalty, an assertion from a key that
	// was never attested: fail closed on routes that must not serve an
	// unverified device (payments, account changes).
	OutageFailOpen
	// OutageFailClosed answers 503 with Retry-After: no request is served
	// on evidence that could not be checked.
	OutageFailClosed
)

func (o OutagePolicy) valid() bool { return o >= OutageDefault && o <= OutageFailClosed }

// SIMSwapChecker reports recent SIM swaps for a subject, shaped like the
// CAMARA SIM Swap API's check (a phone number and a maximum age in hours,
// answered with a boolean); the application maps subjects to numbers.
type SIMSwapChecker interface {
	CheckSIMSwap(ctx context.Context, subject string, maxAge time.Duration) (swapped bool, err error)
}

// Config configures the risk middleware. A zero field takes the default
// in its comment; a negative duration, size or count is an error naming
// the field.
type Config struct {
	// AppAttest (an *appattest.Verifier), PlayIntegrity (an
	// *playintegrity.Verifier) and AppCheck (an *appcheck.Verifier) are
	// the providers; configure the ones the apps use. At least one is
	// required. A request is checked by the first of them, in this order,
	// whose evidence it carries.
	AppAttest, PlayIntegrity, AppCheck Provider
	// Subject names whose history a request extends (the access token's
	// subject, a device ID). Required. A request without one is assessed
	// on its attestation alone.
	Subject func(r *http.Request) (string, error)
	// Locator places requests, for impossible travel. Default: none.
	Locator Locator
	// History keeps subjects' last observations and keys, under
	// Namespace. Default: in memory, 100000 subjects.
	History HistoryStore
	// Namespace names this service's subjects in a shared History store
	// (the subject given to the store is a digest of it followed by the
	// subject), so that "user-42" of one service and of another on the
	// same Redis never share a history. Every instance, and every
	// Verifier, of one service must use the same. Default: the
	// configured providers' identities, sorted (App Attest's AppIDs, Play
	// Integrity's package name, App Check's project number); set it
	// explicitly before adding or removing a provider, or histories start
	// afresh.
	Namespace string
	// HistoryTTL is how long an observation is kept. Default: 30 days.
	HistoryTTL time.Duration
	// MaxSpeedKmh is the fastest believable travel. Default: 1000.
	MaxSpeedKmh float64
	// MinTravelKm is the least distance, beyond both accuracy radii, that
	// can be impossible travel. Default: 100.
	MinTravelKm float64
	// MaxKeysPerSubject is how many attested keys a subject may use
	// within HistoryTTL before key churn counts; below MaxHistoryKeys.
	// Default: 3.
	MaxKeysPerSubject int
	// MinIOSVersion counts older iOS versions ("17.4", from the App Attest
	// certificate) as os_outdated. Default: none.
	MinIOSVersion string
	// MinAndroidSDK counts older Android API levels (from Play
	// Integrity's device attributes) as os_outdated. Default: none.
	MinAndroidSDK int
	// SIMSwap checks for recent SIM swaps. It is called with the
	// request's context, before the store calls and outside their
	// deadline: it must bound its own calls. An error or a timeout is a
	// vendor outage, decided by the route's OutagePolicy like any other:
	// 503 where it fails closed, the vendor_outage penalty where it fails
	// open. Default: none.
	SIMSwap SIMSwapChecker
	// SIMSwapMaxAge is how recent a swap counts. Default: 72 hours.
	SIMSwapMaxAge time.Duration
	// Thresholds are the default bands. Default: 30, 60, 85.
	Thresholds Thresholds
	// Shadow decides every request exactly as enforce mode does, with the
	// same side effects (challenges and limited-use tokens consumed,
	// counters advanced, history recorded), logs each refusal as its
	// event with shadow=true, which telemetry counts with the attribute
	// shadow="true" (the would-deny count), and then calls the next
	// handler instead of refusing: risk_denied and risk_step_up (the
	// request carries its [Risk]), attestation_failed with reason
	// body_too_large or body (a body that cannot be read whole; next gets
	// it whole), and attestation_unavailable with reason store or vendor
	// (an outage on a route that fails closed; no Risk in the context).
	// Outages pass because a control on trial must not make the API less
	// available than it was without it. Default: false.
	Shadow bool
	// MonitorOnly is Shadow for the risk bands only: step-up and deny are
	// logged (with shadow=true) and passed, bodies that cannot be read
	// and fail-closed outages are still refused.
	//
	// Deprecated: use Shadow, one field for every refusal of every
	// control; MonitorOnly stays for existing configurations.
	MonitorOnly bool
	// InsecureExposeReasons lists the risk reasons that fired in the
	// problem+json body of step-up and deny answers ("reasons"). Off, the
	// client gets a generic detail and the action to take (reattest, mfa,
	// fresh_auth), and the reasons go only to the log records
	// (risk_step_up, risk_denied) and [RiskFrom]: naming the signals that
	// fired tells an attacker which one to evade. For debugging against
	// test clients only. Default: false.
	InsecureExposeReasons bool
	// Outage is the outage policy of every route that does not set its
	// own ([Route].Outage): what happens when a vendor or a store cannot
	// be asked. OutageFailClosed here is the one line that keeps every
	// route from admitting unverified devices while a store is down.
	// Default: OutageFailOpen.
	Outage OutagePolicy
	// StoreTimeout bounds, together, all the store calls one request's
	// assessment makes (key lookup, counter, challenge, single use of a
	// token, history): one deadline, set at the first store call, after
	// the calls to vendors (those have their own bounds:
	// playintegrity.Config.APITimeout, appcheck.Config.MaxWait), so that
	// a slow store costs a request at most StoreTimeout, not one timeout
	// per call. A store call cut off by it is a store outage (Outage
	// decides). Negative is an error. Default: 250ms.
	StoreTimeout time.Duration
	// StepUpACR and StepUpMaxAge are the acr_values and max_age of step-up
	// challenges. Default: none.
	StepUpACR    []string
	StepUpMaxAge time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives events (risk_step_up, risk_denied,
	// impossible_travel, attestation_failed, attestation_unavailable).
	// Default: slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes caps the body the Handler reads, whole, to check what
	// an assertion or an integrity token binds; a larger body is
	// [ErrBodyTooLarge] (413), even under MonitorOnly (in shadow mode,
	// logged and passed on whole). At most 1 GiB.
	// Default: 1 MiB.
	MaxBodyBytes int64
	// ErrorHandler writes the Handler's rejections: [ErrBodyTooLarge];
	// an outage on a route that fails closed (an error wrapping
	// [ErrVendor] or [ErrStore]); [ErrRiskStepUp] and [ErrRiskDenied],
	// whose request carries the [Risk] ([RiskFrom]); an error reading the
	// body. Default: [Verifier.WriteError].
	ErrorHandler func(http.ResponseWriter, *http.Request, error)
}

// Provider is an attestation verifier that the risk assessment consults:
// an *appattest.Verifier, *playintegrity.Verifier or *appcheck.Verifier.
// The contract is internal to this module: no other type implements it.
type Provider interface {
	Provider() provider.Provider
}

// Verifier assesses requests and enforces risk bands. It is safe for
// concurrent use by multiple goroutines.
type Verifier struct {
	cfg       Config
	histScope string // the namespace's prefix of subjects in History
	// appAttest, playIntegrity and appCheck are the configured providers'
	// contracts (Name "" when not configured).
	appAttest, playIntegrity, appCheck provider.Provider
}

// New validates cfg, fills in its defaults and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.AppAttest == nil && cfg.PlayIntegrity == nil && cfg.AppCheck == nil {
		return nil, errors.New("attest: Config needs at least one provider")
	}
	if cfg.Subject == nil {
		return nil, errors.New("attest: Config.Subject is required")
	}
	if err := cfg.Thresholds.valid(); err != nil {
		return nil, err
	}
	if !cfg.Outage.valid() {
		return nil, fmt.Errorf("attest: Config.Outage %d is not an OutagePolicy", cfg.Outage)
	}
	if cfg.Outage == OutageDefault {
		cfg.Outage = OutageFailOpen
	}
	if cfg.Thresholds == (Thresholds{}) {
		cfg.Thresholds = Thresholds{Monitor: 30, StepUp: 60, Deny: 85}
	}
	if err := provider.Negative(
		provider.Dur("Config.HistoryTTL", cfg.HistoryTTL),
		provider.Dur("Config.SIMSwapMaxAge", cfg.SIMSwapMaxAge),
		provider.Dur("Config.StoreTimeout", cfg.StoreTimeout),
		provider.Dur("Config.StepUpMaxAge", cfg.StepUpMaxAge),
		provider.Size("Config.MaxKeysPerSubject", int64(cfg.MaxKeysPerSubject)),
		provider.Size("Config.MinAndroidSDK", int64(cfg.MinAndroidSDK)),
		provider.Size("Config.MaxBodyBytes", cfg.MaxBodyBytes),
	); err != nil {
		return nil, err
	}
	if cfg.MaxSpeedKmh < 0 || cfg.MinTravelKm < 0 || math.IsNaN(cfg.MaxSpeedKmh) || math.IsNaN(cfg.MinTravelKm) {
		return nil, fmt.Errorf("attest: Config.MaxSpeedKmh (%v) and Config.MinTravelKm (%v) must not be negative; 0 takes the default", cfg.MaxSpeedKmh, cfg.MinTravelKm)
	}
	if cfg.HistoryTTL == 0 {
		cfg.HistoryTTL = 30 * 24 * time.Hour
	}
	if cfg.MaxSpeedKmh == 0 {
		cfg.MaxSpeedKmh = 1000
	}
	if cfg.MinTravelKm == 0 {
		cfg.MinTravelKm = 100
	}
	if cfg.MaxKeysPerSubject == 0 {
		cfg.MaxKeysPerSubject = 3
	}
	if cfg.MaxKeysPerSubject >= MaxHistoryKeys {
		return nil, fmt.Errorf("attest: Config.MaxKeysPerSubject must be below %d, the keys a history holds", MaxHistoryKeys)
	}
	if cfg.SIMSwapMaxAge == 0 {
		cfg.SIMSwapMaxAge = 72 * time.Hour
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 250 * time.Millisecond
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxBodyBytes > provider.MaxBodyLimit {
		return nil, errors.New("attest: Config.MaxBodyBytes must be between 0 and 1 GiB: a body is held in memory while it is checked")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = provider.DefaultMaxBody
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.History == nil {
		cfg.History = newMemoryHistoryStore(0, cfg.Now)
	}
	var ps [3]provider.Provider
	for i, f := range []struct {
		p    Provider
		name string
	}{{cfg.AppAttest, "app_attest"}, {cfg.PlayIntegrity, "play_integrity"}, {cfg.AppCheck, "app_check"}} {
		if f.p == nil {
			continue
		}
		ps[i] = f.p.Provider()
		if ps[i].Name != f.name || ps[i].Check == nil {
			return nil, fmt.Errorf("attest: Config.%s holds a %s verifier", [...]string{"AppAttest", "PlayIntegrity", "AppCheck"}[i], ps[i].Name)
		}
	}
	if cfg.Namespace == "" {
		var ids []string
		for _, p := range ps {
			ids = append(ids, p.Identities...)
		}
		slices.Sort(ids)
		cfg.Namespace = strings.Join(slices.Compact(ids), "\x00")
	}
	v := &Verifier{cfg: cfg, histScope: provider.Scope("risk-history", cfg.Namespace),
		appAttest: ps[0], playIntegrity: ps[1], appCheck: ps[2]}
	if v.cfg.ErrorHandler == nil {
		v.cfg.ErrorHandler = v.WriteError
	}
	events.WarnUnobserved(v.cfg.Logger, "attest")
	return v, nil
}

func (t Thresholds) valid() error {
	if t == (Thresholds{}) {
		return nil
	}
	if !(0 < t.Monitor && t.Monitor <= t.StepUp && t.StepUp <= t.Deny && t.Deny <= 101) {
		return fmt.Errorf("attest: Thresholds %+v must rise: 0 < Monitor <= StepUp <= Deny <= 101", t)
	}
	return nil
}

// observation is a subject's last located observation, as the history
// keeps it.
type observation struct {
	At  time.Time `json:"at"`
	Loc *Location `json:"loc,omitempty"`
}

var errOutage = errors.New("attest: vendor outage")

// Assess checks a request's evidence, extends its subject's history and
// returns its risk under th and the Verifier's outage policy: the
// decision of [Verifier.Handler] without HTTP (gather ev with
// [Verifier.EvidenceFrom], or fill it in). ctx bounds the calls to
// vendors and stores. An error is only an outage (a vendor or a store
// could not be asked) under OutageFailClosed; it wraps the cause,
// [ErrVendor] or [ErrStore], and an [*UnavailableError] when the vendor
// said when to retry. The store calls share one deadline,
// Config.StoreTimeout.
func (v *Verifier) Assess(ctx context.Context, ev Evidence, th Thresholds) (*Risk, error) {
	return v.assess(ctx, &ev, Route{Thresholds: th, Outage: v.cfg.Outage})
}

// Ready reports whether the history store can be asked: when
// Config.History has a Ready(ctx) error method (redisstore's), its answer
// within Config.StoreTimeout, wrapped in [ErrStore]; nil for the
// in-memory default. The providers answer for themselves (their own Ready
// methods): register each with the health handler. It can be called
// concurrently with request handling.
func (v *Verifier) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.StoreTimeout)
	defer cancel()
	return provider.StoreReady(ctx, "history store", v.cfg.History)
}

// Route is what one route asks of the risk assessment.
type Route struct {
	// Thresholds map scores to bands on this route. Required.
	Thresholds Thresholds
	// Outage is this route's outage policy: a payment route fails closed
	// with Outage: OutageFailClosed while a catalogue fails open. Default
	// (OutageDefault): the Verifier's Config.Outage, or OutageFailClosed
	// when LimitedUse is set.
	Outage OutagePolicy
	// LimitedUse requires App Check tokens on this route to be used once
	// (appcheck.Verifier.VerifyLimitedUse): a replayed token, or one
	// without a jti, is a failed attestation; a replay store that does not
	// answer is an outage. Play Integrity and App Attest evidence is
	// single use on every route. Default: false.
	LimitedUse bool
}

func (v *Verifier) assess(ctx context.Context, ev *Evidence, route Route) (*Risk, error) {
	risk := &Risk{}
	subject := ev.Subject
	store := &provider.StoreDeadline{Timeout: v.cfg.StoreTimeout}
	var outage error // the vendor or store that could not be asked

	// First the SIM swap check, under its own bound, outside the store
	// deadline.
	simSwapped, simErr := false, error(nil)
	if subject != "" && v.cfg.SIMSwap != nil {
		swapped, err := v.cfg.SIMSwap.CheckSIMSwap(ctx, subject, v.cfg.SIMSwapMaxAge)
		switch {
		case err != nil:
			simErr = fmt.Errorf("%w: sim swap check: %w", ErrVendor, err)
		default:
			simSwapped = swapped
		}
	}

	// Then the provider whose evidence the request carries: its calls to
	// the vendor under their own bounds (Google's API, the App Check key
	// set), then its store calls under the request's store deadline (key
	// lookup, counter, challenge, single use of the token).
	req := &provider.Request{Method: ev.Method, Path: ev.Path, RawQuery: ev.RawQuery, Body: ev.Body, Store: store,
		LimitedUse: route.LimitedUse}
	var p provider.Provider
	switch {
	case v.appAttest.Check != nil && ev.Assertion != "":
		p = v.appAttest
		req.KeyID, req.Challenge, req.Assertion = ev.KeyID, ev.Challenge, ev.Assertion
	case v.playIntegrity.Check != nil && ev.PlayIntegrity != "":
		p, req.Token = v.playIntegrity, ev.PlayIntegrity
	case v.appCheck.Check != nil && ev.AppCheck != "":
		p, req.Token = v.appCheck, ev.AppCheck
	}
	var verdict *provider.Verdict
	if p.Check == nil {
		risk.add(ReasonAttestationMissing)
	} else {
		var err error
		verdict, err = p.Check(ctx, req)
		switch {
		case errors.Is(err, ErrVendor), errors.Is(err, ErrStore):
			outage = err
		case err != nil:
			risk.add(ReasonAttestationFailed)
		default:
			risk.Provider = p.Name
			v.weigh(verdict, risk)
		}
	}
	if outage == nil {
		outage = simErr
	}
	keyID, osVersion := "", ""
	if risk.Provider != "" {
		keyID, osVersion = verdict.KeyID, verdict.OSVersion
	}

	// Then the history, under the same store deadline.
	if outage == nil || route.Outage != OutageFailClosed {
		if subject != "" {
			sctx, cancel := store.Context(ctx)
			err := v.behaviour(sctx, ev.Location, v.histScope+subject, keyID, risk)
			cancel()
			if err != nil && outage == nil {
				outage = err
			}
		}
	}
	if outage != nil {
		if route.Outage == OutageFailClosed {
			return nil, fmt.Errorf("%w: %w", errOutage, outage)
		}
		risk.add(ReasonVendorOutage)
	}
	if osVersion != "" && v.cfg.MinIOSVersion != "" && versionLess(osVersion, v.cfg.MinIOSVersion) {
		risk.add(ReasonOSOutdated)
	}
	if simSwapped {
		risk.add(ReasonSIMSwap)
	}
	risk.finish(route.Thresholds)
	return risk, nil
}

// weigh adds the signals of a provider's verdict to risk.
func (v *Verifier) weigh(verdict *provider.Verdict, risk *Risk) {
	switch risk.Provider {
	case "app_attest":
		if verdict.CounterJump > 1000 {
			risk.add(ReasonCounterAnomaly)
		}
	case "play_integrity":
		if verdict.PlayProtect != "" && verdict.PlayProtect != "NO_ISSUES" && verdict.PlayProtect != "NO_DATA" {
			risk.add(ReasonPlayProtect)
		}
		if verdict.DeviceActivity == "LEVEL_4" {
			risk.add(ReasonDeviceActivity)
		}
		if v.cfg.MinAndroidSDK > 0 && verdict.SDKVersion > 0 && verdict.SDKVersion < v.cfg.MinAndroidSDK {
			risk.add(ReasonOSOutdated)
		}
	case "app_check":
		risk.add(ReasonAppCheckOnly)
	}
}

// behaviour adds the subject's history signals, with the request's
// location when it is known (loc non-nil); ctx bounds its store
// calls. Each store call is one atomic step: concurrent requests of one
// subject never lose each other's keys. It returns the error of a history
// store that could not be asked (an outage, which the route's policy
// decides).
func (v *Verifier) behaviour(ctx context.Context, loc *Location, subject, keyID string, risk *Risk) error {
	now := v.cfg.Now()
	if keyID != "" {
		n, err := v.cfg.History.AddKey(ctx, subject, keyID, now, v.cfg.HistoryTTL)
		if err != nil {
			return fmt.Errorf("%w: history: %v", ErrStore, err)
		}
		if n > v.cfg.MaxKeysPerSubject {
			risk.add(ReasonKeyChurn)
		}
	}
	if loc == nil {
		return nil // an unlocated request leaves the last known place as it is
	}
	rec, _ := json.Marshal(observation{At: now, Loc: loc})
	raw, err := v.cfg.History.Swap(ctx, subject, rec, v.cfg.HistoryTTL)
	if err != nil {
		return fmt.Errorf("%w: history: %v", ErrStore, err)
	}
	var prev observation
	if raw == nil || json.Unmarshal(raw, &prev) != nil || prev.Loc == nil {
		return nil
	}
	dist := haversineKm(*prev.Loc, *loc) - prev.Loc.AccuracyKm - loc.AccuracyKm
	if dist < v.cfg.MinTravelKm {
		return nil
	}
	speed := dist / max(now.Sub(prev.At).Hours(), 1.0/3600)
	risk.SpeedKmh = speed
	if speed > v.cfg.MaxSpeedKmh {
		risk.add(ReasonImpossibleTravel)
		events.Log(ctx, v.cfg.Logger, slog.LevelWarn, "attest: impossible travel",
			slog.String("event", "impossible_travel"), slog.String("reason", "speed"),
			slog.Int("speed_kmh", int(speed)), slog.Int("distance_km", int(dist)))
	}
	return nil
}

func (risk *Risk) add(reason string) {
	if !slices.Contains(risk.Reasons, reason) {
		risk.Reasons = append(risk.Reasons, reason)
		risk.Score = min(100, risk.Score+weights[reason])
	}
}

func (risk *Risk) finish(th Thresholds) {
	switch {
	case risk.Score >= th.Deny:
		risk.Band = BandDeny
	case risk.Score >= th.StepUp:
		risk.Band = BandStepUp
	case risk.Score >= th.Monitor:
		risk.Band = BandMonitor
	}
	switch {
	case slices.Contains(risk.Reasons, ReasonAttestationMissing), slices.Contains(risk.Reasons, ReasonAttestationFailed):
		risk.Action = ActionReattest
	case slices.Contains(risk.Reasons, ReasonImpossibleTravel), slices.Contains(risk.Reasons, ReasonSIMSwap):
		risk.Action = ActionMFA
	case risk.Score > 0:
		risk.Action = ActionFreshAuth
	}
}

// versionLess compares dotted versions numerically ("9.3" < "17.0").
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

type riskKey struct{}

// RiskFrom returns the risk of the request whose context is ctx, so that
// handlers can reduce access (degrade, don't crash).
func RiskFrom(ctx context.Context) (*Risk, bool) {
	r, ok := ctx.Value(riskKey{}).(*Risk)
	return r, ok
}

// Handler returns next behind risk assessment with Config.Thresholds.
func (v *Verifier) Handler(next http.Handler) http.Handler {
	return v.Require(v.cfg.Thresholds)(next)
}

// Require returns middleware with thresholds for one route (a premium
// endpoint may step up sooner) and the Verifier's outage policy. It panics
// on invalid thresholds or a nil next handler.
func (v *Verifier) Require(th Thresholds) func(http.Handler) http.Handler {
	return v.RequireRoute(Route{Thresholds: th, Outage: v.cfg.Outage})
}

// RequireRoute is [Verifier.Require] with the route's own outage policy.
// It panics on invalid thresholds or policy, or a nil next handler.
func (v *Verifier) RequireRoute(route Route) func(http.Handler) http.Handler {
	th := route.Thresholds
	if err := th.valid(); err != nil || th == (Thresholds{}) {
		panic(fmt.Sprintf("attest: invalid thresholds %+v", th))
	}
	if !route.Outage.valid() {
		panic(fmt.Sprintf("attest: invalid outage policy %d", route.Outage))
	}
	switch {
	case route.Outage == OutageDefault && route.LimitedUse:
		route.Outage = OutageFailClosed // single use that cannot be proved is refused
	case route.Outage == OutageDefault:
		route.Outage = v.cfg.Outage
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("attest: nil handler")
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			in, seen := r, (*shadowbody.Body)(nil)
			if v.cfg.Shadow {
				in, seen = shadowbody.Watch(r)
			}
			ev, err := v.EvidenceFrom(in)
			if err == nil {
				var risk *Risk
				if risk, err = v.assess(ctx, &ev, route); err == nil {
					v.serveRisk(w, r, next, ev.Body, risk)
					return
				}
			}
			if v.refuse(w, r, err) {
				return
			}
			next.ServeHTTP(w, seen.Restore(r))
		})
	}
}

// serveRisk answers r by its assessed risk: step-up and deny are logged
// and refused (passed in shadow mode and under MonitorOnly), every other
// band reaches next; next reads body.
func (v *Verifier) serveRisk(w http.ResponseWriter, r *http.Request, next http.Handler, body []byte, risk *Risk) {
	ctx := r.Context()
	pass := v.cfg.Shadow || v.cfg.MonitorOnly
	r2 := r.WithContext(context.WithValue(ctx, riskKey{}, risk))
	attrs := []slog.Attr{slog.Int("score", risk.Score), slog.String("reason", strings.Join(risk.Reasons, ",")),
		slog.String("action", string(risk.Action)), slog.Bool("monitor_only", v.cfg.MonitorOnly)}
	if pass {
		attrs = append(attrs, slog.Bool("shadow", true))
	}
	switch {
	case risk.Band == BandDeny:
		events.Log(ctx, v.cfg.Logger, slog.LevelWarn, "attest: risk denied", append([]slog.Attr{slog.String("event", "risk_denied")}, attrs...)...)
		if !pass {
			v.cfg.ErrorHandler(w, r2, ErrRiskDenied)
			return
		}
	case risk.Band == BandStepUp:
		events.Log(ctx, v.cfg.Logger, slog.LevelWarn, "attest: risk step-up", append([]slog.Attr{slog.String("event", "risk_step_up")}, attrs...)...)
		if !pass {
			v.cfg.ErrorHandler(w, r2, ErrRiskStepUp)
			return
		}
	}
	if body != nil {
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
	}
	next.ServeHTTP(w, r2)
}

// Errors of the risk assessment, for Config.ErrorHandler.
var (
	// ErrVendor: a vendor (Google's API, the App Check key set, the SIM
	// swap check) could not be asked; an [*UnavailableError] says when it
	// will be asked again.
	ErrVendor = provider.ErrVendor
	// ErrStore: a store (keys, challenges, used tokens, history) did not
	// answer within Config.StoreTimeout.
	ErrStore = provider.ErrStore
	// ErrRiskStepUp: the request's risk is in the step-up band.
	ErrRiskStepUp = errors.New("attest: risk calls for a step-up")
	// ErrRiskDenied: the request's risk is in the deny band.
	ErrRiskDenied = errors.New("attest: risk denied")
)

// WriteError is the default Config.ErrorHandler. It answers with an
// RFC 9457 problem+json body: 413 for [ErrBodyTooLarge]; 503 with
// Retry-After for an outage; for [ErrRiskStepUp] 401 with an RFC 9470
// WWW-Authenticate challenge, and for [ErrRiskDenied] 403, each with the
// action of r's [Risk] and its reasons only under InsecureExposeReasons;
// 403 for any other error (a body that cannot be read).
func (v *Verifier) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		problem.Write(w, provider.ProbTooBig)
	case errors.Is(err, errOutage), errors.Is(err, ErrVendor), errors.Is(err, ErrStore):
		w.Header().Set("Retry-After", provider.RetryAfterHeader(err))
		problem.Write(w, provider.ProbAttestDown)
	case errors.Is(err, ErrRiskStepUp), errors.Is(err, ErrRiskDenied):
		risk, ok := RiskFrom(r.Context())
		if !ok {
			risk = &Risk{}
		}
		status := http.StatusForbidden
		if errors.Is(err, ErrRiskStepUp) {
			status = http.StatusUnauthorized
		}
		v.writeRisk(w, risk, status)
	default:
		v.writeRisk(w, &Risk{Reasons: []string{ReasonAttestationFailed}, Action: ActionReattest}, http.StatusForbidden)
	}
}

// writeRisk answers a step-up (401, RFC 9470) or a denial (403) with the
// action in a problem+json body, and the reasons only under
// InsecureExposeReasons.
func (v *Verifier) writeRisk(w http.ResponseWriter, risk *Risk, status int) {
	p := problem.Problem{
		Type: problem.TypeBase + "risk-step-up", Title: "Additional verification required", Status: status,
		Detail:     "This request needs a stronger proof of the app, the device or the user.",
		Extensions: map[string]any{"action": risk.Action},
	}
	if v.cfg.InsecureExposeReasons {
		p.Extensions["reasons"] = risk.Reasons
	}
	if status == http.StatusForbidden {
		p.Type, p.Title, p.Detail = problem.TypeBase+"risk-denied", "Request denied", "This request was refused for its risk."
	} else {
		params := []string{`error="insufficient_user_authentication"`}
		if len(v.cfg.StepUpACR) > 0 {
			params = append(params, `acr_values="`+strings.Join(v.cfg.StepUpACR, " ")+`"`)
		}
		if v.cfg.StepUpMaxAge > 0 {
			params = append(params, `max_age="`+strconv.Itoa(int(v.cfg.StepUpMaxAge/time.Second))+`"`)
		}
		w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
	}
	problem.Write(w, p)
}
