package main

import (
	"encoding/base64"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

const testAppID = "ABCDE12345.com.example.shop"

// attested is an attesttest device with its attestation for challenge,
// written to files with the test root.
type attested struct {
	dev       *attesttest.Device
	object    string // attestation file (base64 text)
	roots     string // PEM file of the test root
	challenge string
}

func attestDevice(t *testing.T) *attested {
	t.Helper()
	now := time.Now()
	ca, err := attesttest.NewCA(now.Add(-time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	dev, err := attesttest.NewDevice(testAppID)
	require.NoError(t, err)
	const challenge = "c2VydmVyLWNoYWxsZW5nZS0x"
	obj, err := ca.Attest(dev, appattest.ClientDataHash([]byte(challenge)), attesttest.AttestOptions{})
	require.NoError(t, err)
	a := &attested{
		dev:       dev,
		object:    writeFile(t, "attestation.b64", []byte(base64.StdEncoding.EncodeToString(obj))),
		roots:     writeFile(t, "roots.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root()})),
		challenge: challenge,
	}
	return a
}

func TestAttestVerifyAttestation(t *testing.T) {
	a := attestDevice(t)
	r := cliRun(t, nil, "attest", "verify", "-attestation", a.object, "-key-id", a.dev.KeyID, "-team-id", "ABCDE12345",
		"-app-id", "com.example.shop", "-challenge", a.challenge, "-roots", a.roots)
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	for _, check := range []string{"format", "certificate chain", "nonce", "key ID: SHA-256", "app ID", "counter: 0", "environment: AAGUID is production"} {
		require.Regexp(t, `(?m)^  ok +`+regexp.QuoteMeta(check), r.stdout)
	}
	require.Contains(t, r.stdout, "attested: app ID "+testAppID+", environment production, OS 18.1")
	require.Contains(t, r.stdout, "-----BEGIN PUBLIC KEY-----")
	require.NotContains(t, r.stdout, "REFUSED")
}

func TestAttestVerifyRefusals(t *testing.T) {
	a := attestDevice(t)
	tests := []struct {
		name     string
		args     []string
		refusing string // the check that refuses
	}{
		{"attestation_for_another_challenge", []string{"-challenge", "another-challenge", "-app-id", testAppID, "-roots", a.roots}, "nonce"},
		{"attestation_for_another_app", []string{"-challenge", a.challenge, "-app-id", "ABCDE12345.com.example.other", "-roots", a.roots}, "app ID"},
		{"attestation_from_a_development_build", []string{"-challenge", a.challenge, "-app-id", testAppID, "-roots", a.roots, "-env", "development"}, "environment"},
		{"attestation_not_from_apple", []string{"-challenge", a.challenge, "-app-id", testAppID}, "certificate chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cliRun(t, nil, append([]string{"attest", "verify", "-attestation", a.object, "-key-id", a.dev.KeyID}, tt.args...)...)
			require.Equal(t, exitFailure, r.code, r.stdout+r.stderr)
			require.Regexp(t, `(?m)^  REFUSED +`+regexp.QuoteMeta(tt.refusing), r.stdout)
			require.Regexp(t, `(?m)^refused$`, r.stdout)
			require.Regexp(t, `(?m)^  ok +format`, r.stdout, "the checks before the refusal passed")
		})
	}
}

func TestAttestVerifyAssertion(t *testing.T) {
	a := attestDevice(t)
	att := cliRun(t, nil, "attest", "verify", "-attestation", a.object, "-key-id", a.dev.KeyID, "-app-id", testAppID,
		"-challenge", a.challenge, "-roots", a.roots)
	require.Equal(t, exitOK, att.code, att.stdout)
	pubFile := writeFile(t, "key.pem", []byte(att.stdout[strings.Index(att.stdout, "-----BEGIN PUBLIC KEY-----"):]))

	body := `{"amount":10,"to":"alice"}`
	bodyFile := writeFile(t, "body.json", []byte(body))
	const challenge = "YXNzZXJ0aW9uLWNoYWxsZW5nZQ"
	obj, err := a.dev.Assert(appattest.ClientData("POST", "/v1/transfer", "currency=EUR", []byte(body), challenge))
	require.NoError(t, err)
	assertion := writeFile(t, "assertion.cbor", obj)
	base := []string{"attest", "verify", "-assertion", assertion, "-public-key", pubFile, "-app-id", testAppID,
		"-method", "POST", "-body-file", bodyFile}

	tests := []struct {
		name     string
		args     []string
		want     int
		refusing string
	}{
		{"assertion_over_the_request", []string{"-url", "https://api.example.com/v1/transfer?currency=EUR", "-challenge", challenge}, exitOK, ""},
		{"assertion_for_another_challenge", []string{"-url", "https://api.example.com/v1/transfer?currency=EUR", "-challenge", "other"}, exitFailure, "signature"},
		{"assertion_query_rewritten", []string{"-url", "https://api.example.com/v1/transfer?currency=USD", "-challenge", challenge}, exitFailure, "signature"},
		{"assertion_replayed_counter", []string{"-url", "https://api.example.com/v1/transfer?currency=EUR", "-challenge", challenge, "-counter", "1"}, exitFailure, "counter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cliRun(t, nil, append(base, tt.args...)...)
			require.Equal(t, tt.want, r.code, r.stdout+r.stderr)
			if tt.refusing == "" {
				require.Contains(t, r.stdout, "verified: app ID "+testAppID+", counter 1 (stored 0)")
				require.NotContains(t, r.stdout, "REFUSED")
				return
			}
			require.Regexp(t, `(?m)^  REFUSED +`+regexp.QuoteMeta(tt.refusing), r.stdout)
		})
	}
}
