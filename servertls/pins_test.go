package servertls

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPinMatch(t *testing.T) {
	p := newPKI(t)
	leafKey, backupKey, otherKey := newKey(t), newKey(t), newKey(t)
	chainOf := func(k *ecdsa.PrivateKey) []*x509.Certificate {
		chain, _ := p.leaf(t, k, "l")
		return parseChain(t, chain)
	}
	leafPins := PinSet{Version: 1, Current: []string{pinOf(t, leafKey)}, Backup: []string{pinOf(t, backupKey)}}
	interPins := PinSet{Version: 1, Current: []string{SPKIPin(p.inter)}, Backup: []string{pinOf(t, backupKey)}}
	tests := []struct {
		name  string
		pins  PinSet
		chain []*x509.Certificate
		want  PinMatch
	}{
		{name: "leaf_pinned", pins: leafPins, chain: chainOf(leafKey), want: PinMatchCurrent},
		{name: "intermediate_pinned", pins: interPins, chain: chainOf(otherKey), want: PinMatchCurrent},
		{name: "backup_only", pins: leafPins, chain: chainOf(backupKey), want: PinMatchBackup},
		{name: "rotated_to_unpinned_key", pins: leafPins, chain: chainOf(otherKey), want: PinMatchNone},
		{name: "no_pins_configured", pins: PinSet{}, chain: chainOf(otherKey), want: PinMatchCurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.pins.Match(tt.chain))
		})
	}
}

func parseChain(t *testing.T, chainPEM []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for len(chainPEM) > 0 {
		var b *pem.Block
		b, chainPEM = pem.Decode(chainPEM)
		if b == nil {
			break
		}
		x, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		out = append(out, x)
	}
	return out
}

func TestNewRefusesUnpinnedChain(t *testing.T) {
	p := newPKI(t)
	chain, key := p.leaf(t, newKey(t), "localhost")
	cf, kf := writePair(t, t.TempDir(), chain, key)
	_, err := New(Config{CertFile: cf, KeyFile: kf, Pins: PinSet{Version: 1, Current: []string{pinOf(t, newKey(t))}, Backup: []string{pinOf(t, newKey(t))}}})
	require.ErrorIs(t, err, ErrPinMismatch)
}

func TestNewBackupOnlyChainServedWithWarning(t *testing.T) {
	key := newKey(t)
	p := newPKI(t)
	chain, keyPEM := p.leaf(t, key, "localhost")
	cf, kf := writePair(t, t.TempDir(), chain, keyPEM)
	logs := newRecords()
	g, err := New(Config{CertFile: cf, KeyFile: kf, Logger: slog.New(logs),
		Pins: PinSet{Version: 1, Current: []string{pinOf(t, newKey(t))}, Backup: []string{pinOf(t, key)}}})
	require.NoError(t, err)
	defer g.Close()
	require.Equal(t, []string{"pin_backup_in_use"}, logs.events())
}

func TestReloadUnpinnedChain(t *testing.T) {
	tests := []struct {
		name       string
		serveNew   bool
		wantServed string // "old" or "new"
	}{
		{name: "rotated_to_unpinned_key_old_kept", serveNew: false, wantServed: "old"},
		{name: "rotated_to_unpinned_key_served_by_policy", serveNew: true, wantServed: "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.ServeUnpinnedOnReload = tt.serveNew })
			// Pin the env's chain via its intermediate, then rotate to another CA.
			require.NoError(t, e.g.SetPins(PinSet{Version: 1, Current: []string{SPKIPin(e.pki.inter)}, Backup: []string{pinOf(t, newKey(t))}}))
			old := e.servedPin(t)
			k := newKey(t)
			chain, key := newPKI(t).leaf(t, k, "localhost")
			e.replace(t, chain, key)
			err := e.g.Reload()
			r := e.logs.next(t, "pin_mismatch")
			require.Equal(t, "ERROR", r.Level.String())
			require.Equal(t, map[string]int64{"result=pin_mismatch": 1, "result=changed": boolInt(tt.serveNew)}, nonZero(counts(t, e.reader, MetricCertificateReloads)))
			if tt.wantServed == "old" {
				require.ErrorIs(t, err, ErrPinMismatch)
				require.Equal(t, old, e.servedPin(t))
				require.Equal(t, "true", attr(r, "old_certificate_kept"))
			} else {
				require.NoError(t, err)
				require.Equal(t, pinOf(t, k), e.servedPin(t))
			}
		})
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{"result=changed": 0}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestPinRotationCurrentToBackup walks a key rotation the way an operator
// does it: serve the backup key (apps still connect), then publish a new
// set whose current is the old backup, with a fresh backup.
func TestPinRotationCurrentToBackup(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	backupKey, nextBackup := newKey(t), newKey(t)
	currentKey := newKey(t)
	p := newPKI(t)
	chain, key := p.leaf(t, currentKey, "localhost")
	dir := t.TempDir()
	cf, kf := writePair(t, dir, chain, key)
	clk := newClock()
	logs := newRecords()
	g, err := New(Config{CertFile: cf, KeyFile: kf, Now: clk.Now, Logger: slog.New(logs),
		PinSigningKey: priv, PinSigningKeyID: "pins-2026",
		Pins: PinSet{Version: 1, Current: []string{pinOf(t, currentKey)}, Backup: []string{pinOf(t, backupKey)}}})
	require.NoError(t, err)
	defer g.Close()

	doc := fetchDoc(t, g)
	d, err := VerifyPinDocument(doc, pub, clk.Now(), 1)
	require.NoError(t, err)
	require.Equal(t, PinSet{Version: 1, Current: []string{pinOf(t, currentKey)}, Backup: []string{pinOf(t, backupKey)}}, d.Pins)

	// Step 1: the backup key goes into service; the apps still connect.
	chain, key = p.leaf(t, backupKey, "localhost")
	writePair(t, dir, chain, key)
	require.NoError(t, g.Reload())
	require.Contains(t, logs.events(), "pin_backup_in_use")
	require.NotContains(t, logs.events(), "pin_mismatch")

	// Step 2: publish the next set; a set the chain misses, or an old version, is refused.
	require.ErrorIs(t, g.SetPins(PinSet{Version: 2, Current: []string{pinOf(t, nextBackup)}, Backup: []string{pinOf(t, newKey(t))}}), ErrPinMismatch)
	require.ErrorContains(t, g.SetPins(PinSet{Version: 1, Current: []string{pinOf(t, backupKey)}, Backup: []string{pinOf(t, nextBackup)}}), "must be above")
	next := PinSet{Version: 2, Current: []string{pinOf(t, backupKey)}, Backup: []string{pinOf(t, nextBackup)}}
	require.NoError(t, g.SetPins(next))
	d, err = VerifyPinDocument(fetchDoc(t, g), pub, clk.Now(), 1)
	require.NoError(t, err)
	require.Equal(t, next, d.Pins)
	require.Equal(t, clk.Now().Unix(), d.IssuedAt)
	require.Equal(t, clk.Now().Add(7*24*time.Hour).Unix(), d.Expiry)
}

func fetchDoc(t *testing.T, g *Guard) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	g.PinHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/apiguard-pins", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "application/jose", rec.Header().Get("Content-Type"))
	b, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return b
}

func TestPinDocumentTampered(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	e := newPinnedEnv(t, func(c *Config) { c.PinSigningKey = priv })
	doc := fetchDoc(t, e.g)
	_, err = VerifyPinDocument(doc, pub, e.clock.Now(), 1)
	require.NoError(t, err)

	parts := strings.Split(string(doc), ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	swapped := strings.Replace(string(payload), SPKIPin(e.pki.inter), pinOf(t, newKey(t)), 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(swapped)) + "." + parts[2]
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"apiguard-pins+jwt"}`)) + "." + parts[1] + "."

	tests := []struct {
		name string
		doc  string
		key  any
		at   time.Time
	}{
		{name: "pin_swapped_in_payload", doc: tampered, key: pub, at: e.clock.Now()},
		{name: "alg_none", doc: noneAlg, key: pub, at: e.clock.Now()},
		{name: "signed_by_another_key", doc: string(doc), key: otherPub, at: e.clock.Now()},
		{name: "expired_document_replayed", doc: string(doc), key: pub, at: e.clock.Now().Add(8 * 24 * time.Hour)},
		{name: "truncated", doc: string(doc[:len(doc)-10]), key: pub, at: e.clock.Now()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyPinDocument([]byte(tt.doc), tt.key, tt.at, 1)
			require.ErrorIs(t, err, ErrPinDocument)
		})
	}
}

func TestPinDocumentSignedOncePerHalfTTL(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	e := newPinnedEnv(t, func(c *Config) { c.PinSigningKey = priv; c.PinDocumentTTL = 2 * time.Hour })
	a, err := e.g.PinDocument()
	require.NoError(t, err)
	e.clock.Add(59 * time.Minute)
	b, err := e.g.PinDocument()
	require.NoError(t, err)
	require.Equal(t, a, b, "a flood of fetches costs no signatures")
	e.clock.Add(2 * time.Minute)
	c, err := e.g.PinDocument()
	require.NoError(t, err)
	require.NotEqual(t, a, c)
}
