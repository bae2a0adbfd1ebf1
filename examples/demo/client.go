package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/signing"
	"github.com/apiguard/apiguard/telemetry"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// client is the scripted mobile app: a real HTTP client over loopback.
type client struct {
	base   string
	http   *http.Client
	issuer *issuer // only to forge the attacker's tokens
	// account is the user this run signs in as (login_hint): user-42 and
	// a random suffix, drawn for each client, so that the risk history
	// (Paris, then Sydney) and the per-user limits of one run are never
	// met by the next, even on one Redis with one shared secret.
	account string
	master  []byte         // the device master its enrolment derived its secret from
	ca      *attesttest.CA // the test root that stands in for Apple's
	device  *attesttest.Device

	// androidCA stands in for Google's attestation root; deviceKeys is
	// the API's store of enrolled keys, where the support desk revokes a
	// lost phone; why reads the refusal reasons the API logged.
	androidCA  *attesttest.AndroidCA
	deviceKeys deviceKeyStore
	why        *whyLog

	dpopKey *ecdsa.PrivateKey
	dpopPub jwk.Key

	// roots trusts the demo's throwaway CA; cleartext is the base URL of
	// the plain-HTTP port. Both are unset when the demo serves plain HTTP.
	roots     *x509.CertPool
	cleartext string

	// sent and answers record, for the secret-hygiene test, every piece
	// of secret material the client sent and everything the API answered.
	sent    []string
	answers []string
}

// sensitive are the request headers whose values are secrets.
var sensitive = []string{"Authorization", "DPoP", "Signature", "Signature-Input", appattest.HeaderAssertion, appattest.HeaderChallenge, headerEnrolChallenge}

// newClient makes the app for a's API at base. Over HTTPS it trusts the
// throwaway CA, and a.cleartext is the plain port its transport rows try.
func newClient(base string, a *api) (*client, error) {
	dev, err := attesttest.NewDevice(demoAppID)
	if err != nil {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := jwk.FromRaw(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	c := &client{base: base, account: demoSubject + "-" + rand.Text(), issuer: a.issuer, ca: a.ca, master: a.deviceMaster, device: dev, dpopKey: k, dpopPub: pub, cleartext: a.cleartext,
		androidCA: a.androidCA, deviceKeys: a.deviceKeys, why: a.why}
	if a.pki != nil {
		c.roots = a.pki.roots
	}
	// It dials from a loopback address of its own where it can: with a
	// shared secret, runs on one Redis share the per-address limit (burst
	// 200; a run sends about 60 requests), which runs in a quick loop from
	// one address would spend.
	var n [1]byte
	_, _ = rand.Read(n[:])
	c.http = &http.Client{Timeout: 5 * time.Second, Transport: roundTransport(c, int(n[0]))}
	return c, nil
}

// transport is an HTTP transport that trusts c.roots (the system's
// when nil) and dials with dial when it is not nil.
func (c *client) transport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: c.roots}}
}

// call is one request of the script.
type call struct {
	base         string // default: the client's
	method, path string
	header       map[string]string
	body         string
}

func (c *client) do(ctx context.Context, name string, attack bool, expect int, rq call) result {
	res := result{name: name, attack: attack, expect: expect}
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	base := c.base
	if rq.base != "" {
		base = rq.base
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, base+rq.path, body)
	if err != nil {
		res.err = err
		return res
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	c.recordSent(req)
	resp, err := c.http.Do(req)
	if err != nil {
		res.err = err
		return res
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	c.recordAnswer(resp, b)
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	res.status = resp.StatusCode
	res.body = string(b)
	res.id = resp.Header.Get("X-Request-ID")
	res.reason = reasonOf(resp)
	return res
}

func (c *client) recordSent(req *http.Request) {
	for _, h := range sensitive {
		for _, v := range req.Header.Values(h) {
			if _, tok, ok := strings.Cut(v, " "); ok && (strings.HasPrefix(v, "Bearer ") || strings.HasPrefix(v, "DPoP ")) {
				v = tok
			}
			c.sent = append(c.sent, v)
			// The parts of a structured field, too: signatures and nonces,
			// but not the keyid and alg parameters, which name the device
			// and its algorithm and are logged.
			parts := strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == '"' || r == ';' || r == '=' })
			for i, part := range parts {
				if len(part) >= 16 && (i == 0 || parts[i-1] != "keyid" && parts[i-1] != "alg") {
					c.sent = append(c.sent, part)
				}
			}
		}
	}
}

func (c *client) recordAnswer(resp *http.Response, body []byte) {
	var b strings.Builder
	for k, vs := range resp.Header {
		b.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
	}
	b.Write(body)
	c.answers = append(c.answers, b.String())
}

// reasonOf returns the OAuth error of the challenge or the problem type of
// a problem+json answer, or the status text.
func reasonOf(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	for _, ch := range resp.Header.Values("WWW-Authenticate") {
		if _, after, ok := strings.Cut(ch, `error="`); ok {
			code, _, _ := strings.Cut(after, `"`)
			return code
		}
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		var p struct{ Type string }
		if json.Unmarshal(b, &p) == nil {
			if _, frag, ok := strings.Cut(p.Type, "#"); ok {
				return frag // an IANA-registered type, such as quota-exceeded
			}
			return strings.TrimPrefix(p.Type, "urn:apiguard:problem:")
		}
	}
	var oauth struct{ Error string }
	if json.Unmarshal(b, &oauth) == nil && oauth.Error != "" {
		return oauth.Error
	}
	if resp.Header.Get("X-Request-ID") != "" && resp.Request != nil && resp.Request.Header.Get("X-Request-ID") != "" &&
		resp.Header.Get("X-Request-ID") != resp.Request.Header.Get("X-Request-ID") {
		return "correlation ID replaced"
	}
	return http.StatusText(resp.StatusCode)
}

// login runs the authorization code flow with PKCE; with dpop the token is
// bound to the app's DPoP key.
func (c *client) login(ctx context.Context, verifier string, dpop bool) (string, formReply, error) {
	challenge := auth.PKCEChallengeS256(verifier)
	code, err := c.form(ctx, "/oauth/authorize", url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "login_hint": {c.account}}, "")
	if err != nil {
		return "", formReply{}, err
	}
	proof := ""
	if dpop {
		if proof, err = c.proof("POST", c.base+"/oauth/token", ""); err != nil {
			return "", formReply{}, err
		}
	}
	tok, err := c.form(ctx, "/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code.values["code"]}, "code_verifier": {verifier}}, proof)
	return tok.values["access_token"], tok, err
}

var (
	paris  = [2]string{"48.8566", "2.3522"}
	sydney = [2]string{"-33.8688", "151.2093"}
)

// enroll attests the app's key: a challenge, attestKey (here the test
// kit), and the attestation sent to the API.
func (c *client) enroll(ctx context.Context, token string) result {
	res := result{name: "App Attest enrolment of the device key", expect: 201}
	ch, err := c.challenge(ctx, "")
	if err != nil {
		res.err = err
		return res
	}
	obj, err := c.ca.Attest(c.device, appattest.ClientDataHash([]byte(ch)), attesttest.AttestOptions{})
	if err != nil {
		res.err = err
		return res
	}
	body, _ := json.Marshal(map[string]string{"key_id": c.device.KeyID, "attestation": base64.StdEncoding.EncodeToString(obj), "challenge": ch})
	r := c.do(ctx, res.name, false, 201, call{method: "POST", path: "/v1/attest/enroll", header: bearer(token), body: string(body)})
	if r.status == 201 {
		r.reason = "key attested"
	}
	return r
}

func (c *client) challenge(ctx context.Context, keyID string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/attest/challenge", nil)
	if err != nil {
		return "", err
	}
	if keyID != "" {
		req.Header.Set(appattest.HeaderKeyID, keyID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Challenge string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Challenge == "" {
		return "", fmt.Errorf("no challenge (status %d)", resp.StatusCode)
	}
	return out.Challenge, nil
}

// premium calls the premium endpoint with an App Attest assertion from
// the device (or the given forged bytes), located at place by the CDN's
// geo headers. The assertion covers the query the app sends; rewrite,
// when not empty, is the query a proxy puts in its place on the way.
func (c *client) premium(ctx context.Context, name string, attack bool, expect int, token string, place [2]string, forged []byte, rewrite string) result {
	ch, err := c.challenge(ctx, c.device.KeyID)
	if err != nil {
		return result{name: name, attack: attack, expect: expect, err: err}
	}
	body, query := `{"item":"gold-plan"}`, "plan=gold&seats=1"
	assertion := forged
	if assertion == nil {
		if assertion, err = c.device.Assert(appattest.ClientData("POST", "/v1/premium", query, []byte(body), ch)); err != nil {
			return result{name: name, attack: attack, expect: expect, err: err}
		}
	}
	if rewrite != "" {
		query = rewrite
	}
	h := bearer(token)
	h[appattest.HeaderKeyID] = c.device.KeyID
	h[appattest.HeaderChallenge] = ch
	h[appattest.HeaderAssertion] = base64.StdEncoding.EncodeToString(assertion)
	h["X-Geo-Latitude"], h["X-Geo-Longitude"] = place[0], place[1]
	return c.do(ctx, name, attack, expect, call{method: "POST", path: "/v1/premium?" + query, header: h, body: body})
}

// burst: a script reads orders as fast as it can with a valid token; the
// per-subject limit (burst 5) stops it.
func (c *client) burst(ctx context.Context, token string) result {
	var last result
	for range 10 {
		last = c.do(ctx, "burst of 10 order reads with one token", true, 429, call{method: "GET", path: "/v1/orders", header: bearer(token)})
	}
	return last
}

// stuffing: a list of leaked passwords is tried against one account; the
// failure budget locks the account after three failures.
func (c *client) stuffing(ctx context.Context) result {
	var last result
	for i := range 6 {
		body := url.Values{"username": {demoUser}, "password": {fmt.Sprintf("leaked-password-%d", i)}}.Encode()
		last = c.do(ctx, "credential stuffing: 6 passwords against one account", true, 429, call{method: "POST", path: "/v1/login",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: body})
	}
	return last
}

// stolenCode: malware on the device intercepts the authorization code of a
// real login and redeems it without the app's PKCE verifier.
func (c *client) stolenCode(ctx context.Context) result {
	res := result{name: "stolen authorization code without the PKCE verifier", attack: true, expect: 400}
	verifier, err := auth.NewPKCEVerifier()
	if err != nil {
		res.err = err
		return res
	}
	code, err := c.form(ctx, "/oauth/authorize", url.Values{"code_challenge": {auth.PKCEChallengeS256(verifier)}, "code_challenge_method": {"S256"}}, "")
	if err != nil {
		res.err = err
		return res
	}
	guess, _ := auth.NewPKCEVerifier()
	out, err := c.form(ctx, "/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code.values["code"]}, "code_verifier": {guess}}, "")
	res.status, res.reason, res.id, res.err = out.status, out.values["error"], out.id, err
	return res
}

// formReply is the answer to a form post: its JSON members as strings,
// its status and its correlation ID.
type formReply struct {
	values map[string]string
	status int
	id     string
}

func (c *client) form(ctx context.Context, path string, v url.Values, dpop string) (formReply, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, strings.NewReader(v.Encode()))
	if err != nil {
		return formReply{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if dpop != "" {
		req.Header.Set("DPoP", dpop)
	}
	c.recordSent(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return formReply{}, err
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out)
	m := map[string]string{}
	for k, val := range out {
		m[k] = fmt.Sprint(val)
	}
	return formReply{values: m, status: resp.StatusCode, id: resp.Header.Get("X-Request-ID")}, nil
}

// proof makes a DPoP proof (RFC 9449) for one request.
func (c *client) proof(method, htu, token string) (string, error) {
	claims := map[string]any{"jti": uuid.NewString(), "htm": method, "htu": htu, "iat": time.Now().Unix()}
	if token != "" {
		claims["ath"] = auth.AccessTokenHash(token)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set("typ", "dpop+jwt")
	_ = hdr.Set("jwk", c.dpopPub)
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256, c.dpopKey, jws.WithProtectedHeaders(hdr)))
	return string(out), err
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// script runs the happy path, then the attacks.
func (c *client) script(ctx context.Context) []result {
	var out []result
	add := func(r result) { out = append(out, r) }
	fail := func(name string, err error) { add(result{name: name, expect: 200, err: err}) }

	// Happy path: PKCE login, then calls with the short-lived token.
	verifier, err := auth.NewPKCEVerifier()
	if err != nil {
		fail("PKCE login", err)
		return out
	}
	token, reply, err := c.login(ctx, verifier, false)
	if err != nil || reply.status != 200 || token == "" {
		add(result{name: "PKCE login → access token", expect: 200, status: reply.status, id: reply.id, err: err})
		return out
	}
	add(result{name: "PKCE login → access token", expect: 200, status: reply.status, id: reply.id, reason: "token issued"})
	add(c.do(ctx, "GET /v1/orders with the token", false, 200, call{method: "GET", path: "/v1/orders",
		header: map[string]string{"Authorization": "Bearer " + token, "X-Request-ID": "app-7f3a-0001"}}))

	verifier2, _ := auth.NewPKCEVerifier()
	bound, reply, err := c.login(ctx, verifier2, true)
	if err != nil || reply.status != 200 || bound == "" {
		add(result{name: "PKCE login with DPoP → bound token", expect: 200, status: reply.status, id: reply.id, err: err})
		return out
	}
	proof, _ := c.proof("GET", c.base+"/v1/orders", bound)
	dpopCall := call{method: "GET", path: "/v1/orders", header: map[string]string{"Authorization": "DPoP " + bound, "DPoP": proof}}
	add(c.do(ctx, "GET /v1/orders with a DPoP-bound token", false, 200, dpopCall))
	pay, payBody, err := c.signedPay(token, "device-42.v1", `{"amount":100}`)
	if err != nil {
		fail("signed payment", err)
		return out
	}
	add(c.do(ctx, "POST /v1/pay signed by device-42", false, 200, call{method: "POST", path: "/v1/pay", header: pay, body: payBody}))
	if r := c.enroll(ctx, token); !r.ok() {
		add(r)
		return out
	} else {
		add(r)
	}
	// Device keys: enrolled with the platform's evidence, then signing
	// payments in place of a secret derived for the device.
	r, androidID, androidKey := c.enrolAndroid(ctx, "Android key enrolment (Key Attestation: TEE, locked)", false, 201, token, attesttest.AndroidKey{})
	add(r)
	if !r.ok() {
		return out
	}
	add(c.devicePay(ctx, "POST /v1/pay/device signed by the Android key", token, androidID, androidKey))
	r, enclaveKey := c.enrolSecureEnclave(ctx, token)
	add(r)
	if !r.ok() {
		return out
	}
	add(c.devicePay(ctx, "POST /v1/pay/device signed by the Secure Enclave key", token, c.device.KeyID, enclaveKey))
	add(c.premium(ctx, "premium call from Paris, App Attest assertion", false, 200, token, paris, nil, ""))
	add(c.do(ctx, "client reports a pinning failure", false, 204, call{method: "POST", path: "/v1/reports",
		header: map[string]string{"Content-Type": "application/reports+json"},
		body:   `[{"type":"pinning-failure","age":1200,"url":"https://api.example.com/v1/pay","user_agent":"Shop/5.2","body":{}}]`}))

	// Attacks: on the transport first, then on the API.
	out = append(out, c.transportAttacks(ctx)...)
	now := time.Now()
	expired, _ := c.issuer.mint(map[string]any{"scope": "orders:read"}, now.Add(-20*time.Minute), 10*time.Minute)
	add(c.do(ctx, "expired token replayed", true, 401, call{method: "GET", path: "/v1/orders", header: bearer(expired)}))
	longLived, _ := c.issuer.mint(map[string]any{"scope": "orders:read"}, now, 30*24*time.Hour)
	add(c.do(ctx, "long-lived token (30 days)", true, 401, call{method: "GET", path: "/v1/orders", header: bearer(longLived)}))
	otherAud, _ := c.issuer.mint(map[string]any{"scope": "orders:read", "aud": "https://billing.demo.example"}, now, 5*time.Minute)
	add(c.do(ctx, "token for another audience", true, 401, call{method: "GET", path: "/v1/orders", header: bearer(otherAud)}))
	add(c.do(ctx, "alg: none", true, 401, call{method: "GET", path: "/v1/orders", header: bearer(algNone(c.issuer, now))}))
	add(c.do(ctx, "HS256 signed with the public key", true, 401, call{method: "GET", path: "/v1/orders", header: bearer(hs256WithPublicKey(c.issuer, now))}))
	add(c.do(ctx, "scope escalation: write with a read token", true, 403, call{method: "POST", path: "/v1/orders", header: bearer(token)}))
	add(c.do(ctx, "stolen DPoP token used without its key", true, 401, call{method: "GET", path: "/v1/orders", header: bearer(bound)}))
	add(c.do(ctx, "replayed DPoP proof", true, 401, dpopCall))
	otherProof, _ := c.proof("GET", c.base+"/v1/admin", bound)
	add(c.do(ctx, "DPoP proof made for another URL", true, 401, call{method: "GET", path: "/v1/orders",
		header: map[string]string{"Authorization": "DPoP " + bound, "DPoP": otherProof}}))
	add(c.stolenCode(ctx))
	add(c.do(ctx, "replayed signed payment", true, 401, call{method: "POST", path: "/v1/pay", header: pay, body: payBody}))
	tampered, _, _ := c.signedPay(token, "device-42.v1", `{"amount":100}`)
	add(c.do(ctx, "payment body tampered in flight", true, 401, call{method: "POST", path: "/v1/pay", header: tampered, body: `{"amount":100000}`}))
	otherSecret, _ := signing.DeriveSecret([]byte("an-emulator-farm-guessed-this-secret"), demoSalt, "device-42.v1")
	forged, forgedBody, _ := c.signWith(token, "device-42.v1", otherSecret, `{"amount":5}`)
	add(c.do(ctx, "payment signed with another key", true, 401, call{method: "POST", path: "/v1/pay", header: forged, body: forgedBody}))
	unsigned := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	add(c.do(ctx, "unsigned payment", true, 401, call{method: "POST", path: "/v1/pay", header: unsigned, body: `{"amount":5}`}))
	r, _, _ = c.enrolAndroid(ctx, "Android key from a device with an unlocked bootloader", true, 401, token, attesttest.AndroidKey{Unlocked: true, BootState: 2})
	add(c.because(r, "boot_state"))
	r, _, _ = c.enrolAndroid(ctx, "Android software-only key (emulator)", true, 401, token, attesttest.AndroidKey{Software: true})
	add(c.because(r, "security_level"))
	add(c.revokedPay(ctx, token, androidID, androidKey))
	add(c.premium(ctx, "premium call with a forged App Attest assertion", true, 401, token, paris, []byte("forged"), ""))
	add(c.premium(ctx, "premium call whose query a proxy rewrote", true, 401, token, paris, nil, "plan=platinum&seats=500"))
	add(c.premium(ctx, "premium call from Sydney a minute after Paris", true, 401, token, sydney, nil, ""))
	add(c.burst(ctx, token))
	add(c.stuffing(ctx))
	add(c.do(ctx, "header injection in X-Request-ID", true, 401, call{method: "GET", path: "/v1/orders",
		header: map[string]string{"X-Request-ID": "x\"; Set-Cookie: session=attacker"}}))
	ok := out[len(out)-1]
	if ok.id == "" || !telemetry.ValidID(ok.id) || strings.Contains(ok.id, "Set-Cookie") {
		out[len(out)-1].err = fmt.Errorf("malicious correlation ID echoed")
	} else {
		out[len(out)-1].reason = "ID replaced, then " + ok.reason
	}
	add(c.do(ctx, "malformed client report", true, 400, call{method: "POST", path: "/v1/reports",
		header: map[string]string{"Content-Type": "application/reports+json"}, body: `[{"type":"x","evil":true}]`}))
	return out
}

// signedPay signs a payment as device keyID does, with the secret its
// enrolment derived, and returns the headers to send with body.
func (c *client) signedPay(token, keyID, body string) (map[string]string, string, error) {
	secret, err := signing.DeriveSecret(c.master, demoSalt, keyID)
	if err != nil {
		return nil, "", err
	}
	return c.signWith(token, keyID, secret, body)
}

func (c *client) signWith(token, keyID string, secret []byte, body string) (map[string]string, string, error) {
	return c.signPay("/v1/pay", token, signing.NewSigner(keyID, secret), body)
}

// signPay signs a payment to path with s and returns the headers to send
// with body.
func (c *client) signPay(path, token string, s *signing.Signer, body string) (map[string]string, string, error) {
	r, err := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	if err := s.Sign(r); err != nil {
		return nil, "", err
	}
	h := map[string]string{}
	for k := range r.Header {
		h[k] = r.Header.Get(k)
	}
	h["X-Device-Model"] = "iPhone16,1"
	return h, body, nil
}

// algNone forges a token with alg none and no signature.
func algNone(is *issuer, now time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "at+jwt", "kid": "demo-2026"})
	p, _ := json.Marshal(map[string]any{"iss": is.url, "aud": is.audience, "sub": "admin", "scope": "orders:read",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	return enc(h) + "." + enc(p) + ".AA"
}

// hs256WithPublicKey forges a token "signed" with HMAC keyed by the
// issuer's public key, the classic algorithm-confusion attack.
func hs256WithPublicKey(is *issuer, now time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	der, _ := x509.MarshalPKIXPublicKey(&is.key.PublicKey)
	h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": "demo-2026"})
	p, _ := json.Marshal(map[string]any{"iss": is.url, "aud": is.audience, "sub": "admin", "scope": "orders:read",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	input := enc(h) + "." + enc(p)
	m := hmac.New(sha256.New, der)
	m.Write([]byte(input))
	return input + "." + enc(m.Sum(nil))
}

// enrolAndroid enrols a device key as the Android app does: a challenge
// from the API, a P-256 signing key generated in Keystore with it as the
// attestation challenge (here a chain from attesttest's test root, the
// device as k describes it), and the key ID and chain posted. It returns
// the key ID and the private key, which stays in the phone's TEE.
func (c *client) enrolAndroid(ctx context.Context, name string, attack bool, expect int, token string, k attesttest.AndroidKey) (result, string, *ecdsa.PrivateKey) {
	res := result{name: name, attack: attack, expect: expect}
	issued, err := c.enrolChallenge(ctx, token)
	if err != nil {
		res.err = err
		return res, "", nil
	}
	if k.Challenge, err = base64.RawURLEncoding.DecodeString(issued); err != nil {
		res.err = err
		return res, "", nil
	}
	keyID := androidPrefix + rand.Text() // 128 bits or more: an enrolled ID is never reused
	r, key := c.enrolAndroidWith(ctx, name, attack, expect, token, keyID, issued, k)
	return r, keyID, key
}

// enrolAndroidWith attests a key as k describes it (k.Challenge the
// attestation challenge) and posts it for keyID with the challenge
// header issued.
func (c *client) enrolAndroidWith(ctx context.Context, name string, attack bool, expect int, token, keyID, issued string, k attesttest.AndroidKey) (result, *ecdsa.PrivateKey) {
	k.Packages, k.SignatureDigests = []string{demoAndroidPackage}, [][]byte{demoAndroidSigner[:]}
	chain, key, err := c.androidCA.Attest(k)
	if err != nil {
		return result{name: name, attack: attack, expect: expect, err: err}, nil
	}
	certs := make([]string, len(chain))
	for i, der := range chain {
		certs[i] = base64.StdEncoding.EncodeToString(der)
	}
	body, _ := json.Marshal(map[string]any{"key_id": keyID, "chain": certs})
	h := bearer(token)
	h[headerEnrolChallenge] = issued
	r := c.do(ctx, name, attack, expect, call{method: "POST", path: "/v1/device-keys/android", header: h, body: string(body)})
	return enrolled(r), key
}

// enrolChallenge asks the API for an Android enrolment challenge.
func (c *client) enrolChallenge(ctx context.Context, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+"/v1/device-keys/challenge", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Challenge string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out); err != nil || out.Challenge == "" {
		return "", fmt.Errorf("no enrolment challenge (status %d)", resp.StatusCode)
	}
	return out.Challenge, nil
}

// enrolSecureEnclave enrols a device key as the iOS app does: App Attest
// keys sign only assertions, so the app makes a P-256 key in the Secure
// Enclave and vouches for it with an assertion of its App Attest key
// over the key and a challenge. It returns the private key.
func (c *client) enrolSecureEnclave(ctx context.Context, token string) (result, *ecdsa.PrivateKey) {
	res := result{name: "Secure Enclave key enrolment (App Attest assertion)", expect: 201}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		res.err = err
		return res, nil
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		res.err = err
		return res, nil
	}
	ch, err := c.challenge(ctx, c.device.KeyID)
	if err != nil {
		res.err = err
		return res, nil
	}
	assertion, err := c.device.Assert(appattest.EnrolClientData(spki, ch))
	if err != nil {
		res.err = err
		return res, nil
	}
	body, _ := json.Marshal(map[string]string{"key_id": c.device.KeyID, "device_key": base64.StdEncoding.EncodeToString(spki),
		"challenge": ch, "assertion": base64.StdEncoding.EncodeToString(assertion)})
	r := c.do(ctx, res.name, false, 201, call{method: "POST", path: "/v1/device-keys/ios", header: bearer(token), body: string(body)})
	c.sent = append(c.sent, body2sent(body)...)
	return enrolled(r), key
}

// body2sent returns the challenge and assertion of an enrolment body,
// secrets the hygiene test looks for.
func body2sent(body []byte) []string {
	var b struct{ Challenge, Assertion string }
	_ = json.Unmarshal(body, &b)
	return []string{b.Challenge, b.Assertion}
}

// enrolled checks a 201 of an enrolment endpoint: the key is enrolled as
// an ecdsa-p256-sha256 key.
func enrolled(r result) result {
	if r.status != 201 {
		return r
	}
	var out struct{ KeyID, Algorithm string }
	if json.Unmarshal([]byte(r.body), &out) != nil || out.Algorithm != signing.AlgECDSAP256SHA256 {
		r.err = fmt.Errorf("enrolment answered %q", r.body)
		return r
	}
	r.reason = "key enrolled (" + out.Algorithm + ")"
	return r
}

// devicePay sends a payment signed (RFC 9421, ecdsa-p256-sha256) by the
// enrolled device key keyID, and checks that the payment handler saw it
// as that device's.
func (c *client) devicePay(ctx context.Context, name, token, keyID string, key *ecdsa.PrivateKey) result {
	res := result{name: name, expect: 200}
	s, err := signing.NewKeySigner(keyID, key)
	if err != nil {
		res.err = err
		return res
	}
	h, body, err := c.signPay("/v1/pay/device", token, s, `{"amount":250}`)
	if err != nil {
		res.err = err
		return res
	}
	r := c.do(ctx, name, false, 200, call{method: "POST", path: "/v1/pay/device", header: h, body: body})
	if r.status == 200 {
		var out struct {
			Paid   int
			Device string
		}
		if json.Unmarshal([]byte(r.body), &out) != nil || out.Paid != 250 || out.Device != keyID {
			r.err = fmt.Errorf("the payment handler answered %q", r.body)
		} else {
			r.reason = "paid by the enrolled key"
		}
	}
	return r
}

// revokedPay: the phone is reported lost and the support desk revokes
// its key in one call; a payment signed with it afterwards (the thief,
// or malware that copied the signing code) is refused.
func (c *client) revokedPay(ctx context.Context, token, keyID string, key *ecdsa.PrivateKey) result {
	res := result{name: "payment signed by a revoked device key (lost phone)", attack: true, expect: 401}
	if err := c.revokeDeviceKey(ctx, c.account, keyID); err != nil { // the account the token was issued to
		res.err = err
		return res
	}
	s, err := signing.NewKeySigner(keyID, key)
	if err != nil {
		res.err = err
		return res
	}
	h, body, err := c.signPay("/v1/pay/device", token, s, `{"amount":900}`)
	if err != nil {
		res.err = err
		return res
	}
	return c.because(c.do(ctx, res.name, true, 401, call{method: "POST", path: "/v1/pay/device", header: h, body: body}), "revoked_key")
}

// revokeDeviceKey is the support desk's call for a lost phone: the key
// keyID that account sub enrolled is revoked everywhere at once.
func (c *client) revokeDeviceKey(ctx context.Context, sub, keyID string) error {
	return c.deviceKeys.Revoke(ctx, ownedKeyID(sub, keyID))
}

// because adds to a refusal the reason the API logged for it, which its
// answer does not say on purpose, and fails the row when it is not want.
func (c *client) because(r result, want string) result {
	if r.err != nil || r.status != r.expect {
		return r
	}
	why := c.why.reason(r.id)
	r.reason += " (" + why + ")"
	if why != want {
		r.err = fmt.Errorf("refused, but for %q, not %q", why, want)
	}
	return r
}
