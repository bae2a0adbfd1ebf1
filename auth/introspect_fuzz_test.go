package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzIntrospectionResponse feeds arbitrary endpoint answers to the
// parser and the checks: nothing panics; a body that does not parse is an
// outage (never a rejection of the token); a rejection is one of the
// check sentinels; and an accepted answer says active true, our issuer,
// our audience, an exp to come, and no refresh token.
func FuzzIntrospectionResponse(f *testing.F) {
	for _, s := range []string{
		`{"active":true,"iss":"https://issuer.example.com/","aud":"https://api.example.com","exp":1772367000,"iat":1772366400,"scope":"a b","cnf":{"jkt":"x"}}`,
		`{"active":false}`,
		`{"active":true,"aud":["x","https://api.example.com"],"exp":1772367000.5,"token_type":"refresh_token"}`,
		`{"active":"true"}`,
		`{"active":true,"exp":null,"aud":null}`,
		` {"active":true,"exp":1e308}`,
		`[]`, `null`, `{"active":tr`, "",
	} {
		f.Add([]byte(s))
	}
	v := &Verifier{cfg: Config{ClockSkew: 30 * time.Second, MaxTokenLifetime: time.Hour}}
	is := &Issuer{Issuer: testIssuer, Audience: []string{testAudience}}
	checks := []error{ErrInactive, ErrType, ErrIssuer, ErrExpired, ErrNotYetValid, ErrLifetime, ErrAudience, ErrMalformedToken, ErrDPoPBinding}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parseIntrospection(body)
		if err != nil {
			if r != nil {
				t.Fatal("a result with an error")
			}
			if strings.Contains(err.Error(), string(body)) && len(body) > 8 {
				t.Fatalf("the error quotes the body: %v", err)
			}
			return
		}
		c, err := v.checkIntrospected(r, body, is, t0)
		if err != nil {
			if !slices.ContainsFunc(checks, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("rejection outside the check sentinels: %v", err)
			}
			return
		}
		tt := strings.ToLower(r.TokenType)
		switch {
		case r.Active == nil || !*r.Active:
			t.Fatal("accepted an inactive answer")
		case c.Issuer != testIssuer || (r.Iss != "" && r.Iss != testIssuer):
			t.Fatalf("accepted iss %q", r.Iss)
		case !slices.Contains(c.Audience, testAudience):
			t.Fatalf("accepted aud %q", c.Audience)
		case !t0.Before(c.Expiry.Add(30 * time.Second)):
			t.Fatalf("accepted exp %v", c.Expiry)
		case tt == "refresh_token" || tt == "urn:ietf:params:oauth:token-type:refresh_token":
			t.Fatalf("accepted token_type %q", r.TokenType)
		}
	})
}
