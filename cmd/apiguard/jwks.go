package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// maxDocument caps a fetched JWKS or discovery document, as auth's
// MaxJWKSSize does by default.
const maxDocument = 512 << 10

func (c *cli) jwksCheck(args []string) int {
	fs := newFlags("jwks check", "URL [flags]", `
Fetch a JWKS and list each key (kid, kty, alg, use, size) and the cache
headers; then load it the way auth does, through an auth.Verifier with
this JWKSURL, and say which keys auth would accept and why it skips the
others. Exit code 1 when auth would accept none.`)
	algs := fs.String("alg", "", "the issuer's allowed algorithms, comma-separated (default: auth's: RS256, PS256, ES256, EdDSA)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the fetches")
	if ok, code := c.parse(fs, args, 1); !ok {
		return code
	}
	if err := checkFetchURL(fs.pos); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	var allowed []jwa.SignatureAlgorithm
	for _, a := range splitList(*algs) {
		allowed = append(allowed, jwa.SignatureAlgorithm(a))
	}
	return c.checkJWKS(fs.path, "apiguard-jwks-check", fs.pos, allowed, *timeout, false)
}

// checkFetchURL is auth's rule for a JWKS URL: https, or http on loopback.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return fmt.Errorf("%s: auth fetches https URLs only (http only on loopback)", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fetch GETs raw, at most maxDocument bytes, and returns the body and the
// response headers; a status other than 200 is an error.
func (c *cli) fetch(ctx context.Context, raw, accept string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", raw, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s", raw, resp.Status)
	}
	if len(body) > maxDocument {
		return nil, nil, fmt.Errorf("GET %s: larger than %d bytes", raw, maxDocument)
	}
	return body, resp.Header, nil
}

// fetchTimeout is fetch bounded by timeout.
func (c *cli) fetchTimeout(raw string, timeout time.Duration) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	return c.fetch(ctx, raw, "application/json")
}

// skipped is a jwks_key_skipped event of auth.
type skipped struct{ kid, err string }

// skipRecorder is a slog.Handler that keeps auth's jwks_key_skipped
// events and the text of jwks_error events; failed is closed at the first
// jwks_error, so that the check need not wait for auth's retries.
type skipRecorder struct {
	mu     sync.Mutex
	skips  []skipped
	errors []string
	failed chan struct{}
}

func (h *skipRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *skipRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *skipRecorder) WithGroup(string) slog.Handler            { return h }

func (h *skipRecorder) Handle(_ context.Context, r slog.Record) error {
	var event, kid, msg string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "event":
			event = a.Value.String()
		case "kid":
			kid = a.Value.String()
		case "error":
			msg = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	switch event {
	case "jwks_key_skipped":
		h.skips = append(h.skips, skipped{kid: kid, err: msg})
	case "jwks_error":
		h.errors = append(h.errors, msg)
		if len(h.errors) == 1 {
			close(h.failed)
		}
	}
	return nil
}

// checkJWKS is jwks check: the listing from its own fetch, then the
// verdict of an auth.Verifier with issuer iss and this JWKS URL or, with
// discover, with the issuer alone, so that auth discovers the URL.
func (c *cli) checkJWKS(path, iss, jwksURL string, allowed []jwa.SignatureAlgorithm, timeout time.Duration, discover bool) int {
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	body, hdr, err := c.fetch(ctx, jwksURL, "application/jwk-set+json, application/json")
	if err != nil {
		return c.fail(path, err)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return c.fail(path, fmt.Errorf("%s: not a JWKS: %w", jwksURL, err))
	}
	fmt.Fprintf(c.stdout, "JWKS %s\n", oneLine(jwksURL))
	fmt.Fprintf(c.stdout, "  Content-Type:  %s\n", orNone(hdr.Get("Content-Type")))
	fmt.Fprintf(c.stdout, "  Cache-Control: %s\n", orNone(hdr.Get("Cache-Control")))
	fmt.Fprintf(c.stdout, "  refresh:       %s\n", refreshNote(hdr.Get("Cache-Control")))
	fmt.Fprintf(c.stdout, "  keys:          %d\n\n", len(doc.Keys))

	// auth's verdict: a Verifier on this URL, its skip events captured.
	rec := &skipRecorder{failed: make(chan struct{})}
	cfg := auth.Config{
		Issuers: []auth.Issuer{{Issuer: iss, Audience: []string{"apiguard-cli"}, JWKSURL: jwksURL, Algorithms: allowed}},
		Logger:  slog.New(rec),
	}
	if discover {
		cfg.Issuers[0].JWKSURL = ""
	}
	v, err := auth.New(cfg)
	if err != nil {
		return c.fail(path, err)
	}
	// Wait for the first fetch to load the set, or to fail: auth would
	// retry with back-off, which a check need not watch.
	waitCtx, stopWait := context.WithCancel(ctx)
	go func() {
		select {
		case <-rec.failed:
			stopWait()
		case <-waitCtx.Done():
		}
	}()
	readyErr := v.WaitReady(waitCtx)
	stopWait()
	if readyErr != nil {
		if err := v.Ready(context.Background()); err != nil {
			readyErr = err
		}
	}
	_ = v.Close()

	rec.mu.Lock()
	skips := slices.Clone(rec.skips)
	rec.mu.Unlock()
	accepted := 0
	tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  KID\tKTY\tALG\tUSE\tSIZE\tAUTH")
	for _, raw := range doc.Keys {
		k, err := jwk.ParseKey(raw)
		if err != nil {
			// auth logs a key that does not parse with an empty kid.
			if i := slices.IndexFunc(skips, func(s skipped) bool { return s.kid == "" }); i >= 0 {
				skips = slices.Delete(skips, i, i+1)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", "-", rawField(raw, "kty"), rawField(raw, "alg"), rawField(raw, "use"), "-",
				"skipped: does not parse: "+oneLine(err.Error()))
			continue
		}
		verdict := "accepted"
		if readyErr != nil && len(skips) == 0 {
			verdict = "not loaded (see below)"
		}
		// auth logs the keys it skips in the order of the set: the first
		// remaining skip with this kid is this key's.
		if i := slices.IndexFunc(skips, func(s skipped) bool { return s.kid == k.KeyID() }); i >= 0 {
			verdict = "skipped: " + oneLine(skips[i].err)
			skips = slices.Delete(skips, i, i+1)
		} else if readyErr == nil {
			accepted++
		}
		alg := "-"
		if a := k.Algorithm(); a != nil && a.String() != "" {
			alg = oneLine(a.String()) // jwx keeps an unknown alg as the server sent it
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", orDash(k.KeyID()), k.KeyType(), alg, orDash(k.KeyUsage()), keySize(k), verdict)
	}
	_ = tw.Flush()
	fmt.Fprintln(c.stdout)
	if readyErr != nil {
		fmt.Fprintf(c.stdout, "auth would accept no token signed with this set: %s\n", oneLine(readyErr.Error()))
		return exitFailure
	}
	fmt.Fprintf(c.stdout, "auth would accept %d of %d keys (allowed algorithms: %s)\n", accepted, len(doc.Keys), algList(allowed))
	return exitOK
}

func algList(allowed []jwa.SignatureAlgorithm) string {
	if len(allowed) == 0 {
		return "auth's default RS256, PS256, ES256, EdDSA"
	}
	s := make([]string, len(allowed))
	for i, a := range allowed {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// refreshNote says how auth schedules refreshes for this Cache-Control.
func refreshNote(cc string) string {
	for _, dir := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
		if strings.EqualFold(name, "max-age") {
			d, err := time.ParseDuration(strings.Trim(val, `"`) + "s")
			if err != nil || d < 0 {
				return "max-age unreadable: auth refreshes every MaxKeyRefresh (1h by default)"
			}
			return fmt.Sprintf("max-age %s: auth refreshes after that, clamped to [MinKeyRefresh, MaxKeyRefresh] (1m to 1h by default)", d)
		}
	}
	return "no max-age: auth refreshes every MaxKeyRefresh (1h by default)"
}

// keySize is the key's size: RSA modulus bits, the curve, or Ed25519.
func keySize(k jwk.Key) string {
	var raw any
	if err := k.Raw(&raw); err != nil {
		return "-"
	}
	switch r := raw.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("%d bits", r.N.BitLen())
	case *rsa.PrivateKey:
		return fmt.Sprintf("%d bits (PRIVATE KEY PUBLISHED)", r.N.BitLen())
	case *ecdsa.PublicKey:
		return r.Curve.Params().Name
	case *ecdsa.PrivateKey:
		return r.Curve.Params().Name + " (PRIVATE KEY PUBLISHED)"
	case ed25519.PublicKey:
		return "Ed25519"
	case ed25519.PrivateKey:
		return "Ed25519 (PRIVATE KEY PUBLISHED)"
	case []byte:
		return fmt.Sprintf("%d bits (symmetric)", 8*len(r))
	}
	return "-"
}

// rawField reads a string member of a key that does not parse.
func rawField(raw json.RawMessage, name string) string {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return "-"
	}
	if s, ok := m[name].(string); ok && s != "" && len(s) < 64 {
		return oneLine(s)
	}
	return "-"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return oneLine(s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// oneLine keeps text from a fetched document on one line and out of the
// terminal's control: C0 and C1 controls (escape sequences) become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
