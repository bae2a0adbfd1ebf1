package attest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

// TestRiskReasonsNotDisclosed: a step-up or a denial that lists the
// signals that fired tells an attacker what to evade (fake the location,
// wait out the travel, hide the SIM swap). By default the client gets a
// generic detail and the action to take; the reasons go to the log only.
// Config.InsecureExposeReasons puts them back in the body, for debugging.
func TestRiskReasonsNotDisclosed(t *testing.T) {
	tests := []struct {
		name    string
		expose  bool
		wantKey bool
	}{
		{name: "risk_reasons_not_disclosed"},
		{name: "risk_reasons_exposed_when_opted_in", expose: true, wantKey: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRiskEnv(t, func(c *Config) {
				c.InsecureExposeReasons = tt.expose
				c.SIMSwap = fakeSIM{swapped: map[string]bool{"kim": true}}
			})
			d := e.device(attesttest.AttestOptions{})
			premium := e.v.Require(Thresholds{Monitor: 20, StepUp: 50, Deny: 95})
			e.serve(premium, e.request(d, "kim", paris, ""))
			*e.clock = e.clock.Add(time.Hour)
			rec, _, _ := e.serve(premium, e.request(d, "kim", sydney, ""))
			require.Equal(t, 401, rec.Code)
			var p map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
			require.Equal(t, "mfa", p["action"], "the client is told what to do")
			_, has := p["reasons"]
			require.Equal(t, tt.wantKey, has)
			for _, signal := range []string{ReasonImpossibleTravel, ReasonSIMSwap} {
				require.Equal(t, tt.expose, strings.Contains(rec.Body.String(), signal), signal)
				require.Contains(t, e.logs.String(), signal, "the reasons are logged")
			}

			// A denial says no more.
			r := e.request(d, "kim", paris, "")
			r.Header.Set(appattest.HeaderAssertion, "Zm9yZ2Vk")
			rec, _, _ = e.serve(premium, r)
			require.Equal(t, 403, rec.Code)
			require.Equal(t, tt.expose, strings.Contains(rec.Body.String(), ReasonAttestationFailed))
		})
	}
}
