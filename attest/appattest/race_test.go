package appattest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/stretchr/testify/require"
)

// TestSameAssertionParallel: one captured assertion sent by many
// goroutines at once is accepted exactly once (counter compare-and-swap).
func TestSameAssertionParallel(t *testing.T) {
	e := newBindingEnv(t, false)
	as, err := e.dev.Assert([]byte("one request"))
	require.NoError(t, err)
	const n = 64
	var wg sync.WaitGroup
	var accepted atomic.Int64
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := e.a.VerifyAssertion(context.Background(), e.dev.KeyID, as, []byte("one request")); err == nil {
				accepted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, int64(1), accepted.Load())
}

// TestSameChallengeParallel: one unbound challenge, signed by many
// enrolled devices into assertions sent at once, admits exactly one
// request (single use).
func TestSameChallengeParallel(t *testing.T) {
	a, _, _ := newSynthetic(t)
	ch, _, err := a.IssueChallenge(context.Background(), "")
	require.NoError(t, err)
	const n = 64
	reqs := make([]*provider.Request, n)
	for i := range reqs {
		d := enrolDirect(t, a)
		as, err := d.Assert(ClientData("POST", "/premium", "", nil, ch))
		require.NoError(t, err)
		reqs[i] = &provider.Request{Method: "POST", Path: "/premium", KeyID: d.KeyID, Challenge: ch,
			Assertion: base64.StdEncoding.EncodeToString(as)}
	}
	var wg sync.WaitGroup
	var admitted atomic.Int64
	start := make(chan struct{})
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := a.verifyRequest(context.Background(), r); err == nil {
				admitted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, int64(1), admitted.Load(), "a challenge admits one request")
}

// enrolDirect enrols a new device's key as VerifyAttestation would, without
// the attestation: sixty-four chain verifications cost seconds under the
// race detector, and attestation is tested on its own.
func enrolDirect(t *testing.T, a *Verifier) *attesttest.Device {
	t.Helper()
	d, err := attesttest.NewDevice(testAppID)
	require.NoError(t, err)
	point, err := d.Key.PublicKey.Bytes()
	require.NoError(t, err)
	rec, err := json.Marshal(AttestedKey{KeyID: d.KeyID, PublicKey: point, AppID: testAppID, Environment: Production, AttestedAt: synthNow})
	require.NoError(t, err)
	ok, err := a.cfg.Keys.Enroll(context.Background(), keyStoreID(testAppID, d.KeyID), rec)
	require.NoError(t, err)
	require.True(t, ok)
	return d
}
