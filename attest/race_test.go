package attest

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

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
		reqs[i] = e.request(enrolDirect(t, e.keys), "farm", paris, "")
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
