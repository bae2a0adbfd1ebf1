package redisstore

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/redistest"
	"github.com/stretchr/testify/require"
)

var allPurposes = []string{purposeReplay, purposeNonce, purposeMark, purposeBucket, purposeAttestKey, purposeChallenge, purposeHistory, purposeInFlight, purposeIntrospection, purposeIntrospectionLock, purposeRevoke}

func testOptions(secret []byte) *Options {
	o := &Options{Prefix: "p:", KeySecret: secret}
	o.defaults()
	return o
}

// keyPattern is every key's shape: prefix, purpose tag, and a SHA-256
// sized hex digest; nothing else.
var keyPattern = regexp.MustCompile(`^p:[a-z0-9-]+:[0-9a-f]{64}$`)

func TestKeys(t *testing.T) {
	o := testOptions(nil)
	t.Run("purposes_are_tags", func(t *testing.T) {
		seen := map[string]bool{}
		for _, p := range allPurposes {
			require.True(t, validPurpose(p), p)
			require.False(t, seen[p], "purpose %q used twice", p)
			seen[p] = true
		}
		for _, bad := range []string{"", "aa:hist", "Replay", "a b", "a/b"} {
			require.False(t, validPurpose(bad), bad)
			require.Panics(t, func() { o.key(bad, "x") })
		}
	})
	t.Run("purposes_never_collide", func(t *testing.T) {
		// The same identifying value under every purpose: one key each.
		keys := map[string]string{}
		for _, p := range allPurposes {
			k := o.key(p, "device-1")
			require.NotContains(t, keys, k, "%s collides with %s", p, keys[k])
			keys[k] = p
		}
		// A purpose's tag cannot be forged through a part: a challenge
		// named like a history key is still a challenge key.
		require.NotEqual(t, o.key(purposeHistory, "user-42"), o.key(purposeChallenge, "aa-hist:user-42"))
		require.True(t, strings.HasPrefix(o.key(purposeChallenge, "aa-hist:user-42"), "p:aa-ch:"))
	})
	t.Run("part_boundaries_are_unambiguous", func(t *testing.T) {
		pairs := []struct {
			name string
			a, b []string
		}{
			{"split_moves", []string{"ab", "c"}, []string{"a", "bc"}},
			{"separator_inside_a_part", []string{"a\x00b"}, []string{"a", "b"}},
			{"empty_trailing_part", []string{"a"}, []string{"a", ""}},
			{"empty_part_vs_none", []string{""}, nil},
			{"length_byte_forged", []string{"\x01a", "b"}, []string{"", "a\x01b"}},
			{"namespace_vs_value", []string{"login", "1.2.3.4"}, []string{"login1.2.3.4"}},
			{"order_matters", []string{"a", "b"}, []string{"b", "a"}},
		}
		for _, tt := range pairs {
			t.Run(tt.name, func(t *testing.T) {
				require.NotEqual(t, o.key(purposeBucket, tt.a...), o.key(purposeBucket, tt.b...))
			})
		}
	})
	t.Run("no_raw_identifier_in_key", func(t *testing.T) {
		long := strings.Repeat("subject-", 10_000)
		for _, in := range []string{"user-42", "eyJhbGciOiJFUzI1NiJ9.payload.sig", "nonce-Zm9vYmFy", "p:rl:" + strings.Repeat("0", 64), long} {
			for _, p := range allPurposes {
				k := o.key(p, in)
				require.Regexp(t, keyPattern, k)
				require.NotContains(t, k, in)
			}
		}
		require.Len(t, o.key(purposeHistory, long), len("p:aa-hist:")+64, "a client-chosen value of any length makes a key of fixed length")
	})
	t.Run("deterministic_across_instances", func(t *testing.T) {
		require.Equal(t, testOptions(nil).key(purposeNonce, "k", "n"), testOptions(nil).key(purposeNonce, "k", "n"))
		s := bytes.Repeat([]byte{1}, 32)
		require.Equal(t, testOptions(s).key(purposeNonce, "k", "n"), testOptions(bytes.Clone(s)).key(purposeNonce, "k", "n"))
	})
	t.Run("guess_unconfirmable_with_secret", func(t *testing.T) {
		// Without a secret, anyone can recompute the key of a guessed
		// subject; with one, the key depends on the secret.
		s1, s2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		plain := o.key(purposeHistory, "user-42")
		require.Equal(t, plain, testOptions(nil).key(purposeHistory, "user-42"), "a guess is confirmable without a secret")
		k1, k2 := testOptions(s1).key(purposeHistory, "user-42"), testOptions(s2).key(purposeHistory, "user-42")
		require.NotEqual(t, plain, k1)
		require.NotEqual(t, k1, k2)
		require.Regexp(t, keyPattern, k1)
	})
	t.Run("secret_is_copied", func(t *testing.T) {
		s := bytes.Repeat([]byte{3}, 32)
		o := testOptions(s)
		before := o.key(purposeMark, "k")
		s[0] = 4
		require.Equal(t, before, o.key(purposeMark, "k"), "a caller reusing its slice changes no key")
	})
	t.Run("short_secret_panics", func(t *testing.T) {
		require.PanicsWithValue(t, "redisstore: Options.KeySecret shorter than 16 bytes", func() { testOptions([]byte("short")) })
	})
	t.Run("concurrent_keys_agree", func(t *testing.T) {
		o := testOptions(bytes.Repeat([]byte{5}, 32))
		want := make([]string, 100)
		for i := range want {
			want[i] = o.key(purposeBucket, "rule", strings.Repeat("x", i))
		}
		var wg sync.WaitGroup
		errs := make(chan string, 64*len(want))
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range want {
					if got := o.key(purposeBucket, "rule", strings.Repeat("x", i)); got != want[i] {
						errs <- got
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		require.Empty(t, errs, "pooled digests are reset between uses")
	})
}

// TestStoreKeysHoldNoRawIdentifiers runs every store method against a real
// Redis with recognisable identifiers and lists the keys: each is
// prefix, purpose tag and digest, and none holds an identifier.
func TestStoreKeysHoldNoRawIdentifiers(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := newClient(t, srv.Addr())
	opts := Options{Prefix: "p:"}
	replay, limits, attest := NewReplayStore(rdb, opts), NewLimitStore(rdb, opts), NewAttestStore(rdb, opts)
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	_, err := replay.Use(ctx, "jti-SECRET", exp)
	require.NoError(t, err)
	_, err = replay.UseNonce(ctx, "device-SECRET", "nonce-SECRET", time.Now(), exp)
	require.NoError(t, err)
	_, err = replay.Advance(ctx, "device-SECRET", time.Now(), time.Second, time.Minute)
	require.NoError(t, err)
	_, _, _, err = limits.Take(ctx, "ip-SECRET", time.Second, 5, time.Now())
	require.NoError(t, err)
	_, err = attest.Enroll(ctx, "key-SECRET", []byte("rec"))
	require.NoError(t, err)
	require.NoError(t, attest.Put(ctx, "challenge-SECRET", "b", exp))
	_, err = attest.Swap(ctx, "user-SECRET", []byte("{}"), time.Minute)
	require.NoError(t, err)
	_, _, err = NewConcurrencyStore(rdb, opts).Acquire(ctx, "user-SECRET", "lease-SECRET", 1, time.Minute, time.Now())
	require.NoError(t, err)
	lease := NewLeaseStore(rdb, opts, LeaseConfig{})
	defer lease.Close()
	_, _, _, err = lease.Take(ctx, "device-SECRET", time.Second, 5, time.Now()) // a LimitStore bucket ("rl")
	require.NoError(t, err)

	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 9, "one key per purpose, two buckets")
	tags := map[string]bool{}
	for _, k := range keys {
		require.Regexp(t, keyPattern, k)
		require.NotContains(t, k, "SECRET")
		tags[strings.Split(k, ":")[1]] = true
	}
	require.Len(t, tags, 8, "eight purposes, eight tags")
}

func FuzzKeyPartsUnambiguous(f *testing.F) {
	f.Add("ab", "c", 1)
	f.Add("", "\x00", 0)
	o := testOptions(nil)
	f.Fuzz(func(t *testing.T, a, b string, cut int) {
		// Moving the boundary between two parts changes the key.
		joined := a + b
		if cut < 0 || cut > len(joined) || cut == len(a) {
			return
		}
		if o.key(purposeBucket, a, b) == o.key(purposeBucket, joined[:cut], joined[cut:]) {
			t.Fatalf("(%q, %q) and (%q, %q) share a key", a, b, joined[:cut], joined[cut:])
		}
	})
}
