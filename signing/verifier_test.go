package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

var _ func(http.Handler) http.Handler = (*Verifier)(nil).Handler

var (
	t0      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	secretA = []byte("device-a-secret-0123456789abcdef-0123456789")
	secretB = []byte("device-b-secret-0123456789abcdef-0123456789")
)

// testClock is a settable clock.
type testClock = testkit.Clock

// logSink collects log output from concurrent writers.
type logSink = testkit.LogSink

// newTestVerifier starts a verifier at t0 - 1 minute (so that requests at
// t0 are above the start-up floor) and moves the clock to t0.
func newTestVerifier(t testing.TB, mod func(*Config)) (*Verifier, *testClock, *logSink) {
	t.Helper()
	clk := testkit.NewClock(t0.Add(-time.Minute))
	logs := &logSink{}
	cfg := Config{
		Keys:   StaticKeys(map[string][]byte{"device-a": secretA, "device-b": secretB}),
		Now:    clk.Now,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	logs.Reset() // New's warning that the test logger counts no events
	clk.Advance(time.Minute)
	return v, clk, logs
}

func signer(clk *testClock, keyID string, secret []byte) *Signer {
	s := NewSigner(keyID, secret)
	s.Now = clk.Now
	return s
}

// signed builds a signed request as a client sends it, then returns it as
// the server receives it.
func signed(t testing.TB, s *Signer, method, url, body string, hdr map[string]string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	require.NoError(t, s.Sign(r))
	return asServer(t, r)
}

// asServer turns a client request into what a handler sees.
func asServer(t testing.TB, r *http.Request) *http.Request {
	t.Helper()
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		require.NoError(t, err)
	}
	sr := httptest.NewRequest(r.Method, r.URL.String(), bytes.NewReader(body))
	sr.Header = r.Header.Clone()
	if len(body) == 0 {
		sr.Body = http.NoBody
		sr.ContentLength = 0
	}
	return sr
}

func serve(v *Verifier, r *http.Request) (*httptest.ResponseRecorder, bool, string) {
	reached, got := false, ""
	rec := httptest.NewRecorder()
	v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		b, _ := io.ReadAll(r.Body)
		id, _ := KeyIDFrom(r.Context())
		got = id + "|" + string(b)
	})).ServeHTTP(rec, r)
	return rec, reached, got
}

const api = "https://api.example.com"

func TestVerifyAccepts(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	s := signer(clk, "device-a", secretA)
	tests := []struct {
		name   string
		method string
		url    string
		body   string
		hdr    map[string]string
	}{
		{name: "get", method: "GET", url: api + "/v1/orders?page=2"},
		{name: "post_json_body", method: "POST", url: api + "/v1/pay", body: `{"amount":100}`, hdr: map[string]string{"Content-Type": "application/json"}},
		{name: "with_authorization", method: "POST", url: api + "/v1/pay", body: "x", hdr: map[string]string{"Authorization": "Bearer abc.def.ghi"}},
		{name: "root_path", method: "DELETE", url: api},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, reached, got := serve(v, signed(t, s, tt.method, tt.url, tt.body, tt.hdr))
			require.True(t, reached, rec.Body.String())
			require.Equal(t, "device-a|"+tt.body, got, "key ID in context and body handed on intact")
		})
	}
}

func TestVerifyAttacks(t *testing.T) {
	type setup struct {
		v   *Verifier
		clk *testClock
		s   *Signer
	}
	tests := []struct {
		name       string
		mod        func(*Config)
		build      func(t *testing.T, e setup) *http.Request
		want       error
		wantStatus int
		wantEvent  string
	}{
		{name: "unsigned", want: ErrMissingSignature, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return httptest.NewRequest("GET", api+"/v1/orders", nil)
		}},
		{name: "replay_inside_window", want: ErrReplay, wantStatus: 401, wantEvent: "replay", build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "POST", api+"/v1/pay", `{"amount":100}`, nil)
			rec, reached, _ := serve(e.v, r.Clone(context.Background()))
			require.True(t, reached, rec.Body.String())
			r.Body = io.NopCloser(strings.NewReader(`{"amount":100}`))
			return r
		}},
		{name: "body_tampered", want: ErrDigest, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "POST", api+"/v1/pay", `{"amount":100}`, nil)
			r.Body = io.NopCloser(strings.NewReader(`{"amount":999}`))
			return r
		}},
		{name: "digest_header_swapped", want: ErrSignature, wantStatus: 401, wantEvent: "signature_mismatch", build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "POST", api+"/v1/pay", `{"amount":100}`, nil)
			r.Header.Set("Content-Digest", ContentDigest([]byte(`{"amount":999}`)))
			r.Body = io.NopCloser(strings.NewReader(`{"amount":999}`))
			return r
		}},
		{name: "authorization_swapped", want: ErrSignature, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", map[string]string{"Authorization": "Bearer victim"})
			r.Header.Set("Authorization", "Bearer attacker")
			return r
		}},
		{name: "authorization_added_uncovered", want: ErrProfile, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			r.Header.Set("Authorization", "Bearer attacker")
			return r
		}},
		{name: "method_changed", want: ErrSignature, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders/7", "", nil)
			r.Method = "DELETE"
			return r
		}},
		{name: "path_changed", want: ErrSignature, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders/7", "", nil)
			r.URL.Path = "/v1/orders/8"
			return r
		}},
		{name: "query_changed", want: ErrSignature, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders?limit=1", "", nil)
			r.URL.RawQuery = "limit=1000"
			return r
		}},
		{name: "host_changed", want: ErrSignature, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", "https://other.example.com/v1/orders", "", nil)
			r.Host = "api.example.com"
			return r
		}},
		{name: "created_in_future", want: ErrFuture, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			s := signer(testkit.NewClock(t0.Add(10*time.Minute)), "device-a", secretA)
			return signed(t, s, "GET", api+"/v1/orders", "", nil)
		}},
		{name: "stale_created", want: ErrExpired, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			e.clk.Advance(6 * time.Minute)
			return r
		}},
		{name: "expires_passed", want: ErrExpired, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;expires=%d;keyid="device-a";nonce="n1"`, t0.Unix()-30, t0.Unix()-1)
		}},
		{name: "created_past_year_2262", want: ErrFuture, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="n1"`, int64(999_999_999_999_999))
		}},
		{name: "created_just_past_window", want: ErrFuture, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="n1"`, t0.Add(5*time.Minute).Unix()+1)
		}},
		{name: "expires_negative", want: ErrExpired, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;expires=%d;keyid="device-a";nonce="n1"`, t0.Unix(), int64(-999_999_999_999_999))
		}},
		{name: "expires_at_now", want: ErrExpired, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;expires=%d;keyid="device-a";nonce="n1"`, t0.Unix()-1, t0.Unix())
		}},
		{name: "capture_replayed_after_newer_traffic", want: ErrStale, wantStatus: 401, wantEvent: "replay", build: func(t *testing.T, e setup) *http.Request {
			old := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			e.clk.Advance(30 * time.Second)
			rec, reached, _ := serve(e.v, signed(t, e.s, "GET", api+"/v1/orders", "", nil))
			require.True(t, reached, rec.Body.String())
			return old
		}},
		{name: "missing_nonce", want: ErrProfile, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a"`, t0.Unix())
		}},
		{name: "missing_created", want: ErrProfile, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");keyid="device-a";nonce="n"`)
		}},
		{name: "method_not_covered", want: ErrProfile, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@target-uri");created=%d;keyid="device-a";nonce="n"`, t0.Unix())
		}},
		{name: "target_not_covered", want: ErrProfile, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@path");created=%d;keyid="device-a";nonce="n"`, t0.Unix())
		}},
		{name: "body_not_covered", want: ErrProfile, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			r := signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="n"`, t0.Unix())
			r.Body = io.NopCloser(strings.NewReader("injected"))
			r.ContentLength = 8
			return r
		}},
		{name: "unknown_key", want: ErrUnknownKey, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signed(t, signer(e.clk, "device-zzz", secretA), "GET", api+"/v1/orders", "", nil)
		}},
		{name: "revoked_key", want: ErrRevokedKey, wantStatus: 401, mod: func(c *Config) {
			c.Keys = WithRevocation(c.Keys, func(_ context.Context, id string) (bool, error) { return id == "device-a", nil })
		}, build: func(t *testing.T, e setup) *http.Request {
			return signed(t, e.s, "GET", api+"/v1/orders", "", nil)
		}},
		{name: "signature_of_another_key", want: ErrSignature, wantStatus: 401, wantEvent: "signature_mismatch", build: func(t *testing.T, e setup) *http.Request {
			return signed(t, signer(e.clk, "device-a", secretB), "GET", api+"/v1/orders", "", nil)
		}},
		{name: "wrong_alg_param", want: ErrAlgorithm, wantStatus: 401, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="n";alg="ed25519"`, t0.Unix())
		}},
		{name: "duplicate_labels", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			r.Header.Add("Signature-Input", `sig1=("@path");created=1;keyid="device-a";nonce="x"`)
			return r
		}},
		{name: "duplicate_labels_one_line", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			r.Header.Set("Signature", r.Header.Get("Signature")+", sig1=:AAAA:")
			return r
		}},
		{name: "malformed_signature_input", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			r.Header.Set("Signature-Input", `sig1=("@method" "@target-uri";created=1`)
			return r
		}},
		{name: "malformed_signature_not_bytes", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			r.Header.Set("Signature", `sig1="not-bytes"`)
			return r
		}},
		{name: "signature_without_input", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "GET", api+"/v1/orders", "", nil)
			r.Header.Del("Signature-Input")
			return r
		}},
		{name: "created_wrong_type", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri");created="now";keyid="device-a";nonce="n"`)
		}},
		{name: "covered_header_absent", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			return signRaw(t, "device-a", secretA, `("@method" "@target-uri" "x-device-id");created=%d;keyid="device-a";nonce="n"`, t0.Unix())
		}},
		{name: "oversize_body", want: ErrBodyTooLarge, wantStatus: 413, mod: func(c *Config) { c.MaxBodyBytes = 16 }, build: func(t *testing.T, e setup) *http.Request {
			return signed(t, e.s, "POST", api+"/v1/pay", strings.Repeat("x", 17), nil)
		}},
		{name: "oversize_body_unknown_length", want: ErrBodyTooLarge, wantStatus: 413, mod: func(c *Config) { c.MaxBodyBytes = 16 }, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "POST", api+"/v1/pay", strings.Repeat("x", 17), nil)
			r.ContentLength = -1
			return r
		}},
		{name: "body_longer_than_content_length", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "POST", api+"/v1/pay", `{"amount":1}`, nil)
			r.ContentLength = 5 // the digest covers all of it; the length announces less
			return r
		}},
		{name: "body_shorter_than_content_length", want: ErrMalformed, wantStatus: 400, build: func(t *testing.T, e setup) *http.Request {
			r := signed(t, e.s, "POST", api+"/v1/pay", `{"amount":1}`, nil)
			r.ContentLength = 100
			return r
		}},
		{name: "created_before_process_start", want: ErrReplayFloor, wantStatus: 401, wantEvent: "replay_floor", build: func(t *testing.T, e setup) *http.Request {
			s := signer(testkit.NewClock(t0.Add(-2*time.Minute)), "device-a", secretA)
			return signed(t, s, "GET", api+"/v1/orders", "", nil)
		}},
		{name: "key_store_down", want: ErrStoreUnavailable, wantStatus: 503, mod: func(c *Config) {
			c.Keys = KeyStoreFunc(func(context.Context, string) (Key, error) { return Key{}, errors.New("db down") })
		}, build: func(t *testing.T, e setup) *http.Request {
			return signed(t, e.s, "GET", api+"/v1/orders", "", nil)
		}},
		{name: "replay_store_down", want: ErrStoreUnavailable, wantStatus: 503, mod: func(c *Config) { c.ReplayStore = brokenStore{} }, build: func(t *testing.T, e setup) *http.Request {
			return signed(t, e.s, "GET", api+"/v1/orders", "", nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, clk, logs := newTestVerifier(t, tt.mod)
			e := setup{v: v, clk: clk, s: signer(clk, "device-a", secretA)}
			r := tt.build(t, e)
			r.Header.Set("X-Device-Model", "Pixel 8 (emulator)")
			var body []byte
			if r.Body != nil {
				body, _ = io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			rec, reached, _ := serve(v, r)
			require.False(t, reached)
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			if tt.wantStatus == 401 {
				require.Contains(t, rec.Header().Get("Accept-Signature"), `sig1=("@method" "@target-uri"`)
			}
			if tt.wantStatus == 503 {
				require.NotEmpty(t, rec.Header().Get("Retry-After"))
			}
			if tt.wantEvent != "" {
				require.Contains(t, logs.String(), `"event":"`+tt.wantEvent+`"`)
			}
			require.Contains(t, logs.String(), `"reason":"`+reason(tt.want)+`"`)
			for _, secret := range [][]byte{secretA, secretB} {
				require.NotContains(t, logs.String(), string(secret))
				require.NotContains(t, rec.Body.String(), string(secret))
			}
			if sig := r.Header.Get("Signature"); len(sig) > 12 {
				require.NotContains(t, logs.String(), sig[6:len(sig)-1], "signature never logged")
			}

			// The same verdict from Verify, the plain method.
			r.Body = io.NopCloser(bytes.NewReader(body))
			if tt.want != ErrReplay && tt.want != ErrStale {
				res, err := v.Verify(r)
				require.ErrorIs(t, err, tt.want)
				require.Nil(t, res, "unverified_keyid_beside_error: no Result beside an error")
			}
		})
	}
}

type brokenStore struct{}

func (brokenStore) UseNonce(context.Context, string, string, time.Time, time.Time) (bool, error) {
	return false, errors.New("redis down")
}

func (brokenStore) Advance(context.Context, string, time.Time, time.Duration, time.Duration) (bool, error) {
	return false, errors.New("redis down")
}

// signRaw signs GET api/v1/orders with a hand-written Signature-Input
// member (fmt args fill it), as a non-conforming client would.
func signRaw(t testing.TB, keyID string, secret []byte, params string, args ...any) *http.Request {
	t.Helper()
	r := httptest.NewRequest("GET", api+"/v1/orders", nil)
	input := "sig1=" + fmt.Sprintf(params, args...)
	base, err := baseFor(t, r, input)
	if err != nil {
		base = []byte("unbuildable")
	}
	mac := hmacSum(secret, base)
	r.Header.Set("Signature-Input", input)
	r.Header.Set("Signature", "sig1=:"+b64std(mac)+":")
	return r
}

func TestParallelRequestsWithinSlack(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	s := signer(clk, "device-a", secretA)
	first := signed(t, s, "GET", api+"/v1/a", "", nil)
	clk.Advance(2 * time.Second)
	second := signed(t, s, "GET", api+"/v1/b", "", nil)
	_, reached, _ := serve(v, second)
	require.True(t, reached)
	_, reached, _ = serve(v, first)
	require.True(t, reached, "2s older than the newest, within the 5s slack")
}

func TestReplayAfterEviction(t *testing.T) {
	v, clk, logs := newTestVerifier(t, func(c *Config) { c.ReplayCacheSize = 4; c.ReorderSlack = time.Minute })
	s := signer(clk, "device-a", secretA)
	first := signed(t, s, "GET", api+"/v1/orders", "", nil)
	saved := first.Clone(context.Background())
	_, reached, _ := serve(v, first)
	require.True(t, reached)
	// Other devices push the first nonce out of the cache.
	for i := range 10 {
		clk.Advance(time.Second)
		_, reached, _ := serve(v, signed(t, signer(clk, "device-b", secretB), "GET", fmt.Sprintf("%s/v1/x/%d", api, i), "", nil))
		require.True(t, reached)
	}
	_, reached, _ = serve(v, saved)
	require.False(t, reached, "nonce_reused_after_eviction refused by the floor")
	require.Contains(t, logs.String(), `"event":"replay_floor"`)
}

func TestDerivedKeys(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	salt := []byte("apiguard-demo")
	ks := DerivedKeys(master, salt)
	secret, err := DeriveSecret(master, salt, "device-42.v2")
	require.NoError(t, err)
	k, err := ks.Key(context.Background(), "device-42.v2")
	require.NoError(t, err)
	require.Equal(t, secret, k.Secret)
	other, _ := DeriveSecret(master, salt, "device-42.v1")
	require.NotEqual(t, secret, other, "a new version rotates the secret")

	clk := testkit.NewClock(t0.Add(-time.Minute))
	v, err := New(Config{Keys: ks, Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	clk.Advance(time.Minute)
	_, reached, _ := serve(v, signed(t, signer(clk, "device-42.v2", secret), "GET", api+"/v1/orders", "", nil))
	require.True(t, reached)
	_, reached, _ = serve(v, signed(t, signer(clk, "device-42.v2", other), "GET", api+"/v1/orders", "", nil))
	require.False(t, reached, "the old version's secret no longer signs for v2")
	for _, bad := range []string{"", strings.Repeat("a", 200), "bad id", "x\ny"} {
		_, err := ks.Key(context.Background(), bad)
		require.ErrorIs(t, err, ErrUnknownKey, "%q", bad)
	}
}

func TestAsymmetricKeys(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	keys := KeyStoreFunc(func(_ context.Context, id string) (Key, error) {
		switch id {
		case "enclave-1":
			return Key{ID: id, Algorithm: AlgECDSAP256SHA256, PublicKey: &ecKey.PublicKey}, nil
		case "keystore-1":
			return Key{ID: id, Algorithm: AlgEd25519, PublicKey: edPub}, nil
		}
		return Key{}, ErrUnknownKey
	})
	v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = keys })
	sign := func(keyID, alg string, f func(base []byte) []byte) *http.Request {
		r := httptest.NewRequest("GET", api+"/v1/orders", nil)
		input := fmt.Sprintf(`sig1=("@method" "@target-uri");created=%d;keyid="%s";nonce="%s";alg="%s"`, clk.Now().Unix(), keyID, keyID+"-n", alg)
		base, err := baseFor(t, r, input)
		require.NoError(t, err)
		r.Header.Set("Signature-Input", input)
		r.Header.Set("Signature", "sig1=:"+b64std(f(base))+":")
		return r
	}
	ecSig := func(base []byte) []byte {
		h := sha256.Sum256(base)
		rr, ss, err := ecdsa.Sign(rand.Reader, ecKey, h[:])
		require.NoError(t, err)
		out := make([]byte, 64)
		rr.FillBytes(out[:32])
		ss.FillBytes(out[32:])
		return out
	}
	_, reached, _ := serve(v, sign("enclave-1", AlgECDSAP256SHA256, ecSig))
	require.True(t, reached, "ecdsa-p256-sha256")
	_, reached, _ = serve(v, sign("keystore-1", AlgEd25519, func(b []byte) []byte { return ed25519.Sign(edPriv, b) }))
	require.True(t, reached, "ed25519")
	_, reached, _ = serve(v, sign("enclave-1", AlgECDSAP256SHA256, func(b []byte) []byte { return ed25519.Sign(edPriv, b) }))
	require.False(t, reached, "wrong key type")
	_, err = v.Verify(sign("enclave-1", AlgECDSAP256SHA256, func([]byte) []byte {
		out := make([]byte, 64)
		big.NewInt(1).FillBytes(out[:32])
		return out
	}))
	require.ErrorIs(t, err, ErrSignature)
}

func TestRequireProfile(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	s := signer(clk, "device-a", secretA)
	s.Tag = "shop-ios"
	strict := v.RequireProfile(Profile{Tag: "shop-ios", Components: []string{"x-device-id"}})
	h := strict(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signed(t, s, "GET", api+"/v1/orders", "", nil))
	require.Equal(t, 401, rec.Code, "x-device-id is required and not covered")

	s.Tag = "other-app"
	rec = httptest.NewRecorder()
	v.RequireProfile(Profile{Tag: "shop-ios"})(h).ServeHTTP(rec, signed(t, s, "GET", api+"/v1/x", "", nil))
	require.Equal(t, 401, rec.Code, "wrong tag")
	require.Panics(t, func() { v.RequireProfile(Profile{Components: []string{`"unterminated`}}) })
}

func TestNewRejectsBadConfig(t *testing.T) {
	keys := StaticKeys(nil)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no_keys", cfg: Config{}, want: "Config.Keys is required"},
		{name: "negative_window", cfg: Config{Keys: keys, Window: -1}, want: "must not be negative"},
		{name: "slack_over_window", cfg: Config{Keys: keys, Window: time.Second, ReorderSlack: time.Minute}, want: "ReorderSlack"},
		{name: "bad_scheme", cfg: Config{Keys: keys, Scheme: "ftp"}, want: "Config.Scheme"},
		{name: "bad_component", cfg: Config{Keys: keys, Profile: Profile{Components: []string{`"x`}}}, want: "Profile.Components"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSignerTransport(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	var got string
	srv := httptest.NewServer(v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		id, _ := KeyIDFrom(r.Context())
		got = id + "|" + string(b)
	})))
	defer srv.Close()
	// The server's authority is 127.0.0.1:port and its scheme http.
	v.cfg.Scheme = "http"
	client := &http.Client{Transport: NewTransport(nil, signer(clk, "device-a", secretA))}
	req, err := http.NewRequest("POST", srv.URL+"/v1/pay?x=1", strings.NewReader(`{"amount":5}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, `device-a|{"amount":5}`, got)
	require.Empty(t, req.Header.Get("Signature"), "the caller's request is not modified")
}

func TestConcurrentVerify(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	s := signer(clk, "device-a", secretA)
	reqs := make([]*http.Request, 64)
	for i := range reqs {
		reqs[i] = signed(t, s, "POST", api+"/v1/pay", fmt.Sprintf(`{"n":%d}`, i), nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(reqs)*2)
	for _, r := range reqs {
		for range 2 { // each request twice: exactly one must pass
			wg.Add(1)
			r2 := r.Clone(context.Background())
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			r2.Body = io.NopCloser(bytes.NewReader(body))
			go func() {
				defer wg.Done()
				_, err := v.Verify(r2)
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	ok, replays := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrReplay):
			replays++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	require.Equal(t, 64, ok)
	require.Equal(t, 64, replays)
}

// TestHandlerHandsOn checks what next receives: the body again (with its
// length and GetBody), the Result, the parent context's values, and the
// parent's cancellation through a context derived from the new one.
func TestHandlerHandsOn(t *testing.T) {
	v, _, _ := newTestVerifier(t, nil)
	type parentKey struct{}
	const payload = `{"amount":42}`
	var got struct {
		body, again string
		length      int64
		res         *Result
		parentValue any
		canceled    bool
	}
	h := v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		require.NoError(t, r.Body.Close())
		got.body, got.length = string(b), r.ContentLength
		rc, err := r.GetBody()
		require.NoError(t, err)
		b, _ = io.ReadAll(rc)
		got.again = string(b)
		got.res, _ = ResultFrom(r.Context())
		got.parentValue = r.Context().Value(parentKey{})
		child, cancel := context.WithCancel(r.Context())
		defer cancel()
		select {
		case <-child.Done():
			got.canceled = true
		case <-time.After(5 * time.Second):
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	r := signed(t, signer(testkit.NewClock(t0), "device-a", secretA), "POST", api+"/v1/pay", payload, nil)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), parentKey{}, "parent"))
	r = r.WithContext(ctx)
	rec := httptest.NewRecorder()
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	h.ServeHTTP(rec, r)
	require.Equal(t, http.StatusNoContent, rec.Code)
	require.Equal(t, payload, got.body)
	require.Equal(t, payload, got.again, "GetBody reads the body again")
	require.Equal(t, int64(len(payload)), got.length)
	require.NotNil(t, got.res)
	require.Equal(t, "device-a", got.res.KeyID)
	require.Equal(t, "parent", got.parentValue)
	require.True(t, got.canceled, "cancelling the request's context reaches contexts derived from next's")
}

// TestAuthorityNormalized signs the base an RFC 9421 client builds for
// https://api.example.com/v1/orders (authority without the default port)
// and delivers it with Host: api.example.com:443, as some proxies and
// clients write it: the verifier normalizes the port away and accepts it.
// A non-default port is part of the authority and must be signed.
func TestAuthorityNormalized(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	created := clk.Now().Unix()
	input := fmt.Sprintf(`sig1=("@method" "@authority" "@path" "@query");created=%d;keyid="device-a";nonce="n-authority-%%s"`, created)
	sign := func(host, authority, nonce string) *http.Request {
		in := fmt.Sprintf(input, nonce)
		base := "\"@method\": GET\n\"@authority\": " + authority + "\n\"@path\": /v1/orders\n\"@query\": ?\n" +
			"\"@signature-params\": " + strings.TrimPrefix(in, "sig1=")
		r := httptest.NewRequest("GET", "https://"+host+"/v1/orders", nil)
		r.Host = host
		r.Header.Set("Signature-Input", in)
		r.Header.Set("Signature", "sig1=:"+b64std(hmacSum(secretA, []byte(base)))+":")
		return r
	}
	for _, tt := range []struct {
		name, host, authority string
		ok                    bool
	}{
		{"default_port_stripped", "API.example.com:443", "api.example.com", true},
		{"plain_host", "api.example.com", "api.example.com", true},
		{"other_port_kept", "api.example.com:8443", "api.example.com:8443", true},
		{"other_port_not_dropped", "api.example.com:8443", "api.example.com", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec, reached, _ := serve(v, sign(tt.host, tt.authority, tt.name))
			require.Equal(t, tt.ok, reached, rec.Body.String())
			if !tt.ok {
				require.Equal(t, http.StatusUnauthorized, rec.Code)
				require.Contains(t, rec.Body.String(), "invalid-signature")
			}
		})
	}
}

// TestTooManyComponents: building the signature base is work any client
// can ask for before the MAC is checked (with DerivedKeys every key ID has
// a key), so a signature may cover at most MaxComponents components: more
// is refused as malformed before the base is built, however many there
// are, and up to the cap the request goes on to the MAC check.
func TestTooManyComponents(t *testing.T) {
	v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = DerivedKeys(bytes.Repeat([]byte{1}, 32), []byte("salt")) })
	request := func(headers int) *http.Request {
		r := httptest.NewRequest("GET", api+"/v1/orders", nil)
		var b strings.Builder
		b.WriteString(`sig1=("@method" "@target-uri"`)
		for i := range headers {
			name := fmt.Sprintf("x-h%d", i)
			r.Header.Set(name, "v")
			b.WriteString(` "` + name + `"`)
		}
		fmt.Fprintf(&b, `);created=%d;keyid="any-device";nonce="n-%d"`, clk.Now().Unix(), headers)
		r.Header.Set("Signature-Input", b.String())
		r.Header.Set("Signature", "sig1=:"+b64std(make([]byte, 32))+":")
		return r
	}
	_, err := v.Verify(request(MaxComponents - 2))
	require.ErrorIs(t, err, ErrSignature, "at the cap: the base is built and the MAC checked")
	for _, n := range []int{MaxComponents - 1, 20_000} {
		_, err := v.Verify(request(n))
		require.ErrorIs(t, err, ErrMalformed, "%d components", n+2)
		require.NotErrorIs(t, err, ErrSignature)
	}
	rec, reached, _ := serve(v, request(MaxComponents))
	require.False(t, reached)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
}

// TestQueryParamsParsedOnce: a base covering many @query-param components
// parses the query once; each value is found and percent-encoded.
func TestQueryParamsParsedOnce(t *testing.T) {
	r := httptest.NewRequest("GET", api+"/v1/search?a=1&b=two%20words&c=%7E", nil)
	m := innerList(t, `sig1=("@query-param";name="a" "@query-param";name="b" "@query-param";name="c");created=1`)
	base, err := compileBase(nil, r, target{scheme: "https", authority: "api.example.com"}, m.Items, m.Params, m.Raw)
	require.NoError(t, err)
	require.Equal(t, "\"@query-param\";name=\"a\": 1\n\"@query-param\";name=\"b\": two%20words\n\"@query-param\";name=\"c\": %7E\n"+
		"\"@signature-params\": (\"@query-param\";name=\"a\" \"@query-param\";name=\"b\" \"@query-param\";name=\"c\");created=1", string(base))
}

// TestDictionaryMembers: the RFC 9421 §2.1.2 examples of ;key, several
// members of one dictionary field in one base (the field is parsed once
// for all of them).
func TestDictionaryMembers(t *testing.T) {
	r := httptest.NewRequest("GET", api+"/", nil)
	r.Header.Set("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)")
	m := innerList(t, `sig1=("example-dict";key="a" "example-dict";key="d" "example-dict";key="b" "example-dict";key="c");created=1`)
	_, err := compileBase(nil, r, target{scheme: "https", authority: "api.example.com"}, m.Items, m.Params, m.Raw)
	require.ErrorIs(t, err, ErrMalformed, "d is not a member")
	m = innerList(t, `sig1=("example-dict";key="a" "example-dict";key="b" "example-dict";key="c");created=1`)
	base, err := compileBase(nil, r, target{scheme: "https", authority: "api.example.com"}, m.Items, m.Params, m.Raw)
	require.NoError(t, err)
	require.Equal(t, "\"example-dict\";key=\"a\": 1\n\"example-dict\";key=\"b\": 2;x=1;y=2\n\"example-dict\";key=\"c\": (a b c)\n"+
		"\"@signature-params\": (\"example-dict\";key=\"a\" \"example-dict\";key=\"b\" \"example-dict\";key=\"c\");created=1", string(base))
}

// TestFreshnessBoundaries checks the edges of the created window:
// FutureSkew ahead is accepted, a second more is not
// (created_too_far_in_future), and neither is anything up to Window
// ahead, which was accepted before FutureSkew; exactly Window behind is
// expired (its nonce would already be past its hold), a second less is
// accepted. The clock moves on first, so that the replay store's
// start-up floor is behind the window.
func TestFreshnessBoundaries(t *testing.T) {
	now := t0.Add(10 * time.Minute)
	for _, tt := range []struct {
		name    string
		created int64
		want    error
	}{
		{"future_skew_ahead", now.Add(30 * time.Second).Unix(), nil},
		{"created_too_far_in_future", now.Add(30*time.Second).Unix() + 1, ErrFuture},
		{"created_window_ahead", now.Add(5 * time.Minute).Unix(), ErrFuture},
		{"window_behind_plus_1s", now.Add(-5*time.Minute).Unix() + 1, nil},
		{"window_behind", now.Add(-5 * time.Minute).Unix(), ErrExpired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, clk, _ := newTestVerifier(t, nil)
			clk.Advance(now.Sub(t0))
			r := signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="n1"`, tt.created)
			_, err := v.Verify(r)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

// TestLabelsCheckedApart: when the first signature of a request fails the
// profile after its parameters were read, the next one is checked on its
// own parameters only: nothing of the first carries over (here, an
// expires long past and an alg of another key type, either of which
// would refuse the second signature).
func TestLabelsCheckedApart(t *testing.T) {
	v, clk, _ := newTestVerifier(t, nil)
	created := clk.Now().Unix()
	// sig0 covers no @method (a profile failure), after expires, alg and
	// the rest were read; sig1 is a valid signature without either.
	r := signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="n-1"`, created)
	r.Header.Set("Signature-Input", `sig0=("@target-uri");created=1;expires=2;keyid="device-b";nonce="old";alg="ed25519";tag="x", `+r.Header.Get("Signature-Input"))
	r.Header.Set("Signature", `sig0=:AAAA:, `+r.Header.Get("Signature"))
	res, err := v.Verify(r)
	require.NoError(t, err)
	require.Equal(t, "sig1", res.Label)
	require.Equal(t, "device-a", res.KeyID)
	require.Equal(t, created, res.Created.Unix())
}
