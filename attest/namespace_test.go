package attest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/stretchr/testify/require"
)

// TestTwoServicesOneStore: two services (two apps, two verifiers) share
// one set of stores, as they would share one Redis. Neither can take the
// other's challenges, see the other's keys, or mix its users' history
// with the other's users of the same name.
func TestTwoServicesOneStore(t *testing.T) {
	clock := synthNow
	now := func() time.Time { return clock }
	keys, chs, hist := newMemKeys(), newMemChallenges(), newMemoryHistoryStore(100, now)
	ca, err := attesttest.NewCA(synthNow.Add(-time.Hour), synthNow.Add(time.Hour))
	require.NoError(t, err)
	service := func(appID string) (*appattest.Verifier, *Verifier) {
		a, err := appattest.New(appattest.Config{AppIDs: []string{appID}, Roots: ca.Roots(), Keys: keys, Challenges: chs,
			Now: func() time.Time { return clock }, Logger: nopLogger()})
		require.NoError(t, err)
		v, err := New(Config{AppAttest: a, History: hist, Locator: &HeaderLocator{TrustedProxies: cdn},
			Subject: func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil },
			Now:     func() time.Time { return clock }, Logger: nopLogger()})
		require.NoError(t, err)
		return a, v
	}
	shopA, riskA := service("ABCDE12345.com.example.shop")
	_, riskB := service("VWXYZ67890.com.other.bank")
	shopB, _ := service("VWXYZ67890.com.other.bank")
	ctx := context.Background()

	t.Run("challenge_of_another_service_refused", func(t *testing.T) {
		ch, _, err := shopA.IssueChallenge(ctx, "")
		require.NoError(t, err)
		require.ErrorIs(t, shopB.ConsumeChallenge(ctx, ch, ""), appattest.ErrChallenge, "the bank's verifier never takes the shop's challenge")
		require.NoError(t, shopA.ConsumeChallenge(ctx, ch, ""), "and the shop's is still there")
	})
	t.Run("history_of_another_service_not_shared", func(t *testing.T) {
		// user-42 of the shop in Paris, user-42 of the bank in Sydney a
		// minute later: two people, no impossible travel.
		e := &riskEnv{t: t, a: shopA, ca: ca, clock: &clock}
		d, err := attesttest.NewDevice("ABCDE12345.com.example.shop")
		require.NoError(t, err)
		cdh := appattest.ClientDataHash([]byte("e"))
		obj, err := ca.Attest(d, cdh, attesttest.AttestOptions{})
		require.NoError(t, err)
		_, err = shopA.VerifyAttestation(ctx, d.KeyID, obj, cdh)
		require.NoError(t, err)
		_, err = assessRequest(riskA, e.request(d, "user-42", paris, ""), Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
		require.NoError(t, err)
		clock = clock.Add(time.Minute)
		risk, err := assessRequest(riskB, e.request(nil, "user-42", sydney, ""), Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
		require.NoError(t, err)
		require.NotContains(t, risk.Reasons, ReasonImpossibleTravel)
		// The shop's own user-42 in Sydney a minute later is.
		clock = clock.Add(time.Minute)
		risk, err = assessRequest(riskA, e.request(d, "user-42", sydney, ""), Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
		require.NoError(t, err)
		require.Contains(t, risk.Reasons, ReasonImpossibleTravel)
	})
	t.Run("keys_under_their_app", func(t *testing.T) {
		d, err := attesttest.NewDevice("ABCDE12345.com.example.shop")
		require.NoError(t, err)
		cdh := appattest.ClientDataHash([]byte("k"))
		obj, err := ca.Attest(d, cdh, attesttest.AttestOptions{})
		require.NoError(t, err)
		_, err = shopA.VerifyAttestation(ctx, d.KeyID, obj, cdh)
		require.NoError(t, err)
		_, _, found, err := keys.Lookup(ctx, d.KeyID)
		require.NoError(t, err)
		require.False(t, found, "the store never holds a bare key ID")
		_, _, found, err = keys.Lookup(ctx, provider.Scope("app-attest-key", "ABCDE12345.com.example.shop")+d.KeyID)
		require.NoError(t, err)
		require.True(t, found)
	})
}
