package signing

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/stretchr/testify/require"
)

var secretAttacker = []byte("attacker-secret-0123456789abcdef-0123456789")

// TestFutureCreatedFloodsFloor is future_created_floods_floor: one device
// key (the attacker's own, enrolled like any other) sends ReplayCacheSize
// signatures, and ten times that, each created as far ahead as
// FutureSkew allows, while another device signs with the server's clock,
// which never moves (every honest signature has the same created second):
// every honest signature passes, before, during and after the flood. The
// flood only raises its own key's floor: its nonces stay refused.
func TestFutureCreatedFloodsFloor(t *testing.T) {
	for _, tt := range []struct {
		name  string
		times int
	}{
		{"cache_size", 1},
		{"ten_times_cache_size", 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const size = 256
			v, clk, logs := newTestVerifier(t, func(c *Config) {
				c.ReplayCacheSize = size
				c.Keys = StaticKeys(map[string][]byte{"device-a": secretA, "attacker": secretAttacker})
			})
			honest := signer(clk, "device-a", secretA)
			ahead := testkit.NewClock(clk.Now().Add(30 * time.Second)) // FutureSkew, the most allowed
			attacker := signer(ahead, "attacker", secretAttacker)

			first := signed(t, attacker, "GET", api+"/v1/orders", "", nil)
			captured := first.Clone(context.Background())
			rec, reached, _ := serve(v, first)
			require.True(t, reached, rec.Body.String())
			for i := range tt.times * size {
				serve(v, signed(t, attacker, "POST", api+"/v1/pay", fmt.Sprintf(`{"n":%d}`, i), nil))
				if i%16 == 0 {
					rec, reached, _ := serve(v, signed(t, honest, "GET", api+"/v1/orders", "", nil))
					require.True(t, reached, "honest signature %d refused during the flood: %s", i, rec.Body.String())
				}
			}
			rec, reached, _ = serve(v, signed(t, honest, "GET", api+"/v1/orders", "", nil))
			require.True(t, reached, "honest signature refused after the flood: %s", rec.Body.String())
			require.NotContains(t, logs.String(), `"key_id":"device-a"`, "nothing of the honest key was refused")

			_, err := v.Verify(captured)
			require.ErrorIs(t, err, ErrReplayFloor, "the flood's first nonce, pushed out by its own flood, is still refused")
			_, err = v.Verify(signed(t, attacker, "GET", api+"/v1/orders", "", nil))
			require.ErrorIs(t, err, ErrReplayFloor, "the flood's own floor refuses its signatures at that created second")

			tooFar := signer(testkit.NewClock(clk.Now().Add(31*time.Second)), "attacker", secretAttacker)
			_, err = v.Verify(signed(t, tooFar, "GET", api+"/v1/orders", "", nil))
			require.ErrorIs(t, err, ErrFuture, "created_too_far_in_future")
		})
	}
}

// TestNonceReplayedAfterOwnFlood: a key's nonce that its own flood pushed
// out is still refused (its floor), and the replay guarantee holds for the
// flooding key too.
func TestNonceReplayedAfterOwnFlood(t *testing.T) {
	v, clk, logs := newTestVerifier(t, func(c *Config) { c.ReplayCacheSize = 64; c.ReorderSlack = time.Minute })
	s := signer(clk, "device-a", secretA)
	first := signed(t, s, "GET", api+"/v1/orders", "", nil)
	saved := first.Clone(context.Background())
	_, reached, _ := serve(v, first)
	require.True(t, reached)
	for i := range 200 {
		clk.Advance(100 * time.Millisecond) // created moves on a second every ten
		serve(v, signed(t, s, "GET", fmt.Sprintf("%s/v1/x/%d", api, i), "", nil))
	}
	_, reached, _ = serve(v, saved)
	require.False(t, reached, "nonce_reused_after_eviction")
	require.Contains(t, logs.String(), `"event":"replay_floor"`)
}

// TestRestartFloor: the in-memory store forgets its nonces at a restart,
// so it refuses what was signed before it; the refusal is bounded: a
// client that signed just before the restart is accepted when it signs
// again, and a client whose clock runs behind is told the server's time
// and accepted as soon as it corrects its clock, or, if it does not, as
// soon as its clock passes the restart.
func TestRestartFloor(t *testing.T) {
	start := t0
	newInstance := func(t *testing.T, clk *testkit.Clock) (*Verifier, *logSink) {
		logs := &logSink{}
		v, err := New(Config{
			Keys:   StaticKeys(map[string][]byte{"device-a": secretA}),
			Now:    clk.Now,
			Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		})
		require.NoError(t, err)
		return v, logs
	}
	// resign reads the 401 as a client does: the problem says to sign
	// again, and Date gives the server's time.
	resign := func(t *testing.T, rec *httptest.ResponseRecorder) time.Time {
		t.Helper()
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		var p struct{ Type, Detail string }
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
		require.True(t, strings.HasSuffix(p.Type, "stale-signature"), p.Type)
		require.Contains(t, p.Detail, "Sign the request again now")
		require.NotEmpty(t, rec.Header().Get("Accept-Signature"))
		date, err := http.ParseTime(rec.Header().Get("Date"))
		require.NoError(t, err)
		return date
	}

	t.Run("signed_before_restart", func(t *testing.T) {
		server := testkit.NewClock(start)
		v, logs := newInstance(t, server)
		client := testkit.NewClock(start.Add(-2 * time.Second)) // signed just before, delivered just after
		r := signed(t, signer(client, "device-a", secretA), "GET", api+"/v1/orders", "", nil)
		server.Advance(time.Second)
		rec, reached, _ := serve(v, r)
		require.False(t, reached)
		require.Contains(t, logs.String(), `"reason":"replay_floor"`)
		date := resign(t, rec)
		require.Equal(t, server.Now().Unix(), date.Unix())
		client.Advance(3 * time.Second) // the client signs again, a moment later
		rec, reached, _ = serve(v, signed(t, signer(client, "device-a", secretA), "GET", api+"/v1/orders", "", nil))
		require.True(t, reached, rec.Body.String())
	})

	t.Run("clock_behind_server_corrects", func(t *testing.T) {
		server := testkit.NewClock(start)
		v, _ := newInstance(t, server)
		const lag = 90 * time.Second
		client := testkit.NewClock(start.Add(-lag))
		server.Advance(10 * time.Second)
		client.Advance(10 * time.Second)
		rec, reached, _ := serve(v, signed(t, signer(client, "device-a", secretA), "GET", api+"/v1/orders", "", nil))
		require.False(t, reached, "created before the restart")
		// The client takes its offset from Date and signs again at once.
		offset := resign(t, rec).Sub(client.Now())
		corrected := signer(client, "device-a", secretA)
		corrected.Now = func() time.Time { return client.Now().Add(offset) }
		rec, reached, _ = serve(v, signed(t, corrected, "GET", api+"/v1/orders", "", nil))
		require.True(t, reached, "corrected clock: accepted at once: %s", rec.Body.String())
	})

	t.Run("clock_behind_server_waits", func(t *testing.T) {
		server := testkit.NewClock(start)
		v, _ := newInstance(t, server)
		const lag = 90 * time.Second
		client := testkit.NewClock(start.Add(-lag))
		for _, step := range []time.Duration{10 * time.Second, 60 * time.Second, 19 * time.Second} {
			server.Advance(step)
			client.Advance(step)
			_, err := v.Verify(signed(t, signer(client, "device-a", secretA), "GET", api+"/v1/orders", "", nil))
			require.ErrorIs(t, err, ErrReplayFloor, "still behind the restart by its own clock")
		}
		// A client that does not correct its clock is refused no longer
		// than its lag: once its clock passes the restart, it is accepted.
		server.Advance(2 * time.Second)
		client.Advance(2 * time.Second)
		rec, reached, _ := serve(v, signed(t, signer(client, "device-a", secretA), "GET", api+"/v1/orders", "", nil))
		require.True(t, reached, "past the restart by its own clock: %s", rec.Body.String())
	})

	t.Run("replay_across_restart", func(t *testing.T) {
		server := testkit.NewClock(start.Add(-time.Minute))
		before, _ := newInstance(t, server)
		server.Advance(30 * time.Second)
		r := signed(t, signer(server, "device-a", secretA), "GET", api+"/v1/orders", "", nil)
		captured := r.Clone(context.Background())
		_, reached, _ := serve(before, r)
		require.True(t, reached)
		server.Advance(30 * time.Second) // the restart
		after, logs := newInstance(t, server)
		server.Advance(5 * time.Second)
		_, reached, _ = serve(after, captured)
		require.False(t, reached, "a nonce used before the restart is refused after it")
		require.Contains(t, logs.String(), `"event":"replay_floor"`)
	})
}

// TestKeyExistenceOracle is key_existence_oracle: for each way a request
// can be wrong, a known key, a revoked key and a key ID that does not
// exist get the same answer (status, headers, body); only the log tells
// them apart.
func TestKeyExistenceOracle(t *testing.T) {
	keys := WithRevocation(StaticKeys(map[string][]byte{"device-a": secretA, "device-r": secretA}),
		func(_ context.Context, id string) (bool, error) { return id == "device-r", nil })
	for _, tt := range []struct {
		name   string
		params string
		secret []byte
		status int
	}{
		{"component_missing", `("@method" "@target-uri" "x-device-id");created=%d;keyid="%s";nonce="n1"`, secretA, 400},
		{"bad_signature", `("@method" "@target-uri");created=%d;keyid="%s";nonce="n1"`, secretB, 401},
		{"alg_mismatch", `("@method" "@target-uri");created=%d;keyid="%s";nonce="n1";alg="ed25519"`, secretA, 401},
		{"expires_passed", `("@method" "@target-uri");created=%d;keyid="%s";nonce="n1";expires=1`, secretB, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			type answer struct {
				status int
				header http.Header
				body   string
			}
			var answers []answer
			var reasons []string
			for _, keyID := range []string{"device-a", "device-r", "device-zzz"} {
				v, clk, logs := newTestVerifier(t, func(c *Config) { c.Keys = keys })
				r := signRaw(t, keyID, tt.secret, tt.params, clk.Now().Unix(), keyID)
				rec, reached, _ := serve(v, r)
				require.False(t, reached)
				answers = append(answers, answer{rec.Code, rec.Header(), rec.Body.String()})
				var rec1 struct{ Reason string }
				require.NoError(t, json.Unmarshal([]byte(strings.SplitN(logs.String(), "\n", 2)[0]), &rec1))
				reasons = append(reasons, rec1.Reason)
			}
			require.Equal(t, tt.status, answers[0].status)
			require.Equal(t, answers[0], answers[1], "known and revoked keys answered alike")
			require.Equal(t, answers[0], answers[2], "known and unknown keys answered alike")
			if tt.status == 401 {
				require.Equal(t, []string{reasons[0], "revoked_key", "unknown_key"}, reasons, "the log keeps the reason")
			}
		})
	}
}

// TestFutureSkewConfig: FutureSkew is its own setting, checked at New.
func TestFutureSkewConfig(t *testing.T) {
	keys := StaticKeys(map[string][]byte{"device-a": secretA})
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative", Config{Keys: keys, FutureSkew: -time.Second}, "must not be negative"},
		{"over_window", Config{Keys: keys, Window: time.Minute, FutureSkew: 2 * time.Minute}, "FutureSkew exceeds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.ErrorContains(t, err, tt.want)
		})
	}
	v, err := New(Config{Keys: keys, Window: 10 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, v.cfg.FutureSkew, "default capped at Window")
	v, clk, _ := newTestVerifier(t, func(c *Config) { c.FutureSkew = 2 * time.Minute })
	_, err = v.Verify(signRaw(t, "device-a", secretA, `("@method" "@target-uri");created=%d;keyid="device-a";nonce="n1"`, clk.Now().Add(2*time.Minute).Unix()))
	require.NoError(t, err, "a configured FutureSkew")
}
