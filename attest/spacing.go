package attest

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UnavailableError reports that a vendor cannot be asked now (its key set
// never loaded or is stale, its API failed and is backed off, or too many
// calls are under way), and how long until the verifier asks it again:
// Retry-After is what the server will actually do. It wraps [ErrVendor].
type UnavailableError struct {
	// RetryAfter is the time until the verifier will ask the vendor
	// again: at least one second.
	RetryAfter time.Duration
	// Err is the cause; it matches ErrVendor with errors.Is.
	Err error
}

// Error implements error.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.RetryAfter)
}

// Unwrap returns Err.
func (e *UnavailableError) Unwrap() error { return e.Err }

// unavailable wraps cause (nil: none known) in an UnavailableError that
// matches ErrVendor.
func unavailable(retry time.Duration, cause error) *UnavailableError {
	err := ErrVendor
	if cause != nil {
		err = fmt.Errorf("%w: %v", ErrVendor, cause)
	}
	return &UnavailableError{RetryAfter: max(retry, time.Second), Err: err}
}

// retryAfterHeader is the Retry-After of an error: an [UnavailableError]'s
// own, rounded up to whole seconds, or one second (a store is asked again
// by the next request).
func retryAfterHeader(err error) string {
	if ue, ok := errors.AsType[*UnavailableError](err); ok {
		return strconv.FormatInt(int64((ue.RetryAfter+time.Second-1)/time.Second), 10)
	}
	return "1"
}

// spacing decides when a vendor may be called again, by the injected
// clock: every after the start of a successful attempt, and after
// consecutive failures a back-off of base·2^(n-1), capped at limit, with
// ±20 % jitter so that instances that failed together do not retry
// together. Attempts that were under way together count as one: an
// outcome of an attempt that began before another outcome was recorded
// neither adds a failure nor clears them. It is not safe for concurrent
// use: its owner holds a lock.
type spacing struct {
	every, base, limit time.Duration
	failures           int
	outcomes           uint64    // recorded so far
	next               time.Time // earliest next attempt
}

// begin returns the token of an attempt starting now, for its outcome.
func (s *spacing) begin() uint64 { return s.outcomes }

func (s *spacing) allowed(now time.Time) bool { return !now.Before(s.next) }

func (s *spacing) succeeded(attempt uint64, start time.Time) {
	if s.failures > 0 && attempt != s.outcomes {
		return // it began before the last failure: it says nothing of now
	}
	s.outcomes++
	s.failures, s.next = 0, start.Add(s.every)
}

func (s *spacing) failed(attempt uint64, now time.Time) {
	if s.failures == 0 || attempt == s.outcomes {
		s.failures++
	}
	s.outcomes++
	d := s.base
	for i := 1; i < s.failures && d < s.limit; i++ {
		d *= 2
	}
	s.next = now.Add(jitter(min(d, s.limit)))
}

// retryAfter is the time from now until the next attempt is allowed.
func (s *spacing) retryAfter(now time.Time) time.Duration { return s.next.Sub(now) }

// jitter returns d scaled by a random factor in [0.8, 1.2).
func jitter(d time.Duration) time.Duration {
	var b [8]byte
	_, _ = rand.Read(b[:])
	f := 0.8 + 0.4*float64(binary.BigEndian.Uint64(b[:])>>11)/float64(1<<53)
	return time.Duration(float64(d) * f)
}

// cacheMaxAge reads max-age from a Cache-Control header; ok is false
// without one.
func cacheMaxAge(cc string) (time.Duration, bool) {
	for _, dir := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
		if strings.EqualFold(name, "max-age") {
			if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 && n < 1<<31 {
				return time.Duration(n) * time.Second, true
			}
		}
	}
	return 0, false
}
