package androidkey

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

func statusJSON(entries map[string]string) []byte {
	doc := map[string]map[string]map[string]string{"entries": {}}
	for serial, status := range entries {
		doc["entries"][serial] = map[string]string{"status": status, "reason": "KEY_COMPROMISE"}
	}
	b, _ := json.Marshal(doc)
	return b
}

// TestRevokedCertificateAnywhereInChain: a revoked or suspended serial
// at any position of a real RKP chain, the root included, refuses it.
func TestRevokedCertificateAnywhereInChain(t *testing.T) {
	vec := loadVector(t, "google-caiman-sdk36-sb-ec-rkp")
	tests := []struct {
		name   string
		serial string
		status string
	}{
		{"revoked_leaf", "1", "REVOKED"},
		{"revoked_attestation_key", "65d2949536924da695f5ae1eb290cd4d", "REVOKED"}, // gitleaks:allow -- a certificate serial from Google's published status-list sample, not a secret
		{"revoked_intermediate", "f59c0ae29d0429667b3b45d319fa0d64c99194", "REVOKED"},
		{"suspended_intermediate", "388266760658996860d", "SUSPENDED"},
		{"revoked_root_certificate", "d50ff25ba3f2d6b3", "REVOKED"},
		{"revoked_with_leading_zero_and_upper_case", "0F59C0AE29D0429667B3B45D319FA0D64C99194", "REVOKED"},
		{"unknown_status_is_untrusted", "f59c0ae29d0429667b3b45d319fa0d64c99194", "SOMETHING_NEW"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := vectorVerifier(t, vec, func(c *Config) { c.StatusList = statusJSON(map[string]string{tt.serial: tt.status}) })
			_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
			require.ErrorIs(t, err, ErrRevoked)
		})
	}
}

// TestDecimalSerialInRevocationList: list keys are hex even when every
// character is a digit. The Sony batch certificate's serial is
// 0x16580768335559031605: listed as that all-digit hex string it is
// revoked; listed in decimal (105515909834616137258501), the entry names
// another serial and revokes nothing here.
func TestDecimalSerialInRevocationList(t *testing.T) {
	vec := loadVector(t, "google-sony-xperia10-iii-sdk33-tee-ec")
	v := vectorVerifier(t, vec, func(c *Config) { c.StatusList = statusJSON(map[string]string{"16580768335559031605": "REVOKED"}) })
	_, err := v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
	require.ErrorIs(t, err, ErrRevoked)

	v = vectorVerifier(t, vec, func(c *Config) { c.StatusList = statusJSON(map[string]string{"105515909834616137258501": "REVOKED"}) })
	_, err = v.Verify(context.Background(), vec.chain(t), vec.challenge(t))
	require.NoError(t, err)
}

// TestStatusListSamples parses the documented example and Google's test
// list verbatim; the all-digit keys of the latter are hex.
func TestStatusListSamples(t *testing.T) {
	for name, want := range map[string]map[string]string{
		"status-list-docs-example":       {"2c8cdddfd5e03bfc": "REVOKED", "c8966fcb2fbb0d7a": "SUSPENDED"},
		"status-list-google-sample-test": {"6681152659205225093": "REVOKED", "cc66e9a93713b6e643b26c15879786f7": "SUSPENDED"},
	} {
		b, err := os.ReadFile("testdata/" + name + ".json")
		require.NoError(t, err)
		var f struct {
			Source string          `json:"source"`
			List   json.RawMessage `json:"list"`
		}
		require.NoError(t, json.Unmarshal(b, &f))
		require.NotEmpty(t, f.Source)
		entries, err := parseStatusList(f.List)
		require.NoError(t, err, name)
		for serial, status := range want {
			require.Equal(t, status, entries[serial], name)
		}
	}
}

// TestStatusListMalformed: a list that cannot be read whole is refused,
// never half applied.
func TestStatusListMalformed(t *testing.T) {
	for name, give := range map[string]string{
		"not_json":            `{"entries":`,
		"no_entries":          `{}`,
		"decimal_looking_bad": `{"entries":{"12g4":{"status":"REVOKED"}}}`,
		"negative_serial":     `{"entries":{"-1":{"status":"REVOKED"}}}`,
		"empty_serial":        `{"entries":{"":{"status":"REVOKED"}}}`,
	} {
		_, err := parseStatusList([]byte(give))
		require.Error(t, err, name)
	}
	_, err := New(Config{Packages: []string{testPkg}, SignatureDigests: [][]byte{testDigest[:]}, StatusList: []byte(`{}`)})
	require.Error(t, err)
}

// statusServer serves a status list and counts requests; fail makes it
// answer 500.
type statusServer struct {
	srv  *httptest.Server
	hits atomic.Int32
	fail atomic.Bool
	body atomic.Pointer[[]byte]
}

func newStatusServer(t *testing.T, body []byte) *statusServer {
	s := &statusServer{}
	s.body.Store(&body)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestStatusListFetchedAndCached: the list is fetched on first use,
// reused within its max-age, refreshed in the background after it, and a
// revocation published later applies once fetched.
func TestStatusListFetchedAndCached(t *testing.T) {
	srv := newStatusServer(t, emptyStatus)
	clock := testkit.NewClock(testNow)
	var serials []string
	e := newTestEnv(t, func(c *Config) { c.StatusList, c.StatusListURL, c.Now = nil, srv.srv.URL, clock.Now })
	age, loaded, _ := e.v.KeySetAge()
	require.False(t, loaded)
	require.Zero(t, age)

	k := goodKey("c-1")
	k.Serials = &serials
	_, err := e.v.Verify(context.Background(), e.attest(t, k), []byte("c-1"))
	require.NoError(t, err)
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-2")), []byte("c-2"))
	require.NoError(t, err)
	require.EqualValues(t, 1, srv.hits.Load(), "cached within max-age")
	_, loaded, lastErr := e.v.KeySetAge()
	require.True(t, loaded)
	require.NoError(t, lastErr)

	// The factory intermediate every chain of this CA shares is revoked.
	b := statusJSON(map[string]string{serials[2]: "REVOKED"})
	srv.body.Store(&b)
	clock.Advance(time.Hour + time.Second)
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-3")), []byte("c-3"))
	require.NoError(t, err, "the cached list is used while the refresh runs")
	require.Eventually(t, func() bool {
		age, _, _ := e.v.KeySetAge()
		return age == 0
	}, 10*time.Second, time.Millisecond, "refreshed in the background")
	require.EqualValues(t, 2, srv.hits.Load())
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-4")), []byte("c-4"))
	require.ErrorIs(t, err, ErrRevoked)
	// An application-supplied list replaces it.
	require.NoError(t, e.v.SetStatusList(emptyStatus))
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-4")), []byte("c-4"))
	require.NoError(t, err)
}

// TestStatusListOutageFailsClosed: without a usable list, chains are
// refused as a vendor outage with a Retry-After; fetches are spaced (no
// storm), and InsecureAcceptUncheckedRevocation admits them with a signal.
func TestStatusListOutageFailsClosed(t *testing.T) {
	srv := newStatusServer(t, emptyStatus)
	srv.fail.Store(true)
	clock := testkit.NewClock(testNow)
	e := newTestEnv(t, func(c *Config) { c.StatusList, c.StatusListURL, c.Now = nil, srv.srv.URL, clock.Now })
	_, err := e.v.Verify(context.Background(), e.attest(t, goodKey("c-1")), []byte("c-1"))
	require.ErrorIs(t, err, ErrVendor)
	var ue *UnavailableError
	require.True(t, errors.As(err, &ue))
	require.GreaterOrEqual(t, ue.RetryAfter, time.Second)
	for range 20 {
		_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-1")), []byte("c-1"))
		require.ErrorIs(t, err, ErrVendor)
	}
	require.EqualValues(t, 1, srv.hits.Load(), "backed off: one fetch for 21 attempts")
	_, loaded, lastErr := e.v.KeySetAge()
	require.False(t, loaded)
	require.Error(t, lastErr)
	require.ErrorIs(t, e.v.Ready(context.Background()), ErrVendor)

	// The list comes back; a list loaded once is used while refreshes
	// fail, up to StatusMaxStale, then chains are refused again.
	srv.fail.Store(false)
	clock.Advance(2 * time.Minute)
	require.NoError(t, e.v.Ready(context.Background()))
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-1")), []byte("c-1"))
	require.NoError(t, err)
	srv.fail.Store(true)
	clock.Advance(23 * time.Hour)
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-2")), []byte("c-2"))
	require.NoError(t, err, "stale past max-age but within StatusMaxStale")
	clock.Advance(2 * time.Hour)
	_, err = e.v.Verify(context.Background(), e.attest(t, goodKey("c-3")), []byte("c-3"))
	require.ErrorIs(t, err, ErrVendor, "past StatusMaxStale")

	insecure := newTestEnv(t, func(c *Config) {
		c.StatusList, c.StatusListURL, c.Now, c.InsecureAcceptUncheckedRevocation = nil, srv.srv.URL, clock.Now, true
	})
	k, err := insecure.v.Verify(context.Background(), insecure.attest(t, goodKey("c-1")), []byte("c-1"))
	require.NoError(t, err)
	require.Contains(t, k.Signals, SignalRevocationUnchecked)
	require.NoError(t, insecure.v.Ready(context.Background()))
}

// TestReadyLoadsStatusList: Ready fetches the list at start-up.
func TestReadyLoadsStatusList(t *testing.T) {
	srv := newStatusServer(t, emptyStatus)
	e := newTestEnv(t, func(c *Config) { c.StatusList, c.StatusListURL = nil, srv.srv.URL })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.v.Ready(ctx))
	_, loaded, _ := e.v.KeySetAge()
	require.True(t, loaded)
	require.NoError(t, e.v.Close())
	require.NoError(t, e.v.Close(), "idempotent")
}
