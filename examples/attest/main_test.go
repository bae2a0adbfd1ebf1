package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

func TestAttestExample(t *testing.T) {
	ca, err := attesttest.NewCA(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	require.NoError(t, err)
	h, _, err := newHandler(ca, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	dev, err := attesttest.NewDevice(appID)
	require.NoError(t, err)

	challenge := func(keyID string) string {
		req, _ := http.NewRequest("POST", srv.URL+"/attest/challenge", nil)
		if keyID != "" {
			req.Header.Set(appattest.HeaderKeyID, keyID)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out struct{ Challenge string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out.Challenge
	}
	ch := challenge("")
	obj, err := ca.Attest(dev, appattest.ClientDataHash([]byte(ch)), attesttest.AttestOptions{})
	require.NoError(t, err)
	body, _ := json.Marshal(map[string]string{"KeyID": dev.KeyID, "Attestation": base64.StdEncoding.EncodeToString(obj), "Challenge": ch})
	resp, err := http.Post(srv.URL+"/attest/enroll", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 201, resp.StatusCode)

	premium := func(forge bool) int {
		ch := challenge(dev.KeyID)
		as, _ := dev.Assert(appattest.ClientData("POST", "/premium", "", nil, ch))
		if forge {
			as = []byte("forged")
		}
		req, _ := http.NewRequest("POST", srv.URL+"/premium", nil)
		req.Header.Set("X-User", "u1")
		req.Header.Set(appattest.HeaderKeyID, dev.KeyID)
		req.Header.Set(appattest.HeaderChallenge, ch)
		req.Header.Set(appattest.HeaderAssertion, base64.StdEncoding.EncodeToString(as))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, premium(false))
	require.Equal(t, 401, premium(true), "a forged assertion steps up")
}
