package revoke

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/stretchr/testify/require"
)

const (
	transmitter = "https://ssf.idp.example/"
	receiverAud = "https://api.example.com/ssf"
)

// tx is a test transmitter: a signing key and its public key set.
type tx struct {
	kid  string
	priv *ecdsa.PrivateKey
	set  jwk.Set
}

func newTx(t testing.TB, kid string) *tx {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub, err := jwk.FromRaw(&k.PublicKey)
	require.NoError(t, err)
	require.NoError(t, pub.Set(jwk.KeyIDKey, kid))
	set := jwk.NewSet()
	require.NoError(t, set.AddKey(pub))
	return &tx{kid: kid, priv: k, set: set}
}

// sign makes a SET with header members over typ and kid, and claims over
// the defaults (iss, aud, iat t0, jti, a session-revoked event for u1).
func (x *tx) sign(t testing.TB, hdr, override map[string]any) string {
	t.Helper()
	claims := map[string]any{
		"iss": transmitter, "aud": receiverAud, "iat": t0.Unix(), "jti": "set-1",
		"sub_id": map[string]any{"format": "iss_sub", "iss": transmitter, "sub": "u1"},
		"events": map[string]any{EventSessionRevoked: map[string]any{"event_timestamp": t0.Unix()}},
	}
	for k, v := range override {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	h := jws.NewHeaders()
	require.NoError(t, h.Set("typ", "secevent+jwt"))
	require.NoError(t, h.Set("kid", x.kid))
	for k, v := range hdr {
		require.NoError(t, h.Set(k, v))
	}
	b, err := json.Marshal(claims)
	require.NoError(t, err)
	out, err := jws.Sign(b, jws.WithKey(jwa.ES256, x.priv, jws.WithProtectedHeaders(h)))
	require.NoError(t, err)
	return string(out)
}

func newTestReceiver(t testing.TB, x *tx, mod func(*ReceiverConfig)) (*Receiver, *List, *testkit.Clock, *testkit.LogSink) {
	t.Helper()
	l, clk, logs := newTestList(t, nil)
	cfg := ReceiverConfig{List: l, Issuer: transmitter, Audience: receiverAud, Keys: x.set, Now: clk.Now, Logger: slogTo(logs)}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewReceiver(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r, l, clk, logs
}

func push(r http.Handler, set string, mod func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "https://api.example.com/ssf", strings.NewReader(set))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	return rec
}

func errCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct{ Err, Description string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	require.NotEmpty(t, body.Description)
	return body.Err
}

func unsigned(t testing.TB, hdr, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	require.NoError(t, err)
	c, err := json.Marshal(claims)
	require.NoError(t, err)
	e := base64.RawURLEncoding.EncodeToString
	return e(h) + "." + e(c) + "."
}

// TestPushAttacks: SETs an attacker forges or redirects are refused with
// 400 and the RFC 8935 error code, and revoke nothing.
func TestPushAttacks(t *testing.T) {
	x := newTx(t, "k1")
	forger := newTx(t, "k1") // same kid, another key
	typ := jws.NewHeaders()
	require.NoError(t, typ.Set("typ", "secevent+jwt"))
	hmacSET, err := jws.Sign([]byte(`{"iss":"`+transmitter+`","aud":"`+receiverAud+`","iat":1796536800,"jti":"h","events":{}}`),
		jws.WithKey(jwa.HS256, []byte("a-secret-the-attacker-chose-32by"), jws.WithProtectedHeaders(typ))) // gitleaks:allow -- a test HMAC key, not a secret
	require.NoError(t, err)
	otherIssuer := map[string]any{"format": "iss_sub", "iss": "https://evil.example/", "sub": "victim"}
	tests := []struct {
		name string
		set  func() string
		want string
	}{
		{"forged_set_wrong_key", func() string { return forger.sign(t, nil, nil) }, "invalid_key"},
		{"set_for_another_audience", func() string { return x.sign(t, nil, map[string]any{"aud": "https://other-api.example/"}) }, "invalid_audience"},
		{"set_from_another_issuer", func() string { return x.sign(t, nil, map[string]any{"iss": "https://evil.example/"}) }, "invalid_issuer"},
		{"set_with_alg_none", func() string {
			return unsigned(t, map[string]any{"alg": "none", "typ": "secevent+jwt"}, map[string]any{"iss": transmitter, "aud": receiverAud, "iat": t0.Unix(), "jti": "n", "events": map[string]any{EventAccountDisabled: map[string]any{"subject": map[string]any{"format": "opaque", "id": "u1"}}}})
		}, "invalid_key"},
		{"set_with_hmac_alg", func() string { return string(hmacSET) }, "invalid_key"},
		{"set_with_unknown_kid", func() string { return x.sign(t, map[string]any{"kid": "k9"}, nil) }, "invalid_key"},
		{"set_with_event_for_another_issuers_subject", func() string { return x.sign(t, nil, map[string]any{"sub_id": otherIssuer}) }, "access_denied"},
		{"event_subject_for_another_issuer", func() string {
			return x.sign(t, nil, map[string]any{"events": map[string]any{EventAccountPurged: map[string]any{"subject": otherIssuer}}})
		}, "access_denied"},
		{"set_with_jku_header", func() string { return x.sign(t, map[string]any{"jku": "https://evil.example/jwks"}, nil) }, "invalid_request"},
		{"id_token_as_set", func() string { return x.sign(t, map[string]any{"typ": "JWT"}, nil) }, "invalid_request"},
		{"set_without_jti", func() string { return x.sign(t, nil, map[string]any{"jti": nil}) }, "invalid_request"},
		{"set_without_iat", func() string { return x.sign(t, nil, map[string]any{"iat": nil}) }, "invalid_request"},
		{"set_from_the_future", func() string { return x.sign(t, nil, map[string]any{"iat": t0.Add(time.Hour).Unix()}) }, "invalid_request"},
		{"set_too_old", func() string { return x.sign(t, nil, map[string]any{"iat": t0.Add(-25 * time.Hour).Unix()}) }, "invalid_request"},
		{"event_time_in_the_future_revokes_next_logins", func() string {
			return x.sign(t, nil, map[string]any{"events": map[string]any{EventCredentialChange: map[string]any{"event_timestamp": t0.Add(time.Hour).Unix()}}})
		}, "invalid_request"},
		{"not_a_jws", func() string { return "not.a.jws" }, "invalid_request"},
		{"json_serialization", func() string { return `{"payload":"e30","signatures":[]}` }, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, l, _, logs := newTestReceiver(t, x, nil)
			rec := push(r, tt.set(), nil)
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			require.Equal(t, tt.want, errCode(t, rec))
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			require.Zero(t, l.Stats().Entries)
			require.Equal(t, ReceiverStats{Rejected: 1}, r.Stats())
			require.Contains(t, logs.String(), `"event":"set_rejected"`)
		})
	}
}

// TestReplayedSETRefused: a SET accepted once is refused the second time.
func TestReplayedSETRefused(t *testing.T) {
	x := newTx(t, "k1")
	r, _, _, _ := newTestReceiver(t, x, nil)
	set := x.sign(t, nil, nil)
	require.Equal(t, http.StatusAccepted, push(r, set, nil).Code)
	rec := push(r, set, nil)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Equal(t, "invalid_request", errCode(t, rec))
	require.ErrorIs(t, r.Receive(t.Context(), []byte(set)), ErrSETReplay)
}

// TestTransmitterAuthentication: with a BearerToken, a push without it,
// or with another, is 401 authentication_failed and never parsed.
func TestTransmitterAuthentication(t *testing.T) {
	x := newTx(t, "k1")
	r, l, _, _ := newTestReceiver(t, x, func(c *ReceiverConfig) { c.BearerToken = "transmitter-token-1" }) // gitleaks:allow -- a test value
	set := x.sign(t, nil, nil)
	for _, auth := range []string{"", "Bearer wrong", "Basic transmitter-token-1"} {
		rec := push(r, set, func(req *http.Request) { req.Header.Set("Authorization", auth) })
		require.Equal(t, http.StatusUnauthorized, rec.Code, auth)
		require.Equal(t, "authentication_failed", errCode(t, rec))
	}
	require.Zero(t, l.Stats().Entries)
	rec := push(r, set, func(req *http.Request) { req.Header.Set("Authorization", "Bearer transmitter-token-1") })
	require.Equal(t, http.StatusAccepted, rec.Code)
}

func TestPushMethodAndMediaType(t *testing.T) {
	x := newTx(t, "k1")
	r, _, _, _ := newTestReceiver(t, x, nil)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	rec = push(r, x.sign(t, nil, nil), func(req *http.Request) { req.Header.Set("Content-Type", "application/json") })
	require.Equal(t, http.StatusUnsupportedMediaType, rec.Code)
	rec = push(r, strings.Repeat("a", 70<<10), nil)
	require.Equal(t, http.StatusBadRequest, rec.Code)
}

// TestPushEvents: each event and subject format becomes the revocation it
// means, and the token it names is refused.
func TestPushEvents(t *testing.T) {
	x := newTx(t, "k1")
	before := t0.Add(-time.Minute)
	user := map[string]any{"format": "iss_sub", "iss": transmitter, "sub": "u1"}
	tests := []struct {
		name   string
		claims map[string]any
		// the token checked: sub, sid
		sub, sid string
		want     bool
	}{
		{"session_revoked_user_revokes_subject", nil, "u1", "", true},
		{"session_revoked_complex_revokes_session_only", map[string]any{"sub_id": map[string]any{"user": user, "session": map[string]any{"format": "opaque", "id": "s1"}}}, "u1", "s1", true},
		{"session_revoked_complex_other_session_untouched", map[string]any{"sub_id": map[string]any{"user": user, "session": map[string]any{"format": "opaque", "id": "s1"}}}, "u1", "s2", false},
		{"credential_change_revokes_subject", map[string]any{"events": map[string]any{EventCredentialChange: map[string]any{"change_type": "update", "credential_type": "password"}}}, "u1", "", true},
		{"account_disabled_opaque_subject", map[string]any{"sub_id": nil, "events": map[string]any{EventAccountDisabled: map[string]any{"subject": map[string]any{"format": "opaque", "id": "u1"}}}}, "u1", "", true},
		{"account_purged", map[string]any{"events": map[string]any{EventAccountPurged: map[string]any{}}}, "u1", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, l, _, logs := newTestReceiver(t, x, nil)
			rec := push(r, x.sign(t, nil, tt.claims), nil)
			require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
			require.Equal(t, tt.want, l.Revoked(transmitter, tt.sub, tt.sid, "", "", before))
			require.Equal(t, uint64(1), r.Stats().Revoked)
			require.Contains(t, logs.String(), `"event":"set_received"`)
		})
	}
}

// TestPushIgnoredEvents: events it does not act on are acknowledged
// (202) and counted, never refused and never silent.
func TestPushIgnoredEvents(t *testing.T) {
	x := newTx(t, "k1")
	tests := []struct {
		name   string
		claims map[string]any
	}{
		{"unknown_event_type", map[string]any{"events": map[string]any{"https://schemas.openid.net/secevent/ssf/event-type/verification": map[string]any{"state": "x"}}}},
		{"credential_created", map[string]any{"events": map[string]any{EventCredentialChange: map[string]any{"change_type": "create"}}}},
		{"email_subject_not_configured", map[string]any{"sub_id": map[string]any{"format": "email", "email": "u1@example.com"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, l, _, logs := newTestReceiver(t, x, nil)
			require.Equal(t, http.StatusAccepted, push(r, x.sign(t, nil, tt.claims), nil).Code)
			require.Zero(t, l.Stats().Entries)
			require.Equal(t, ReceiverStats{Accepted: 1, Ignored: 1}, r.Stats())
			require.Contains(t, logs.String(), `"event":"set_ignored"`)
		})
	}
}

func TestPushEmailSubject(t *testing.T) {
	x := newTx(t, "k1")
	r, l, _, _ := newTestReceiver(t, x, func(c *ReceiverConfig) { c.AcceptEmail = true; c.SubjectIssuers = []string{"https://login.example/"} })
	require.Equal(t, http.StatusAccepted, push(r, x.sign(t, nil, map[string]any{"sub_id": map[string]any{"format": "email", "email": "u1@example.com"}}), nil).Code)
	require.True(t, l.Revoked("https://login.example/", "u1@example.com", "", "", "", t0))
}

// TestJTIFloodBounded: jti values are kept up to MaxJTIs; past it a new
// SET is answered 503 (deliver again) rather than an unexpired jti being
// forgotten, and room returns when they age out.
func TestJTIFloodBounded(t *testing.T) {
	x := newTx(t, "k1")
	r, _, clk, _ := newTestReceiver(t, x, func(c *ReceiverConfig) { c.MaxJTIs = 10; c.MaxSETAge = time.Minute })
	for i := range 10 {
		require.Equal(t, http.StatusAccepted, push(r, x.sign(t, nil, map[string]any{"jti": fmt.Sprint("j", i)}), nil).Code)
	}
	rec := push(r, x.sign(t, nil, map[string]any{"jti": "j10"}), nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	clk.Advance(time.Minute + 31*time.Second)
	late := x.sign(t, nil, map[string]any{"jti": "j11", "iat": clk.Now().Unix()})
	require.Equal(t, http.StatusAccepted, push(r, late, nil).Code)
	require.Equal(t, http.StatusBadRequest, push(r, x.sign(t, nil, map[string]any{"jti": "j0"}), nil).Code, "j0 forgotten, but too old to replay")
}

// TestRemoteTransmitterKeys: keys come from JWKSURL, fetched once, and
// refetched for an unknown kid after a minute.
func TestRemoteTransmitterKeys(t *testing.T) {
	x := newTx(t, "k1")
	var mu sync.Mutex
	serve, fetches := x.set, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		_ = json.NewEncoder(w).Encode(serve)
	}))
	t.Cleanup(srv.Close)
	r, _, clk, _ := newTestReceiver(t, x, func(c *ReceiverConfig) { c.Keys = nil; c.JWKSURL = srv.URL })
	require.NoError(t, r.Receive(t.Context(), []byte(x.sign(t, nil, nil))))
	require.NoError(t, r.Receive(t.Context(), []byte(x.sign(t, nil, map[string]any{"jti": "set-2"}))))
	x2 := newTx(t, "k2")
	mu.Lock()
	serve = x2.set
	mu.Unlock()
	require.ErrorIs(t, r.Receive(t.Context(), []byte(x2.sign(t, nil, map[string]any{"jti": "set-3"}))), ErrSETKey, "a minute has not passed")
	clk.Advance(61 * time.Second)
	require.NoError(t, r.Receive(t.Context(), []byte(x2.sign(t, nil, map[string]any{"jti": "set-4", "iat": clk.Now().Unix()}))))
	mu.Lock()
	require.Equal(t, 2, fetches)
	mu.Unlock()
}

// TestSETFloodWhileTransmitterKeysDownFetchesOnceAMinute: SETs with
// random kids pushed while the transmitter's JWKS is down are refused as
// unavailable (503, retried later) and cost its JWKS one fetch a minute,
// not one per SET.
func TestSETFloodWhileTransmitterKeysDownFetchesOnceAMinute(t *testing.T) {
	x := newTx(t, "k1")
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	r, _, clk, _ := newTestReceiver(t, x, func(c *ReceiverConfig) { c.Keys = nil; c.JWKSURL = srv.URL })
	sets := make([][]byte, 50)
	for i := range sets {
		sets[i] = []byte(x.sign(t, nil, map[string]any{"jti": fmt.Sprint("flood-", i)}))
	}
	var wg sync.WaitGroup
	for i, set := range sets {
		wg.Go(func() {
			err := r.Receive(t.Context(), set)
			if !errors.Is(err, ErrSETUnavailable) {
				t.Errorf("SET %d: %v, want ErrSETUnavailable", i, err)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 1, fetches.Load())
	clk.Advance(61 * time.Second)
	require.ErrorIs(t, r.Receive(t.Context(), []byte(x.sign(t, nil, map[string]any{"jti": "after", "iat": clk.Now().Unix()}))), ErrSETUnavailable)
	require.EqualValues(t, 2, fetches.Load(), "one more a minute later")
}

func TestNewReceiverRejectsBadConfig(t *testing.T) {
	x := newTx(t, "k1")
	l, _, _ := newTestList(t, nil)
	ok := ReceiverConfig{List: l, Issuer: transmitter, Audience: receiverAud, Keys: x.set}
	tests := []struct {
		name string
		mod  func(*ReceiverConfig)
	}{
		{"no_list", func(c *ReceiverConfig) { c.List = nil }},
		{"no_issuer", func(c *ReceiverConfig) { c.Issuer = "" }},
		{"no_audience", func(c *ReceiverConfig) { c.Audience = "" }},
		{"no_keys", func(c *ReceiverConfig) { c.Keys = nil }},
		{"hmac_allowed", func(c *ReceiverConfig) { c.Algorithms = []jwa.SignatureAlgorithm{jwa.HS256} }},
		{"alg_none_allowed", func(c *ReceiverConfig) { c.Algorithms = []jwa.SignatureAlgorithm{jwa.NoSignature} }},
		{"jwks_over_http", func(c *ReceiverConfig) { c.Keys = nil; c.JWKSURL = "http://idp.example/jwks" }},
		{"poll_over_http", func(c *ReceiverConfig) { c.PollURL = "http://idp.example/poll" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			_, err := NewReceiver(cfg)
			require.Error(t, err)
		})
	}
}

// TestConcurrentPushReplays: many goroutines push 50 distinct SETs, each
// 8 times at once; exactly one delivery of each is accepted and every
// other is refused as a replay.
func TestConcurrentPushReplays(t *testing.T) {
	const distinct, copies = 50, 8
	x := newTx(t, "k1")
	r, l, _, _ := newTestReceiver(t, x, nil)
	sets := make([]string, distinct)
	for i := range sets {
		sets[i] = x.sign(t, nil, map[string]any{"jti": fmt.Sprint("c", i), "sub_id": map[string]any{"format": "opaque", "id": fmt.Sprint("u", i)}})
	}
	codes := make(chan int, distinct*copies)
	var wg sync.WaitGroup
	for c := range copies {
		wg.Go(func() {
			for i := range distinct {
				codes <- push(r, sets[(i+c)%distinct], nil).Code
			}
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	require.Equal(t, map[int]int{http.StatusAccepted: distinct, http.StatusBadRequest: distinct * (copies - 1)}, count)
	require.Equal(t, ReceiverStats{Accepted: distinct, Rejected: distinct * (copies - 1), Revoked: distinct}, r.Stats())
	require.Equal(t, distinct, l.Stats().Entries)
}

// flakyStore is a Store whose Publish fails while down is set.
type flakyStore struct {
	fakeStore
	down atomic.Bool
}

func (f *flakyStore) Publish(context.Context, []byte, time.Time) error {
	if f.down.Load() {
		return errors.New("store down")
	}
	return nil
}

// TestPushWhileStoreDown: a SET whose revocation cannot be shared is
// answered 503 (deliver again) with its jti left unused, so that the
// redelivery, once the store is back, is accepted and shared rather than
// refused as a replay.
func TestPushWhileStoreDown(t *testing.T) {
	x := newTx(t, "k1")
	f := &flakyStore{fakeStore: fakeStore{recs: make(chan []byte), synced: make(chan struct{}, 1)}}
	f.down.Store(true)
	l, clk, _ := newTestList(t, func(c *Config) { c.Store = f })
	r, err := NewReceiver(ReceiverConfig{List: l, Issuer: transmitter, Audience: receiverAud, Keys: x.set, Now: clk.Now, Logger: slogTo(io.Discard)})
	require.NoError(t, err)
	set := x.sign(t, nil, nil)
	rec := push(r, set, nil)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.True(t, l.Revoked(transmitter, "u1", "", "", "", t0), "held on this instance meanwhile")
	f.down.Store(false)
	require.Equal(t, http.StatusAccepted, push(r, set, nil).Code)
	require.Equal(t, http.StatusBadRequest, push(r, set, nil).Code, "now it is a replay")
}
