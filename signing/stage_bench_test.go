package signing

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/sfv"
)

// BenchmarkStages splits the cost of Verify into its stages, to find
// where time goes (the claims against peers are in bench/).
func BenchmarkStages(b *testing.B) {
	secret := bytes.Repeat([]byte("k"), 32)
	now := time.Now()
	s := NewSigner("device-1", secret)
	s.Now = func() time.Time { return now }
	body := bytes.Repeat([]byte("a"), 1024)
	r := httptest.NewRequest("POST", "https://api.example.com/v1/pay", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer token")
	if err := s.Sign(r); err != nil {
		b.Fatal(err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	v, _ := New(Config{Keys: StaticKeys(map[string][]byte{"device-1": secret}), Now: func() time.Time { return now }})
	req, _ := v.cfg.Profile.required()
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		sc := new(scratch) // pooled in Verify: reused, as here
		for b.Loop() {
			sc.sfv.Reset()
			if _, err := v.parse(r, v.cfg.Profile, req, sc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse_cached", func(b *testing.B) {
		// As "parse", with the request's list of components remembered,
		// as it is after the first request of a client verifies.
		b.ReportAllocs()
		v, _ := New(Config{Keys: StaticKeys(map[string][]byte{"device-1": secret}), Now: func() time.Time { return now }})
		v.lists.remember(r.Header.Get("Signature-Input"), "sig1")
		if v.lists.lookup(r.Header.Get("Signature-Input")) == nil {
			b.Fatal("list not remembered")
		}
		sc := new(scratch)
		for b.Loop() {
			sc.sfv.Reset()
			if _, err := v.parse(r, v.cfg.Profile, req, sc); err != nil {
				b.Fatal(err)
			}
		}
	})
	in, _ := v.parse(r, v.cfg.Profile, req, new(scratch))
	b.Run("base", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = signatureBase(buf[:0], r, target{scheme: "https", authority: "api.example.com"}, in.list, in.params, in.raw)
		}
	})
	b.Run("key+hmac", func(b *testing.B) {
		b.ReportAllocs()
		base, _ := signatureBase(nil, r, target{scheme: "https", authority: "api.example.com"}, in.list, in.params, in.raw)
		for b.Loop() {
			key, _ := v.cfg.Keys.Key(context.Background(), in.keyID)
			if err := v.verifyWithKey(in.keyID, key, base, in.sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("readBody", func(b *testing.B) {
		b.ReportAllocs()
		rd := bytes.NewReader(body)
		r.Body = io.NopCloser(rd)
		for b.Loop() {
			rd.Reset(body)
			if _, err := readBody(nil, r, 1<<20, make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("digest", func(b *testing.B) {
		b.ReportAllocs()
		lines := r.Header.Values("Content-Digest")
		for b.Loop() {
			if err := checkDigest(new(sfv.Scratch), lines, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify_warm", func(b *testing.B) {
		// The whole of Verify on one request kept in cache, with a replay
		// store that accepts every nonce: the cost without cache misses.
		v, _ := New(Config{Keys: StaticKeys(map[string][]byte{"device-1": secret}), Now: func() time.Time { return now }, ReplayStore: acceptAll{}})
		rd := bytes.NewReader(body)
		r.Body = io.NopCloser(rd)
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(body)
			if _, err := v.Verify(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("replay", func(b *testing.B) {
		b.ReportAllocs()
		st := NewMemoryReplayStore(1<<16, 5*time.Minute, func() time.Time { return now })
		created := now.Add(time.Second).Truncate(time.Second)
		i := 0
		for b.Loop() {
			i++
			if i%(1<<15) == 0 {
				b.StopTimer()
				st = NewMemoryReplayStore(1<<16, 5*time.Minute, func() time.Time { return now })
				b.StartTimer()
			}
			ok, _ := st.Advance(context.Background(), "device-1", created, time.Second, 10*time.Minute)
			ok2, _ := st.UseNonce(context.Background(), "device-1", "nonce-"+strconv.Itoa(i), created, created.Add(time.Minute))
			if !ok || !ok2 {
				b.Fatal("refused")
			}
		}
	})
}

// acceptAll is a ReplayStore that accepts everything.
type acceptAll struct{}

func (acceptAll) UseNonce(context.Context, string, string, time.Time, time.Time) (bool, error) {
	return true, nil
}

func (acceptAll) Advance(context.Context, string, time.Time, time.Duration, time.Duration) (bool, error) {
	return true, nil
}
