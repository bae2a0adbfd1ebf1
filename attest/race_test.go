package attest

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/stretchr/testify/require"
)

// TestKeyChurnParallelDevices: a farm of freshly attested devices signs
// in to one account and sends its first requests at the same moment. Key
// churn counts the keys a subject used: the n-th distinct key is churn
// when n > MaxKeysPerSubject. The history used to be read, merged and
// written back in two swaps, so concurrent requests each saw only a few
// keys and the farm went unnoticed; adding a key and counting is now one
// atomic store step.
func TestKeyChurnParallelDevices(t *testing.T) {
	const n = 12 // below the 16 keys a subject's history holds
	e := newRiskEnv(t, nil)
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = e.request(e.device(attesttest.AttestOptions{}), "farm", paris, "")
	}
	var wg sync.WaitGroup
	var churn atomic.Int64
	start := make(chan struct{})
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			risk, err := assessRequest(e.v, r, Thresholds{Monitor: 30, StepUp: 60, Deny: 85})
			if err == nil && slices.Contains(risk.Reasons, ReasonKeyChurn) {
				churn.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, int64(n-3), churn.Load(), "every key past the third is churn, however the requests interleave")
}

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
	e := newRiskEnv(t, nil)
	ch, _, err := e.a.IssueChallenge(context.Background(), "")
	require.NoError(t, err)
	const n = 64
	reqs := make([]*http.Request, n)
	for i := range reqs {
		d := e.device(attesttest.AttestOptions{})
		as, err := d.Assert(ClientData("POST", "/premium", "", nil, ch))
		require.NoError(t, err)
		r := e.request(nil, "u", paris, "")
		r.Header.Set(HeaderKeyID, d.KeyID)
		r.Header.Set(HeaderChallenge, ch)
		r.Header.Set(HeaderAssertion, base64.StdEncoding.EncodeToString(as))
		reqs[i] = r
	}
	var wg sync.WaitGroup
	var admitted atomic.Int64
	start := make(chan struct{})
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ev, err := requestEvidence(r, maxAssertedBody)
			if err != nil {
				return
			}
			if _, err := e.a.verifyRequest(context.Background(), &ev); err == nil {
				admitted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, int64(1), admitted.Load(), "a challenge admits one request")
}
