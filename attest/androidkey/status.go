package androidkey

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	l, err := v.statusList(ctx, v.cfg.MaxWait)
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
		if st, ok := l[certSerial(c)]; ok {
			return fmt.Errorf("%w: certificate %d (serial %s) is %s", ErrRevoked, i, certSerial(c), st)
		}
	}
	return nil
}

// newStatusLists holds the current list (serials, lower-case hex without
// leading zeros, to their status) and fetches the next one from
// cfg.StatusListURL: one fetch at a time, spaced by MinRefresh and backed
// off after failures, under the verifier's lifetime.
func newStatusLists(cfg *Config) *provider.Fetcher[map[string]string] {
	return provider.NewFetcher(provider.FetchConfig[map[string]string]{
		Name: "revocation status list", Message: "android key status list", Event: "android_key_status", Fetch: "fetch status list",
		URL: cfg.StatusListURL, Client: cfg.HTTPClient, MaxBytes: maxStatusBytes, Parse: parseStatusList,
		Size:          func(l map[string]string) slog.Attr { return slog.Int("entries", len(l)) },
		DefaultMaxAge: statusDefaultMaxAge, MaxMaxAge: statusMaxMaxAge,
		MinRefresh: cfg.MinRefresh, FetchTimeout: cfg.FetchTimeout, MaxStale: cfg.StatusMaxStale,
		Now: func() time.Time { return cfg.Now() }, Logger: cfg.Logger, // the verifier's clock, read at each call
	})
}

// setStatusList installs a list the application supplies.
func (v *Verifier) setStatusList(b []byte) error {
	entries, err := parseStatusList(b)
	if err != nil {
		return err
	}
	v.status.Set(entries, statusMaxMaxAge)
	return nil
}

// statusList returns a usable list. A list past its max-age is refreshed
// in the background; without a usable one, a fetch is started when the
// spacing allows and waited on for at most wait (0: until ctx ends).
func (v *Verifier) statusList(ctx context.Context, wait time.Duration) (map[string]string, error) {
	now := v.cfg.Now()
	if l := v.status.Current(now); l != nil {
		return l.Value, nil
	}
	v.status.Await(ctx, now, wait)
	now = v.cfg.Now()
	if l := v.status.Current(now); l != nil {
		return l.Value, nil
	}
	return nil, v.status.Unavailable(now, v.status.Missing())
}
