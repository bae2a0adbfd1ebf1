package auth

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ready reports whether every issuer's key set is loaded and fresh, so
// that tokens signed with its keys verify rather than get 503. Fresh means
// fetched within Config.MaxKeyStaleness, the window in which the last good
// keys serve; static key sets are always fresh.
//
// When a key set is not loaded or past that window, Ready asks for a fetch
// as a request would: it joins the fetch under way, or starts one if the
// refresh schedule allows it now, else the background loop makes it when
// the schedule does. Probes never add fetches: there is at most one in
// flight per key set, whoever asks. Ready waits for that fetch until it
// ends (within Config.FetchTimeout) or ctx is done, whichever is first.
//
// It returns nil, or for each issuer that is not ready an
// *[UnavailableError] (matching [ErrKeysUnavailable]) that names the
// issuer and the cause, for example
//
//	auth: signing keys unavailable: key set of https://login.example.com/ not loaded: GET https://login.example.com/jwks returned 404
//
// several joined with [errors.Join]. An issuer with an [Introspection]
// endpoint is ready once a call got an answer, until calls have failed
// for longer than Introspection.CacheTTL: Ready probes it (a random
// token; any answer will do) when no call has got one yet, or when calls
// fail and the back-off allows the next, waiting for that probe at most
// Introspection.Timeout; WaitReady retries at the back-off's end. A
// failed refresh of keys still within
// MaxKeyStaleness does not make Ready fail: the Verifier still serves, and
// a readiness probe that took every instance out of service when the
// issuer blinked would turn its outage into yours. Watch
// [Verifier.KeySetAge] for that. Ready can be called concurrently with
// request handling.
func (v *Verifier) Ready(ctx context.Context) error {
	now := v.now()
	var waits []chan struct{}
	for _, is := range v.cfg.Issuers {
		ik := v.issuers[is.Issuer]
		if !ik.remote || ik.fresh(now) {
			continue
		}
		if ch := ik.need(now); ch != nil {
			waits = append(waits, ch)
		}
	}
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
	now = v.now()
	var errs []error
	for _, is := range v.cfg.Issuers {
		if err := v.issuers[is.Issuer].readyErr(now); err != nil {
			errs = append(errs, err)
		}
	}
	if v.intro != nil {
		if err := v.intro.ready(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// WaitReady waits until [Verifier.Ready] returns nil, or ctx is done, or
// the Verifier is closed. Call it once at start-up with a deadline, so
// that a JWKS URL that answers 404 stops the service before it takes
// traffic instead of answering every request 503:
//
//	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	defer cancel()
//	if err := v.WaitReady(ctx); err != nil {
//		log.Fatal(err) // names the issuer and why its keys did not load
//	}
//
// It makes no fetch of its own: it waits for those the refresh schedule
// makes (the first at once, then 1s, 2s, 4s ... after failures). On
// failure it returns Ready's last error together with ctx's (errors.Is
// matches both).
func (v *Verifier) WaitReady(ctx context.Context) error {
	for {
		v.endMu.Lock()
		ended := v.fetchEnd
		v.endMu.Unlock()
		err := v.Ready(ctx)
		if err == nil {
			return nil
		}
		var retry <-chan time.Time // the next introspection probe's time
		if v.intro != nil {
			if at := v.intro.retryAt(); !at.IsZero() {
				retry = time.After(max(at.Sub(v.now()), time.Millisecond))
			}
		}
		select {
		case <-ended:
		case <-retry:
		case <-ctx.Done():
			return fmt.Errorf("%w (stopped waiting: %w)", err, context.Cause(ctx))
		case <-v.ctx.Done():
			return fmt.Errorf("%w (verifier closed)", err)
		}
	}
}

// KeySetAge summarises the remote key sets of all issuers, for gauges
// and alerts: age is the time since the start of the last successful
// fetch of the oldest key set (by Config.Now; zero when none is loaded),
// loaded is false while any key set has never loaded, and lastErr is the
// most recent failed fetch's error, naming its issuer, of any key set
// whose last fetch failed (nil once a fetch succeeded). Static key sets
// count as loaded and of age zero. It never fetches and never blocks on
// a fetch.
func (v *Verifier) KeySetAge() (age time.Duration, loaded bool, lastErr error) {
	now := v.now()
	loaded = true
	var errAt time.Time
	for _, is := range v.cfg.Issuers {
		ik := v.issuers[is.Issuer]
		if !ik.remote {
			continue
		}
		if set := ik.cur.Load(); set == nil {
			loaded = false
		} else {
			age = max(age, now.Sub(set.fetched))
		}
		ik.mu.Lock()
		err, at := ik.lastErr, ik.lastErrAt
		ik.mu.Unlock()
		if err != nil && (lastErr == nil || at.After(errAt)) {
			lastErr, errAt = fmt.Errorf("auth: key set of %s: %w", is.Issuer, err), at
		}
	}
	return age, loaded, lastErr
}

// fetchEnded wakes the WaitReady callers after a fetch ended.
func (v *Verifier) fetchEnded() {
	v.endMu.Lock()
	defer v.endMu.Unlock()
	close(v.fetchEnd)
	v.fetchEnd = make(chan struct{})
}

// fresh reports whether the key set can verify tokens at now: loaded, and
// fetched within MaxKeyStaleness.
func (ik *issuerKeys) fresh(now time.Time) bool {
	set := ik.cur.Load()
	return set != nil && now.Sub(set.fetched) <= ik.v.cfg.MaxKeyStaleness
}

// readyErr returns nil when the key set is fresh at now, else why not.
func (ik *issuerKeys) readyErr(now time.Time) error {
	if !ik.remote || ik.fresh(now) {
		return nil
	}
	set := ik.cur.Load()
	ik.mu.Lock()
	defer ik.mu.Unlock()
	retry := time.Second
	if ik.inflight == nil {
		retry = max(retry, ik.nextAllowed.Sub(now))
	}
	iss, cfg := ik.issuer.Issuer, &ik.v.cfg
	var err error
	switch {
	case set == nil && ik.lastErr != nil:
		err = fmt.Errorf("key set of %s not loaded: %w", iss, ik.lastErr)
	case set == nil:
		err = fmt.Errorf("key set of %s not loaded: no fetch of %s has ended yet", iss, ik.keySource())
	case ik.lastErr != nil:
		err = fmt.Errorf("key set of %s is stale: fetched %s ago, over Config.MaxKeyStaleness (%s): %w",
			iss, now.Sub(set.fetched), cfg.MaxKeyStaleness, ik.lastErr)
	default:
		err = fmt.Errorf("key set of %s is stale: fetched %s ago, over Config.MaxKeyStaleness (%s); refresh pending",
			iss, now.Sub(set.fetched), cfg.MaxKeyStaleness)
	}
	return &UnavailableError{RetryAfter: retry, Err: err}
}
