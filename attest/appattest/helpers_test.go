package appattest

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

// logSink collects log output from concurrent writers.
type logSink = testkit.LogSink

func x509PoolFromFile(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	p := x509.NewCertPool()
	require.True(t, p.AppendCertsFromPEM(b))
	return p
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// bindingEnv is a verifier with one enrolled device.
type bindingEnv struct {
	a   *Verifier
	dev *attesttest.Device
}

func newBindingEnv(t *testing.T, legacy bool) *bindingEnv {
	t.Helper()
	a, ca, _ := newSynthetic(t)
	a.cfg.InsecureAllowLegacyClientData = legacy
	dev, err := attesttest.NewDevice(testAppID)
	require.NoError(t, err)
	cdh := ClientDataHash([]byte("enrol"))
	obj, err := ca.Attest(dev, cdh, attesttest.AttestOptions{})
	require.NoError(t, err)
	_, err = a.VerifyAttestation(context.Background(), dev.KeyID, obj, cdh)
	require.NoError(t, err)
	return &bindingEnv{a: a, dev: dev}
}

// request signs clientData(challenge) with the device and sends target.
func (e *bindingEnv) request(t *testing.T, target, body string, clientData func(ch string) []byte) *http.Request {
	t.Helper()
	ch, _, err := e.a.IssueChallenge(context.Background(), e.dev.KeyID)
	require.NoError(t, err)
	as, err := e.dev.Assert(clientData(ch))
	require.NoError(t, err)
	r := httptest.NewRequest("POST", target, strings.NewReader(body))
	r.Header.Set(HeaderKeyID, e.dev.KeyID)
	r.Header.Set(HeaderChallenge, ch)
	r.Header.Set(HeaderAssertion, base64.StdEncoding.EncodeToString(as))
	return r
}
