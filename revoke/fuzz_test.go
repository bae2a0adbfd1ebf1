package revoke

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// FuzzReceive feeds arbitrary SETs to the receiver, and arbitrary payloads
// signed with the transmitter's key, so that the claims and event parsing
// behind the signature is reached: no panic, and every refusal matches a
// sentinel with an RFC 8935 code or is temporary.
func FuzzReceive(f *testing.F) {
	x := newTx(f, "k1")
	f.Add([]byte(x.sign(f, nil, nil)), []byte(`{"iss":"`+transmitter+`","aud":"`+receiverAud+`","iat":1796536800,"jti":"a","sub_id":{"user":{"format":"iss_sub","iss":"`+transmitter+`","sub":"u"},"session":{"format":"opaque","id":"s"}},"events":{"`+EventSessionRevoked+`":{}}}`))
	f.Add([]byte("a.b.c"), []byte(`{"events":{"x":{"subject":{"format":"email"}}}}`))
	f.Fuzz(func(t *testing.T, raw, payload []byte) {
		r, _, _, _ := newTestReceiver(t, x, nil)
		check := func(err error) {
			if err == nil {
				return
			}
			if _, _, ok := setCode(err); !ok && !isTemporary(err) {
				t.Fatalf("error matches no sentinel: %v", err)
			}
		}
		check(r.Receive(t.Context(), raw))
		h := jws.NewHeaders()
		_ = h.Set("typ", "secevent+jwt")
		_ = h.Set("kid", "k1")
		signed, err := jws.Sign(payload, jws.WithKey(jwa.ES256, x.priv, jws.WithProtectedHeaders(h)))
		if err != nil {
			return
		}
		check(r.Receive(t.Context(), signed))
	})
}

func isTemporary(err error) bool {
	for e := err; e != nil; {
		if e == ErrSETUnavailable {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return false
}

// FuzzApply feeds arbitrary records, as a shared store could hold, to
// the List: no panic, and whatever it holds expires no later than the
// longest token lifetime plus skew from now and takes effect no later
// than now plus skew.
func FuzzApply(f *testing.F) {
	f.Add([]byte(`{"iss":"https://idp.example/","k":1,"v":"u1","at":1796536800000000000,"exp":1796540400000000000}`))
	f.Add([]byte(`{"iss":"i","k":3,"v":"j","at":-1,"exp":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, _, _ := newTestList(t, nil)
		l.apply(b)
		now := t0.UnixNano()
		l.mu.RLock()
		defer l.mu.RUnlock()
		for k, e := range l.m {
			if e.exp > now+int64(time.Hour+30*time.Second) || e.at > now+int64(30*time.Second) || k.iss == "" || k.val == "" {
				t.Fatalf("held out of bounds: %+v %+v", k, e)
			}
		}
	})
}
