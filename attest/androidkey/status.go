package androidkey

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/events"
)

// Status list bounds that are not configurable.
const (
	statusDefaultMaxAge = time.Hour      // refetch without a Cache-Control max-age
	statusMaxMaxAge     = 24 * time.Hour // a max-age is clamped to [MinRefresh, this]
	maxStatusBytes      = 16 << 20
	maxStatusEntries    = 1 << 20
	maxSerialHex        = 64 // a serial is at most 20 octets (RFC 5280); some CAs overrun
)

// statusList is one loaded revocation status list: the serials (lower-
// case hex, no leading zeros) that must not be trusted, with their status.
type statusList struct {
	entries map[string]string
	loaded  time.Time
	maxAge  time.Duration
}

// parseStatusList reads Google's attestation status list:
// {"entries": {"<serial, lower-case hex>": {"status": "REVOKED" |
// "SUSPENDED", "reason": …, "expires": …, "comment": …}}}. Keys are hex
// even when every character is a digit: they are never read as decimal.
// Any listed serial is untrusted, whatever its status says (both
// documented ones mean "do not trust"); a key that is not hex refuses the
// whole list, so that a garbled list never drops a revocation silently.
func parseStatusList(b []byte) (map[string]string, error) {
	if len(b) > maxStatusBytes {
		return nil, fmt.Errorf("status list over %d bytes", maxStatusBytes)
	}
	var doc struct {
		Entries map[string]struct {
			Status string `json:"status"`
		} `json:"entries"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("status list: %w", err)
	}
	if doc.Entries == nil {
		return nil, errors.New("status list: no entries object")
	}
	if len(doc.Entries) > maxStatusEntries {
		return nil, fmt.Errorf("status list of %d entries", len(doc.Entries))
	}
	out := make(map[string]string, len(doc.Entries))
	for k, e := range doc.Entries {
		s, ok := serialKey(k)
		if !ok {
			return nil, fmt.Errorf("status list: serial %.80q is not hex", k)
		}
		out[s] = e.Status
	}
	return out, nil
}

// serialKey normalises a hex serial: lower case, no leading zeros.
func serialKey(s string) (string, bool) {
	if s == "" || len(s) > maxSerialHex {
		return "", false
	}
	s = strings.ToLower(s)
	if strings.Trim(s, "0123456789abcdef") != "" {
		return "", false
	}
	if t := strings.TrimLeft(s, "0"); t != "" {
		return t, true
	}
	return "0", true
}

// certSerial is c's serial as the list spells it.
func certSerial(c *x509.Certificate) string {
	return c.SerialNumber.Text(16)
}

// checkRevocation refuses certs (the chain and its root) when one is on
// the list; without a usable list, Config.InsecureAcceptUncheckedRevocation
// decides.
func (v *Verifier) checkRevocation(ctx context.Context, certs []*x509.Certificate, k *Key) error {
	l, err := v.status.list(ctx, v.cfg.MaxWait)
	if err != nil {
		if !v.cfg.InsecureAcceptUncheckedRevocation {
			return err
		}
		k.Signals = append(k.Signals, SignalRevocationUnchecked)
		events.Log(ctx, v.cfg.Logger, slog.LevelWarn, "attest: android key accepted without a revocation check",
			slog.String("event", "android_key_revocation_unchecked"), slog.String("reason", "status_list_unavailable"))
		return nil
	}
	for i, c := range certs {
		if c == nil {
			continue
		}
		if st, ok := l.entries[certSerial(c)]; ok {
			return fmt.Errorf("%w: certificate %d (serial %s) is %s", ErrRevoked, i, certSerial(c), st)
		}
	}
	return nil
}

// statusLists holds the current list and fetches the next one: one fetch
// at a time, spaced by provider.Spacing, under the verifier's lifetime.
type statusLists struct {
	cfg *Config
	cur atomic.Pointer[statusList]
	ctx context.Context // ends at close: bounds fetches
	wg  sync.WaitGroup

	mu       sync.Mutex
	cancel   context.CancelFunc
	closed   bool
	inflight chan struct{} // closed when the running fetch ends
	lastErr  error
	space    provider.Spacing
}

func newStatusLists(cfg *Config) *statusLists {
	ctx, cancel := context.WithCancel(context.Background())
	return &statusLists{cfg: cfg, ctx: ctx, cancel: cancel,
		space: provider.Spacing{Every: cfg.MinRefresh, Base: cfg.MinRefresh, Limit: 16 * cfg.MinRefresh}}
}

// set installs a list the application supplies.
func (s *statusLists) set(b []byte) error {
	entries, err := parseStatusList(b)
	if err != nil {
		return err
	}
	s.cur.Store(&statusList{entries: entries, loaded: s.cfg.Now(), maxAge: statusMaxMaxAge})
	return nil
}

// usable returns the current list unless it is missing or too stale.
func (s *statusLists) usable(now time.Time) *statusList {
	l := s.cur.Load()
	if l == nil || now.Sub(l.loaded) > s.cfg.StatusMaxStale {
		return nil
	}
	return l
}

// list returns a usable list. A list past its max-age is refreshed in
// the background; without a usable one, a fetch is started when the
// spacing allows and waited on for at most wait (0: until ctx ends).
func (s *statusLists) list(ctx context.Context, wait time.Duration) (*statusList, error) {
	now := s.cfg.Now()
	if l := s.usable(now); l != nil {
		if now.Sub(l.loaded) >= l.maxAge {
			s.start(now)
		}
		return l, nil
	}
	if ch := s.start(now); ch != nil {
		var timeout <-chan time.Time
		if wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-timeout:
		case <-ctx.Done():
		}
	}
	now = s.cfg.Now()
	if l := s.usable(now); l != nil {
		return l, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	retry := s.space.RetryAfter(now)
	if s.inflight != nil {
		retry = time.Second
	}
	cause := errors.New("revocation status list not loaded")
	if s.cur.Load() != nil {
		cause = errors.New("revocation status list stale")
	}
	if s.lastErr != nil {
		cause = fmt.Errorf("%w: %w", cause, s.lastErr)
	}
	return nil, provider.Unavailable(retry, cause)
}

// age is KeySetAge.
func (s *statusLists) age() (time.Duration, bool, error) {
	l := s.cur.Load()
	s.mu.Lock()
	lastErr := s.lastErr
	s.mu.Unlock()
	if l == nil {
		return 0, false, lastErr
	}
	return s.cfg.Now().Sub(l.loaded), true, lastErr
}

// start starts a fetch unless there is no URL, one is under way (whose
// channel it returns) or the spacing forbids one now (nil).
func (s *statusLists) start(now time.Time) chan struct{} {
	if s.cfg.StatusListURL == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight
	}
	if s.closed || !s.space.Allowed(now) {
		return nil
	}
	ch := make(chan struct{})
	s.inflight = ch
	attempt := s.space.Begin()
	s.space.Next = now.Add(s.cfg.MinRefresh) // until the outcome decides
	s.wg.Add(1)
	go s.fetch(ch, attempt, now)
	return ch
}

// fetch runs one fetch under the verifier's lifetime, not a request's: a
// client that hangs up does not cancel it for the others.
func (s *statusLists) fetch(done chan struct{}, attempt uint64, start time.Time) {
	defer s.wg.Done()
	l, err := s.download()
	now := s.cfg.Now()
	s.mu.Lock()
	s.lastErr = err
	if err == nil {
		l.loaded = now
		s.cur.Store(l)
		s.space.Succeeded(attempt, start)
	} else {
		s.space.Failed(attempt, now)
	}
	retry := s.space.RetryAfter(now)
	s.inflight = nil
	close(done)
	s.mu.Unlock()
	if err != nil {
		events.Log(s.ctx, s.cfg.Logger, slog.LevelWarn, "attest: android key status list fetch failed",
			slog.String("event", "android_key_status_error"), slog.String("reason", "fetch"),
			slog.String("error", err.Error()), slog.Duration("retry_in", retry))
		return
	}
	events.Log(s.ctx, s.cfg.Logger, slog.LevelInfo, "attest: android key status list loaded",
		slog.String("event", "android_key_status_refresh"), slog.String("reason", "loaded"), slog.Int("entries", len(l.entries)))
}

func (s *statusLists) download() (*statusList, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.StatusListURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch status list: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("fetch status list: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch status list: %w", err)
	}
	entries, err := parseStatusList(body)
	if err != nil {
		return nil, err
	}
	l := &statusList{entries: entries, maxAge: statusDefaultMaxAge}
	if d, ok := provider.CacheMaxAge(resp.Header.Get("Cache-Control")); ok {
		l.maxAge = min(max(d, s.cfg.MinRefresh), statusMaxMaxAge)
	}
	return l, nil
}

func (s *statusLists) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}
