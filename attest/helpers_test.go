package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"testing"

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

type ecdsaPub = ecdsa.PublicKey

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// assessRequest is what the risk Handler decides for r: its Evidence, as
// [Verifier.EvidenceFrom] gathers it, assessed under th.
func assessRequest(v *Verifier, r *http.Request, th Thresholds) (*Risk, error) {
	ev, err := v.EvidenceFrom(r)
	if err != nil {
		return nil, err
	}
	return v.Assess(r.Context(), ev, th)
}
