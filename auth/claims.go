package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Claims are the verified claims of an access token.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub
	Audience  []string  // aud
	Expiry    time.Time // exp
	NotBefore time.Time // nbf; zero when absent
	IssuedAt  time.Time // iat
	ID        string    // jti
	ClientID  string    // client_id (RFC 9068)
	SessionID string    // sid (OpenID Connect session)
	Scopes    []string  // scope (space-delimited) or scp (array)
	ACR       string    // acr
	AMR       []string  // amr
	AuthTime  time.Time // auth_time; zero when absent
	// KeyThumbprint is cnf.jkt (RFC 9449): the token is bound to the DPoP
	// key with this RFC 7638 thumbprint. Empty for a bearer token.
	KeyThumbprint string

	raw []byte // the payload, for Decode
}

// HasScope reports whether the token grants scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// Decode unmarshals the token's whole payload into v, for claims that
// Claims does not name.
func (c *Claims) Decode(v any) error { return json.Unmarshal(c.raw, v) }

// payload is the JSON shape of the claims, with the lenient types the
// standards allow (aud as string or array, scp as array or string).
type payload struct {
	Iss      string        `json:"iss"`
	Sub      string        `json:"sub"`
	Aud      stringList    `json:"aud"`
	Exp      numericDate   `json:"exp"`
	Nbf      numericDate   `json:"nbf"`
	Iat      numericDate   `json:"iat"`
	Jti      string        `json:"jti"`
	ClientID string        `json:"client_id"`
	Sid      string        `json:"sid"`
	Scope    string        `json:"scope"`
	Scp      stringList    `json:"scp"`
	ACR      string        `json:"acr"`
	AMR      stringList    `json:"amr"`
	AuthTime numericDate   `json:"auth_time"`
	Cnf      *confirmation `json:"cnf"`
	// ID-token markers: an access token never carries these.
	Nonce  *json.RawMessage `json:"nonce"`
	AtHash *json.RawMessage `json:"at_hash"`
	CHash  *json.RawMessage `json:"c_hash"`
}

// confirmation is the cnf claim (RFC 7800): jkt binds the token to a
// DPoP key (RFC 9449); other is set when it binds it to anything else
// (x5t#S256 of RFC 8705 mTLS, jwk, kid, ...), a binding apiguard cannot
// check, so such a token is refused rather than taken as a bearer token.
type confirmation struct {
	JKT   string
	other bool
}

func (c *confirmation) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		if k != "jkt" {
			c.other = true
			continue
		}
		if err := json.Unmarshal(v, &c.JKT); err != nil {
			return err
		}
		if c.JKT == "" {
			c.other = true // "jkt": "" binds to no key we can check
		}
	}
	return nil
}

// checkConfirmation refuses a cnf claim that binds the token to anything
// but a DPoP key: a bound token used without its proof. An empty cnf
// binds it to nothing.
func (p *payload) checkConfirmation() error {
	if p.Cnf != nil && p.Cnf.other {
		return fmt.Errorf("%w: cnf binds the token to something other than a DPoP key (cnf.jkt)", ErrDPoPBinding)
	}
	return nil
}

// numericDate is a JSON number of seconds since the epoch (RFC 7519 §2).
// set is false when the claim is absent.
type numericDate struct {
	t   time.Time
	set bool
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return errors.New("numeric date is not a number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return errors.New("numeric date out of range")
	}
	sec, frac := math.Modf(f)
	d.t = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	d.set = true
	return nil
}

// stringList is a JSON string or array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = stringList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("expected a string or an array of strings")
	}
	*l = ss
	return nil
}

func (p *payload) claims(raw []byte) *Claims {
	c := &Claims{
		Issuer:    p.Iss,
		Subject:   p.Sub,
		Audience:  p.Aud,
		Expiry:    p.Exp.t,
		NotBefore: p.Nbf.t,
		IssuedAt:  p.Iat.t,
		ID:        p.Jti,
		ClientID:  p.ClientID,
		SessionID: p.Sid,
		ACR:       p.ACR,
		AMR:       p.AMR,
		AuthTime:  p.AuthTime.t,
		raw:       raw,
	}
	switch {
	case p.Scope != "":
		c.Scopes = splitSpaces(p.Scope)
	case len(p.Scp) == 1:
		c.Scopes = splitSpaces(p.Scp[0]) // some issuers send scp as one space-delimited string
	default:
		c.Scopes = p.Scp
	}
	if p.Cnf != nil {
		c.KeyThumbprint = p.Cnf.JKT
	}
	return c
}

func splitSpaces(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}
