package main

import (
	"context"
	"encoding/base64"
	"log/slog"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/signing"
	"github.com/stretchr/testify/require"
)

// enrolDemo starts the demo API in memory and returns a client and a
// payments token of user-42.
func enrolDemo(t *testing.T) (*client, string) {
	t.Helper()
	d, err := start(startOptions{addr: "127.0.0.1:0", plain: true, logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(d.close)
	c, err := newClient(d.base, d.api)
	require.NoError(t, err)
	token, err := c.issuer.mint(map[string]any{"scope": "payments"}, time.Now(), 5*time.Minute)
	require.NoError(t, err)
	return c, token
}

// A challenge issued to one account does not enrol a key for another
// (malware relaying a victim's challenge), a made-up one enrols nothing,
// and neither consumes anything: the owner still enrols with it.
func TestAndroidEnrolmentWithAnotherAccountsOrForgedChallengeRefused(t *testing.T) {
	c, token := enrolDemo(t)
	ctx := context.Background()
	issued, err := c.enrolChallenge(ctx, token)
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(issued)
	require.NoError(t, err)

	mallory, err := c.issuer.mint(map[string]any{"scope": "payments", "sub": "mallory"}, time.Now(), 5*time.Minute)
	require.NoError(t, err)
	r, _ := c.enrolAndroidWith(ctx, "relayed challenge", true, 401, mallory, "android-relayed-0123456789", issued, attesttest.AndroidKey{Challenge: raw})
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)
	require.Equal(t, "invalid-attestation", r.reason)

	forged := base64.RawURLEncoding.EncodeToString(make([]byte, 40))
	r, _ = c.enrolAndroidWith(ctx, "forged challenge", true, 401, token, "android-forged-0123456789", forged, attesttest.AndroidKey{Challenge: make([]byte, 40)})
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)

	r, _ = c.enrolAndroidWith(ctx, "owner", false, 201, token, "android-owner-0123456789", issued, attesttest.AndroidKey{Challenge: raw})
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)
}

// A challenge is single use: a second key attested with it is refused
// (the reason logged: replay), and an enrolled key ID cannot be taken
// over by a second enrolment (409).
func TestAndroidEnrolmentReplayedChallengeAndKeyIDTakeoverRefused(t *testing.T) {
	c, token := enrolDemo(t)
	ctx := context.Background()
	r, keyID, _ := c.enrolAndroid(ctx, "first", false, 201, token, attesttest.AndroidKey{})
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)

	issued, err := c.enrolChallenge(ctx, token)
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(issued)
	require.NoError(t, err)
	r, _ = c.enrolAndroidWith(ctx, "takeover", true, 409, token, keyID, issued, attesttest.AndroidKey{Challenge: raw})
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)
	require.Equal(t, "device-key-taken", r.reason)

	r, _ = c.enrolAndroidWith(ctx, "replayed challenge", true, 401, token, "android-second-0123456789", issued, attesttest.AndroidKey{Challenge: raw})
	r = c.because(r, "replay")
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)
}

// An Android enrolment cannot take an iPhone's App Attest key ID (sent in
// its headers) before the iPhone enrols its Secure Enclave key under it:
// Android key IDs live in a share of the key space of their own.
func TestAndroidEnrolmentSquattingAnAppAttestKeyIDRefused(t *testing.T) {
	c, token := enrolDemo(t)
	ctx := context.Background()
	issued, err := c.enrolChallenge(ctx, token)
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(issued)
	require.NoError(t, err)
	r, _ := c.enrolAndroidWith(ctx, "squat", true, 409, token, c.device.KeyID, issued, attesttest.AndroidKey{Challenge: raw})
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)

	r = c.enroll(ctx, token) // the iPhone attests its App Attest key
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)
	r, _ = c.enrolSecureEnclave(ctx, token)
	require.True(t, r.ok(), "the iPhone enrols under its key ID: %d %s %v", r.status, r.reason, r.err)
}

// A device key proves the device of the account that enrolled it, and no
// other: mallory enrols a key of her own phone under her account, steals
// user-42's access token (a log, a proxy, a shared laptop) and signs a
// payment with her key and his token. The enrolment challenge was bound
// to mallory's account, so the key must be too; the Secure Enclave key of
// user-42's iPhone likewise pays only with user-42's tokens.
func TestDevicePaymentWithAnotherAccountsDeviceKeyRefused(t *testing.T) {
	c, victim := enrolDemo(t)
	ctx := context.Background()
	mallory, err := c.issuer.mint(map[string]any{"scope": "payments", "sub": "mallory"}, time.Now(), 5*time.Minute)
	require.NoError(t, err)
	r, keyID, key := c.enrolAndroid(ctx, "mallory enrols her phone", false, 201, mallory, attesttest.AndroidKey{})
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)
	require.True(t, c.devicePay(ctx, "mallory pays as mallory", mallory, keyID, key).ok())

	s, err := signing.NewKeySigner(keyID, key)
	require.NoError(t, err)
	h, body, err := c.signPay("/v1/pay/device", victim, s, `{"amount":900}`)
	require.NoError(t, err)
	r = c.do(ctx, "mallory pays with user-42's token", true, 401, call{method: "POST", path: "/v1/pay/device", header: h, body: body})
	require.True(t, r.ok(), "%d %s %v", r.status, r.body, r.err)

	// The support desk revokes a lost phone's key by account and key ID.
	require.NoError(t, c.revokeDeviceKey(ctx, "mallory", keyID))
	h, body, err = c.signPay("/v1/pay/device", mallory, s, `{"amount":900}`)
	require.NoError(t, err)
	r = c.because(c.do(ctx, "revoked", true, 401, call{method: "POST", path: "/v1/pay/device", header: h, body: body}), "revoked_key")
	require.True(t, r.ok(), "%d %s %v", r.status, r.reason, r.err)
}
