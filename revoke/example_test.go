package revoke_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/apiguard/apiguard/revoke"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

var now = time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)

func ExampleList_Revoke() {
	list, _ := revoke.New(revoke.Config{Now: func() time.Time { return now }})
	defer list.Close()

	// The phone was stolen: end the user's sessions.
	_ = list.Revoke(context.Background(), revoke.Revocation{Issuer: "https://idp.example/", Subject: "user-42"})

	// auth.Config{Revocations: list} asks this on every request.
	issuedBefore, issuedAfter := now.Add(-time.Minute), now.Add(time.Second)
	fmt.Println("token from before:", list.Revoked("https://idp.example/", "user-42", "", "", "", issuedBefore))
	fmt.Println("token from a new login:", list.Revoked("https://idp.example/", "user-42", "", "", "", issuedAfter))

	// A revocation never outlives the tokens it refuses.
	err := list.Revoke(context.Background(), revoke.Revocation{Issuer: "https://idp.example/", TokenID: "t1", ExpiresAt: now.Add(-time.Second)})
	fmt.Println(err)
	// Output:
	// token from before: true
	// token from a new login: false
	// revoke: invalid revocation: ExpiresAt has passed
}

// ExampleReceiver shows the push endpoint accepting a session-revoked
// event from the transmitter, and refusing a forged one.
func ExampleReceiver() {
	txKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := jwk.FromRaw(&txKey.PublicKey)
	_ = pub.Set(jwk.KeyIDKey, "tx-1")
	keys := jwk.NewSet()
	_ = keys.AddKey(pub)

	list, _ := revoke.New(revoke.Config{Now: func() time.Time { return now }})
	defer list.Close()
	rcv, _ := revoke.NewReceiver(revoke.ReceiverConfig{
		List: list, Issuer: "https://idp.example/", Audience: "https://api.example/",
		Keys: keys, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler),
	})
	defer rcv.Close()

	set := func(key *ecdsa.PrivateKey, jti string) string {
		claims, _ := json.Marshal(map[string]any{
			"iss": "https://idp.example/", "aud": "https://api.example/", "iat": now.Unix(), "jti": jti,
			"sub_id": map[string]any{
				"user":    map[string]any{"format": "iss_sub", "iss": "https://idp.example/", "sub": "user-42"},
				"session": map[string]any{"format": "opaque", "id": "sess-7"},
			},
			"events": map[string]any{revoke.EventSessionRevoked: map[string]any{}},
		})
		h := jws.NewHeaders()
		_ = h.Set("typ", "secevent+jwt")
		_ = h.Set("kid", "tx-1")
		out, _ := jws.Sign(claims, jws.WithKey(jwa.ES256, key, jws.WithProtectedHeaders(h)))
		return string(out)
	}
	post := func(body string) {
		req := httptest.NewRequest(http.MethodPost, "/ssf/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		rec := httptest.NewRecorder()
		rcv.ServeHTTP(rec, req)
		fmt.Println(strings.TrimSpace(fmt.Sprint(rec.Code, " ", rec.Body.String())))
	}

	post(set(txKey, "e1"))
	fmt.Println("session revoked:", list.Revoked("https://idp.example/", "user-42", "sess-7", "", "", now))

	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	post(set(attacker, "e2"))
	// Output:
	// 202
	// session revoked: true
	// 400 {"description":"The SET's key or signature is invalid.","err":"invalid_key"}
}
