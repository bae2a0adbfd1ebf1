package telemetry

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// DriftConfig configures baseline-drift detection. Per route, telemetry
// keeps an exponentially weighted baseline of the error rate (share of 5xx
// responses) and of the 95th-percentile latency, one value per window.
// When a window's live value exceeds Factor times its baseline, one
// event=baseline_drift record (reason error_rate or latency) is logged,
// at most once per Cooldown per route, so alerts can fire before users
// notice. A zero field takes the default in its comment.
type DriftConfig struct {
	// Disabled turns drift detection off. Default: false (on).
	Disabled bool
	// Window is the span of one live measurement. Default: 1 minute.
	Window time.Duration
	// MinRequests is the fewest requests that make a window count; quieter
	// windows are discarded. Default: 50.
	MinRequests int
	// Warmup is how many counted windows form a baseline before drift is
	// judged. Default: 5.
	Warmup int
	// Alpha is the weight of a new window in the baseline, in (0, 1].
	// Default: 0.2.
	Alpha float64
	// Factor is the multiple of the baseline that counts as drift, > 1.
	// Default: 3.
	Factor float64
	// ErrorRateFloor is the smallest baseline error rate used, so that a
	// route with no errors does not alert on its first one. Default: 0.01.
	ErrorRateFloor float64
	// LatencyFloor is the smallest baseline latency used. Default: 5ms.
	LatencyFloor time.Duration
	// Cooldown is the least time between two drift records of one route.
	// Default: 5 minutes.
	Cooldown time.Duration
}

// reservoirSize is the number of latencies sampled per window.
const reservoirSize = 128

type drift struct {
	cfg DriftConfig
}

type routeStats struct {
	mu        sync.Mutex
	start     time.Time
	n, errs   int
	samples   [reservoirSize]float64
	windows   int
	baseErr   float64
	baseP95   float64
	lastAlert time.Time
}

type driftEvent struct {
	reason         string
	live, baseline float64
}

func newDrift(cfg DriftConfig) (*drift, error) {
	if cfg.Disabled {
		return nil, nil
	}
	if cfg.Window < 0 || cfg.MinRequests < 0 || cfg.Warmup < 0 || cfg.Alpha < 0 || cfg.Alpha > 1 ||
		cfg.Factor < 0 || (cfg.Factor > 0 && cfg.Factor <= 1) || cfg.ErrorRateFloor < 0 ||
		cfg.LatencyFloor < 0 || cfg.Cooldown < 0 {
		return nil, errors.New("telemetry: Config.Drift has a negative or out-of-range field")
	}
	if cfg.Window == 0 {
		cfg.Window = time.Minute
	}
	if cfg.MinRequests == 0 {
		cfg.MinRequests = 50
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 5
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = 0.2
	}
	if cfg.Factor == 0 {
		cfg.Factor = 3
	}
	if cfg.ErrorRateFloor == 0 {
		cfg.ErrorRateFloor = 0.01
	}
	if cfg.LatencyFloor == 0 {
		cfg.LatencyFloor = 5 * time.Millisecond
	}
	if cfg.Cooldown == 0 {
		cfg.Cooldown = 5 * time.Minute
	}
	return &drift{cfg: cfg}, nil
}

// observe adds one request and, when it closes a window that drifted,
// returns the event to log.
func (d *drift) observe(rs *routeStats, status int, elapsed time.Duration, now time.Time) *driftEvent {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var ev *driftEvent
	if now.Sub(rs.start) >= d.cfg.Window {
		ev = d.closeWindow(rs, now)
	}
	if rs.n < reservoirSize {
		rs.samples[rs.n] = elapsed.Seconds()
	} else if j := rand.IntN(rs.n + 1); j < reservoirSize { // #nosec G404 -- reservoir sampling of latencies, not a secret
		rs.samples[j] = elapsed.Seconds()
	}
	rs.n++
	if status >= 500 {
		rs.errs++
	}
	return ev
}

// closeWindow judges and folds the current window into the baseline.
// Requires rs.mu held.
func (d *drift) closeWindow(rs *routeStats, now time.Time) *driftEvent {
	defer func() {
		rs.start, rs.n, rs.errs = now, 0, 0
	}()
	if rs.n < d.cfg.MinRequests {
		return nil
	}
	errRate := float64(rs.errs) / float64(rs.n)
	k := min(rs.n, reservoirSize)
	lat := slices.Clone(rs.samples[:k])
	slices.Sort(lat)
	p95 := lat[min(k-1, int(float64(k)*0.95))]

	var ev *driftEvent
	if rs.windows >= d.cfg.Warmup && now.Sub(rs.lastAlert) >= d.cfg.Cooldown {
		if base := max(rs.baseErr, d.cfg.ErrorRateFloor); errRate > d.cfg.Factor*base {
			ev = &driftEvent{reason: "error_rate", live: errRate, baseline: rs.baseErr}
		} else if base := max(rs.baseP95, d.cfg.LatencyFloor.Seconds()); p95 > d.cfg.Factor*base {
			ev = &driftEvent{reason: "latency", live: p95, baseline: rs.baseP95}
		}
		if ev != nil {
			rs.lastAlert = now
		}
	}
	if rs.windows == 0 {
		rs.baseErr, rs.baseP95 = errRate, p95
	} else {
		a := d.cfg.Alpha
		rs.baseErr = a*errRate + (1-a)*rs.baseErr
		rs.baseP95 = a*p95 + (1-a)*rs.baseP95
	}
	rs.windows++
	return ev
}
