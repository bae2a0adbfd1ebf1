package revoke

import (
	"testing"

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
