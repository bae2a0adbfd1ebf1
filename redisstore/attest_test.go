package redisstore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest"
	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/playintegrity"
	conformance "github.com/apiguard/apiguard/internal/attesttest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

func TestAttestStoreConformance(t *testing.T) {
	srv := redistest.Shared(t)
	pair := func(t *testing.T) (*AttestStore, *AttestStore) {
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		// A generous timeout: the concurrency tests run 64 goroutines on a
		// loaded machine, and a slow answer must not open the breaker.
		o := Options{Timeout: 5 * time.Second}
		return NewAttestStore(newClient(t, srv.Addr()), o), NewAttestStore(newClient(t, srv.Addr()), o)
	}
	conformance.RunKeyStore(t, func(t *testing.T) (conformance.KeyStore, conformance.KeyStore) { return pair(t) })
	conformance.RunChallengeStore(t, func(t *testing.T) (conformance.ChallengeStore, conformance.ChallengeStore) { return pair(t) })
	conformance.RunHistoryStore(t, func(t *testing.T) (conformance.HistoryStore, conformance.HistoryStore) { return pair(t) })
}

// TestAttestRedisKeysHoldNoRawIdentifiers runs attest end to end on a real
// Redis (enrolment, an assertion through the risk middleware with a
// located subject, single-use Play Integrity tokens and nonces) with the
// demo's prefix, then scans every key: the demo's Redis used to hold
// apiguard-demo:aa:hist:user-42. Each key is prefix, purpose tag and
// digest; none holds a subject, key ID, challenge, token, nonce, App ID
// or package name, nor does any field of a history hash.
func TestAttestRedisKeysHoldNoRawIdentifiers(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := newClient(t, srv.Addr())
	opts := Options{Prefix: "apiguard-demo:", Timeout: 5 * time.Second}
	store, replays := NewAttestStore(rdb, opts), NewReplayStore(rdb, opts)
	ctx := context.Background()
	const appID, pkg, subject = "ABCDE12345.com.example.shop", "com.example.shop", "user-42"
	now := time.Now()

	ca, err := attesttest.NewCA(now.Add(-time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	aa, err := appattest.New(appattest.Config{AppIDs: []string{appID}, Roots: ca.Roots(),
		Keys: store, Challenges: store, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	keys, err := attesttest.NewPlayKeys()
	require.NoError(t, err)
	const standardToken, classicNonce = "standard-token-of-the-device", "classic-nonce-issued-by-the-server"
	body := []byte(`{"item":"gold"}`)
	hash := playintegrity.RequestHash("POST", "/premium", "plan=gold", body)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"tokenPayloadExternal": attesttest.Verdict(pkg, "", hash, time.Now().UnixMilli(), "cert")})
	}))
	defer api.Close()
	play, err := playintegrity.New(playintegrity.Config{
		Policy:         playintegrity.Policy{PackageName: pkg, CertificateDigests: []string{"cert"}},
		DecryptionKeys: [][]byte{keys.DecryptionKey}, VerificationKeys: []*ecdsa.PublicKey{&keys.SigningKey.PublicKey},
		Nonces: replays, APIBaseURL: api.URL, HTTPClient: api.Client(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	risk, err := attest.New(attest.Config{AppAttest: aa, PlayIntegrity: play, History: store,
		Locator: &attest.HeaderLocator{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		Subject: func(*http.Request) (string, error) { return subject, nil }, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)

	// Enrolment.
	dev, err := attesttest.NewDevice(appID)
	require.NoError(t, err)
	enrolCh, _, err := aa.IssueChallenge(ctx, "")
	require.NoError(t, err)
	obj, err := ca.Attest(dev, appattest.ClientDataHash([]byte(enrolCh)), attesttest.AttestOptions{})
	require.NoError(t, err)
	require.NoError(t, aa.ConsumeChallenge(ctx, enrolCh, ""))
	_, err = aa.VerifyAttestation(ctx, dev.KeyID, obj, appattest.ClientDataHash([]byte(enrolCh)))
	require.NoError(t, err)
	// An assertion through the risk middleware, located; a challenge left
	// unused; a Play Integrity standard token; a classic token.
	ch, _, err := aa.IssueChallenge(ctx, dev.KeyID)
	require.NoError(t, err)
	unused, _, err := aa.IssueChallenge(ctx, dev.KeyID)
	require.NoError(t, err)
	as, err := dev.Assert(appattest.ClientData("POST", "/premium", "plan=gold", body, ch))
	require.NoError(t, err)
	served := 0
	h := risk.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	r := httptest.NewRequest("POST", "/premium?plan=gold", bytes.NewReader(body))
	r.Header.Set(appattest.HeaderKeyID, dev.KeyID)
	r.Header.Set(appattest.HeaderChallenge, ch)
	r.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(as))
	r.Header.Set("X-Geo-Latitude", "48.8566")
	r.Header.Set("X-Geo-Longitude", "2.3522")
	h.ServeHTTP(httptest.NewRecorder(), r)
	r = httptest.NewRequest("POST", "/premium?plan=gold", bytes.NewReader(body))
	r.Header.Set(playintegrity.Header, standardToken)
	h.ServeHTTP(httptest.NewRecorder(), r)
	require.Equal(t, 2, served)
	classic, err := keys.Classic(attesttest.Verdict(pkg, classicNonce, "", time.Now().UnixMilli(), "cert"))
	require.NoError(t, err)
	_, err = play.VerifyClassic(ctx, classic, classicNonce)
	require.NoError(t, err)

	found, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(found), 5, "a key, a challenge, a history, two single-use records: %v", found)
	raw := []string{subject, dev.KeyID, base64.RawURLEncoding.EncodeToString(mustB64(t, dev.KeyID)), hex.EncodeToString(mustB64(t, dev.KeyID)),
		ch, unused, enrolCh, standardToken, classicNonce, appID, pkg}
	pattern := regexp.MustCompile(`^apiguard-demo:[a-z0-9-]+:[0-9a-f]{64}$`)
	for _, k := range found {
		require.Regexp(t, pattern, k)
		for _, id := range raw {
			require.NotContains(t, k, id)
		}
		if typ, _ := rdb.Type(ctx, k).Result(); typ == "hash" {
			fields, err := rdb.HKeys(ctx, k).Result()
			require.NoError(t, err)
			for _, f := range fields {
				for _, id := range raw {
					require.NotContains(t, f, id, "a hash field of %s", k)
				}
			}
		}
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}
