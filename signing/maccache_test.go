package signing

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMACCacheMatchesHMAC checks the cache against crypto/hmac over more
// keys than it has slots, so that slots are shared and replaced, with
// repeated and interleaved keys.
func TestMACCacheMatchesHMAC(t *testing.T) {
	c := newMACCache()
	const keys = 3 * macSlots
	secret := func(i int) []byte { return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 16) }
	for round := range 3 {
		for i := range keys {
			id := fmt.Sprintf("device-%d", i)
			msg := []byte(fmt.Sprintf("base %d %d", round, i))
			require.True(t, c.equal(id, secret(i), msg, hmacSum(secret(i), msg)), id)
			require.False(t, c.equal(id, secret(i), msg, hmacSum(secret(i+1), msg)), id)
		}
	}
}

// TestMACCacheRotatedSecret: a key ID whose secret changed is never MACed
// with the state of the old secret.
func TestMACCacheRotatedSecret(t *testing.T) {
	c := newMACCache()
	oldS, newS := bytes.Repeat([]byte("o"), 32), bytes.Repeat([]byte("n"), 32)
	msg := []byte("base")
	require.True(t, c.equal("device-1", oldS, msg, hmacSum(oldS, msg)))
	require.False(t, c.equal("device-1", newS, msg, hmacSum(oldS, msg)), "the old state must not serve the new secret")
	require.True(t, c.equal("device-1", newS, msg, hmacSum(newS, msg)))
	require.False(t, c.equal("device-1", oldS, msg, hmacSum(newS, msg)))
	require.True(t, c.equal("device-1", oldS, msg, hmacSum(oldS, msg)))
}

// TestVerifyAfterSecretRotation: through the Verifier, a request signed
// with a device's old secret fails once the key store answers the new one,
// though the old secret's MAC state was cached.
func TestVerifyAfterSecretRotation(t *testing.T) {
	oldS, newS := bytes.Repeat([]byte("o"), 32), bytes.Repeat([]byte("n"), 32)
	var mu sync.Mutex
	current := oldS
	keys := KeyStoreFunc(func(_ context.Context, id string) (Key, error) {
		mu.Lock()
		defer mu.Unlock()
		return Key{Algorithm: AlgHMACSHA256, Secret: current}, nil
	})
	v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = keys })
	sign := func(secret []byte) *http.Request {
		return signed(t, signer(clk, "device-a", secret), "GET", api+"/v1/orders", "", nil)
	}
	_, err := v.Verify(sign(oldS))
	require.NoError(t, err)
	mu.Lock()
	current = newS
	mu.Unlock()
	_, err = v.Verify(sign(oldS))
	require.ErrorIs(t, err, ErrSignature, "the old secret's cached state must not verify")
	_, err = v.Verify(sign(newS))
	require.NoError(t, err)
}

// TestMACCacheConcurrent runs the cache from many goroutines over a few
// keys (under -race in CI): busy slots fall back to a fresh HMAC.
func TestMACCacheConcurrent(t *testing.T) {
	c := newMACCache()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := (g + i) % 4
				secret := bytes.Repeat([]byte{byte('a' + k)}, 32)
				msg := []byte(fmt.Sprint(g, i))
				if !c.equal(fmt.Sprint("device-", k), secret, msg, hmacSum(secret, msg)) {
					t.Error("wrong MAC")
					return
				}
			}
		})
	}
	wg.Wait()
}
