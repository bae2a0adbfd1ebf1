package appattest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRealReceipts(t *testing.T) {
	files, err := filepath.Glob("testdata/veehaitch-*.json")
	require.NoError(t, err)
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var v struct {
			Receipts []struct {
				Receipt  string `json:"receipt_b64"`
				Expected struct {
					Type        string `json:"type"`
					AppID       string `json:"app_id"`
					Environment string `json:"environment"`
					Created     string `json:"creation_time"`
					RiskMetric  int    `json:"risk_metric"`
					VerifyAt    string `json:"verify_at"`
				} `json:"expected"`
			} `json:"receipts"`
		}
		require.NoError(t, json.Unmarshal(b, &v))
		for _, rc := range v.Receipts {
			n++
			at := mustTime(t, rc.Expected.VerifyAt)
			r, err := ParseReceipt(b64(t, rc.Receipt), nil, at)
			require.NoError(t, err, f)
			require.Equal(t, rc.Expected.Type, r.Type)
			require.Equal(t, rc.Expected.AppID, r.AppID)
			require.Equal(t, rc.Expected.Environment, r.Environment)
			require.Equal(t, rc.Expected.RiskMetric, r.RiskMetric)
			created, _ := time.Parse(time.RFC3339Nano, rc.Expected.Created)
			require.True(t, created.Equal(r.CreatedAt))

			_, err = ParseReceipt(b64(t, rc.Receipt), nil, at.AddDate(2, 0, 0))
			require.ErrorIs(t, err, ErrReceipt, "the short-lived signer has expired")
			_, err = ParseReceipt(b64(t, rc.Receipt), appleAppAttestationRoots(), at)
			require.ErrorIs(t, err, ErrReceipt, "wrong root")
			tampered := b64(t, rc.Receipt)
			tampered[len(tampered)/2] ^= 1
			_, err = ParseReceipt(tampered, nil, at)
			require.ErrorIs(t, err, ErrReceipt)
		}
	}
	require.Equal(t, 20, n)
}
