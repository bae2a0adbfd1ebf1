package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/apiguard/apiguard/signing"
	"github.com/stretchr/testify/require"
)

// requireWalkthrough runs the walkthrough with args and checks each
// step's status, and that the revoked key was refused for being revoked
// (the answer, a plain 401, does not say; the log does) by both
// instances.
func requireWalkthrough(t *testing.T, store string, args ...string) {
	t.Helper()
	var out, log bytes.Buffer
	require.NoError(t, run(context.Background(), append([]string{"-v"}, args...), &out, &log), out.String())
	s := out.String()
	require.Contains(t, s, "device key store: "+store)
	for _, step := range []string{
		"1. enrol the Keystore key with its attestation chain at A      201 (expected 201) ok",
		"2. payment signed by the device key, at B                      200 (expected 200) ok",
		"3. revoke the device key (one call)                            done",
		"4. payment signed by the revoked key, at A                     401 (expected 401) ok",
		"5. payment signed by the revoked key, at B                     401 (expected 401) ok",
	} {
		require.Contains(t, s, step+"\n")
	}
	require.Contains(t, s, "every step as expected")
	require.Equal(t, 2, strings.Count(log.String(), `"reason":"revoked_key"`), log.String())
}

func TestDeviceKeysInMemory(t *testing.T) {
	requireWalkthrough(t, "in memory")
}

// With Redis, the instances share the store: the key enrolled at A
// verifies at B, and one revocation refuses it at both.
func TestDeviceKeysWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	requireWalkthrough(t, "Redis "+srv.Addr(), "-redis", srv.Addr())
	keys, err := srv.Do("KEYS", "apiguard-devicekeys:dk:*")
	require.NoError(t, err)
	require.Equal(t, "*1", keys, "the device key was stored in Redis")
}

func TestDeviceKeysRedisDown(t *testing.T) {
	var out, log bytes.Buffer
	err := run(context.Background(), []string{"-redis", "127.0.0.1:1"}, &out, &log)
	require.ErrorContains(t, err, "redis 127.0.0.1:1")
}

func TestDeviceKeysRejectsBadFlag(t *testing.T) {
	var out, log bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-nope"}, &out, &log))
}

// instance starts one in-memory instance and returns its URL and the
// test root its chains come from.
func instance(t *testing.T) (string, *attesttest.AndroidCA) {
	t.Helper()
	st, closeStores, err := newStores("")
	require.NoError(t, err)
	t.Cleanup(closeStores)
	ca, err := attesttest.NewAndroidCA(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	require.NoError(t, err)
	h, closeInstance, err := newInstance(st, ca, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(closeInstance)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, ca
}

func attested(t *testing.T, ca *attesttest.AndroidCA, challenge string, k attesttest.AndroidKey) ([][]byte, *ecdsa.PrivateKey) {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(challenge)
	require.NoError(t, err)
	k.Challenge, k.Packages, k.SignatureDigests = raw, []string{pkg}, [][]byte{signer[:]}
	chain, key, err := ca.Attest(k)
	require.NoError(t, err)
	return chain, key
}

// A key attested with a challenge the service never issued (made up by
// an attacker, or expired) is refused, as is one from an unlocked device.
func TestDeviceKeysForgedChallengeAndUnlockedBootloaderRefused(t *testing.T) {
	base, ca := instance(t)
	ctx := context.Background()
	forged := base64.RawURLEncoding.EncodeToString(make([]byte, 40))
	chain, _ := attested(t, ca, forged, attesttest.AndroidKey{})
	status, err := postEnrolment(ctx, base+"/device-keys/android", "phone-forged-0123456789", chain, forged)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status)

	challenge, err := getChallenge(ctx, base+"/device-keys/challenge")
	require.NoError(t, err)
	chain, _ = attested(t, ca, challenge, attesttest.AndroidKey{Unlocked: true, BootState: 2})
	status, err = postEnrolment(ctx, base+"/device-keys/android", "phone-unlocked-0123456789", chain, challenge)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status)
}

// An enrolled key ID cannot be taken over by a second enrolment, and the
// first key still signs.
func TestDeviceKeysKeyIDTakeoverRefused(t *testing.T) {
	base, ca := instance(t)
	ctx := context.Background()
	var keys []*ecdsa.PrivateKey
	for _, want := range []int{http.StatusCreated, http.StatusConflict} {
		challenge, err := getChallenge(ctx, base+"/device-keys/challenge")
		require.NoError(t, err)
		chain, key := attested(t, ca, challenge, attesttest.AndroidKey{})
		status, err := postEnrolment(ctx, base+"/device-keys/android", "phone-taken-0123456789", chain, challenge)
		require.NoError(t, err)
		require.Equal(t, want, status)
		keys = append(keys, key)
	}
	status, _, err := pay(ctx, base+"/pay", "phone-taken-0123456789", keys[0])
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	status, _, err = pay(ctx, base+"/pay", "phone-taken-0123456789", keys[1])
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, "the second key did not take the ID")
}

// instances starts two in-memory instances on the same stores, as run
// does, and returns their URLs and the test root.
func instances(t *testing.T) (a, b string, ca *attesttest.AndroidCA) {
	t.Helper()
	st, closeStores, err := newStores("")
	require.NoError(t, err)
	t.Cleanup(closeStores)
	ca, err = attesttest.NewAndroidCA(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	require.NoError(t, err)
	var urls [2]string
	for i := range urls {
		h, closeInstance, err := newInstance(st, ca, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		t.Cleanup(closeInstance)
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	return urls[0], urls[1], ca
}

// The two instances share the key store, so they must share what is
// single use too: an enrolment replayed at B (its stateless challenge
// verifies there as well) enrols the key under a second ID that a
// revocation of the first leaves valid, and a signed payment captured at
// A and replayed at B (one authority behind a load balancer) is paid
// twice.
func TestDeviceKeysReplayAtTheOtherInstanceRefused(t *testing.T) {
	a, b, ca := instances(t)
	ctx := context.Background()
	challenge, err := getChallenge(ctx, a+"/device-keys/challenge")
	require.NoError(t, err)
	chain, key := attested(t, ca, challenge, attesttest.AndroidKey{})
	status, err := postEnrolment(ctx, a+"/device-keys/android", "phone-first-0123456789", chain, challenge)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, status)
	status, err = postEnrolment(ctx, b+"/device-keys/android", "phone-second-0123456789", chain, challenge)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, "the challenge was used at A")

	s, err := signing.NewKeySigner("phone-first-0123456789", key)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, "POST", a+"/pay", strings.NewReader(`{"amount":250}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	require.NoError(t, s.Sign(req))
	for i, base := range []string{a, b} {
		replay, err := http.NewRequestWithContext(ctx, "POST", base+"/pay", strings.NewReader(`{"amount":250}`))
		require.NoError(t, err)
		replay.Header = req.Header.Clone()
		replay.Host = req.Host // behind one load balancer: one authority
		status, _, err := send(replay)
		require.NoError(t, err)
		require.Equal(t, []int{http.StatusOK, http.StatusUnauthorized}[i], status, "at %s", base)
	}
}
