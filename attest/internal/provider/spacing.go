package provider

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"strings"
	"time"
)

// Spacing decides when a vendor may be called again, by the injected
// clock: Every after the start of a successful attempt, and after
// consecutive failures a back-off of Base·2^(n-1), capped at Limit, with
// ±20 % jitter so that instances that failed together do not retry
// together. Attempts that were under way together count as one: an
// outcome of an attempt that began before another outcome was recorded
// neither adds a failure nor clears them. It is not safe for concurrent
// use: its owner holds a lock.
type Spacing struct {
	Every, Base, Limit time.Duration
	Failures           int       // consecutive failures
	Next               time.Time // earliest next attempt
	outcomes           uint64    // recorded so far
}

// Begin returns the token of an attempt starting now, for its outcome.
func (s *Spacing) Begin() uint64 { return s.outcomes }

// Allowed reports whether an attempt may start at now.
func (s *Spacing) Allowed(now time.Time) bool { return !now.Before(s.Next) }

// Succeeded records the success of the attempt that began at start.
func (s *Spacing) Succeeded(attempt uint64, start time.Time) {
	if s.Failures > 0 && attempt != s.outcomes {
		return // it began before the last failure: it says nothing of now
	}
	s.outcomes++
	s.Failures, s.Next = 0, start.Add(s.Every)
}

// Failed records the failure of attempt, known at now.
func (s *Spacing) Failed(attempt uint64, now time.Time) {
	if s.Failures == 0 || attempt == s.outcomes {
		s.Failures++
	}
	s.outcomes++
	d := s.Base
	for i := 1; i < s.Failures && d < s.Limit; i++ {
		d *= 2
	}
	s.Next = now.Add(jitter(min(d, s.Limit)))
}

// RetryAfter is the time from now until the next attempt is allowed.
func (s *Spacing) RetryAfter(now time.Time) time.Duration { return s.Next.Sub(now) }

// jitter returns d scaled by a random factor in [0.8, 1.2).
func jitter(d time.Duration) time.Duration {
	var b [8]byte
	_, _ = rand.Read(b[:])
	f := 0.8 + 0.4*float64(binary.BigEndian.Uint64(b[:])>>11)/float64(1<<53)
	return time.Duration(float64(d) * f)
}

// CacheMaxAge reads max-age from a Cache-Control header; ok is false
// without one.
func CacheMaxAge(cc string) (time.Duration, bool) {
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
