package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest/appattest"
)

// attestStep is one check of an App Attest verification, in the order the
// verifier makes them; is says whether a verification error is this
// step's refusal.
type attestStep struct {
	name string
	is   func(err error) bool
}

func isErr(target error, with ...string) func(error) bool {
	return func(err error) bool {
		if !errors.Is(err, target) {
			return false
		}
		for _, w := range with {
			if !strings.Contains(err.Error(), w) {
				return false
			}
		}
		return true
	}
}

func isAuthData(err error) bool {
	return errors.Is(err, appattest.ErrMalformed) &&
		(strings.Contains(err.Error(), "authenticator data") || strings.Contains(err.Error(), "credential"))
}

func isObject(err error) bool {
	return errors.Is(err, appattest.ErrMalformed) && !isAuthData(err) && !strings.Contains(err.Error(), "x5c")
}

func (c *cli) attestVerify(args []string) int {
	fs := newFlags("attest verify", "(-attestation FILE -key-id ID | -assertion FILE -public-key FILE) -app-id ID [flags]", `
Verify an Apple App Attest attestation or assertion with attest/appattest
and print every check made, in order, with its outcome. Exit code 1 when
a check refuses the object.

An object file holds the object as the app sent it: CBOR, or its base64
text. An attestation is checked against -challenge (the clientDataHash
is SHA-256 of it, as appattest.ClientDataHash). An assertion is checked
against the public key of its attested key (-public-key) and the counter
stored so far (-counter), over -client-data (the exact bytes the app
signed) or, without it, over the apiguard HTTP profile's
appattest.ClientData of -method, -url, the body (-body-file) and
-challenge.`)
	attFile := fs.String("attestation", "", "attestation object file")
	asnFile := fs.String("assertion", "", "assertion object file")
	appID := fs.String("app-id", "", `the App ID ("TEAMID.bundle.id"), or the bundle ID with -team-id. Required`)
	teamID := fs.String("team-id", "", "the team ID, when -app-id is the bundle ID")
	challenge := fs.String("challenge", "", "the challenge the server issued")
	envs := fs.String("env", "production", "allowed environments, comma-separated: production, development")
	keyID := fs.String("key-id", "", "the key ID (standard base64), as the app sent it (default for assertions: from -public-key)")
	pubFile := fs.String("public-key", "", "assertion: the attested key (PEM public key, as the attestation check prints)")
	counter := fs.Uint("counter", 0, "assertion: the counter stored for the key so far")
	clientDataFile := fs.String("client-data", "", "assertion: file holding the exact client data the app signed")
	method := fs.String("method", "POST", "assertion, HTTP profile: the request's method")
	rawURL := fs.String("url", "", "assertion, HTTP profile: the request's URL (path and query as sent)")
	bodyFile := fs.String("body-file", "", "assertion, HTTP profile: file holding the request body")
	rootsFile := fs.String("roots", "", "PEM file of trusted roots (default: Apple's App Attestation Root CA)")
	at := fs.String("time", "", `verify at this time, RFC 3339 or Unix seconds (default: now)`)
	if ok, code := c.parse(fs, args, 0); !ok {
		return code
	}
	switch {
	case (*attFile == "") == (*asnFile == ""):
		return c.usageErr(fs, "exactly one of -attestation and -assertion is required")
	case *appID == "":
		return c.usageErr(fs, "-app-id is required")
	case *attFile != "" && *keyID == "":
		return c.usageErr(fs, "-key-id is required with -attestation")
	case *asnFile != "" && *pubFile == "":
		return c.usageErr(fs, "-public-key is required with -assertion")
	case *counter > 1<<32-1:
		return c.usageErr(fs, "-counter is a 32-bit counter")
	case *asnFile != "" && *clientDataFile == "" && *rawURL == "":
		return c.usageErr(fs, "an assertion needs -client-data, or -url (and -challenge) for the HTTP profile")
	}
	app := *appID
	if *teamID != "" {
		app = *teamID + "." + *appID
	}
	now := time.Now()
	if *at != "" {
		t, err := parseTime(*at, now)
		if err != nil {
			return c.usageErr(fs, "-time: %v", err)
		}
		now = t
	}
	cfg := appattest.Config{AppIDs: []string{app}, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)}
	for _, e := range splitList(*envs) {
		switch appattest.Environment(e) {
		case appattest.Production, appattest.Development:
			cfg.Environments = append(cfg.Environments, appattest.Environment(e))
		default:
			return c.usageErr(fs, "-env %q: want production or development", e)
		}
	}
	if *rootsFile != "" {
		roots, err := readRoots(*rootsFile)
		if err != nil {
			return c.fail(fs.path, err)
		}
		cfg.Roots = roots
	}
	if *attFile != "" {
		obj, err := readObject(*attFile)
		if err != nil {
			return c.fail(fs.path, err)
		}
		return c.verifyAttestation(fs.path, cfg, *keyID, obj, *challenge)
	}
	obj, err := readObject(*asnFile)
	if err != nil {
		return c.fail(fs.path, err)
	}
	pub, err := readPublicKey(*pubFile)
	if err != nil {
		return c.fail(fs.path, err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return c.fail(fs.path, fmt.Errorf("%s: an App Attest key is EC P-256, not %T", *pubFile, pub))
	}
	point, err := ec.Bytes()
	if err != nil {
		return c.fail(fs.path, err)
	}
	kid := *keyID
	if kid == "" {
		sum := sha256.Sum256(point)
		kid = base64.StdEncoding.EncodeToString(sum[:])
	}
	var clientData []byte
	if *clientDataFile != "" {
		if clientData, err = readFile(*clientDataFile); err != nil {
			return c.fail(fs.path, err)
		}
	} else {
		u, err := url.Parse(*rawURL)
		if err != nil {
			return c.usageErr(fs, "-url: %v", err)
		}
		var body []byte
		if *bodyFile != "" {
			if body, err = readFile(*bodyFile); err != nil {
				return c.fail(fs.path, err)
			}
		}
		clientData = appattest.ClientData(strings.ToUpper(*method), u.EscapedPath(), u.RawQuery, body, *challenge)
	}
	rec, err := json.Marshal(appattest.AttestedKey{KeyID: kid, PublicKey: point, AppID: app, Environment: appattest.Production})
	if err != nil {
		return c.fail(fs.path, err)
	}
	cfg.Keys = &oneKey{record: rec, counter: uint32(*counter)}                     // #nosec G115 -- checked above
	return c.verifyAssertion(fs.path, cfg, kid, obj, clientData, uint32(*counter)) // #nosec G115 -- checked above
}

func (c *cli) verifyAttestation(path string, cfg appattest.Config, keyID string, obj []byte, challenge string) int {
	envs := make([]string, 0, len(cfg.Environments))
	for _, e := range cfg.Environments {
		envs = append(envs, string(e))
	}
	roots := "Apple App Attestation Root CA"
	if cfg.Roots != nil {
		roots = "the roots of -roots"
	}
	steps := []attestStep{
		{"key ID: 32 bytes of base64", isErr(appattest.ErrKeyID, "32 bytes")},
		{"object: size within 64 KiB, strict CBOR", isObject},
		{"format: fmt is apple-appattest", isErr(appattest.ErrFormat)},
		{fmt.Sprintf("certificate chain: x5c verifies to %s at %s, leaf key P-256", roots, cfg.Now().UTC().Format(time.RFC3339)),
			func(err error) bool {
				return errors.Is(err, appattest.ErrCertificate) || isErr(appattest.ErrMalformed, "x5c")(err)
			}},
		{"authenticator data: well-formed, with attested credential data", isAuthData},
		{"nonce: the leaf's extension is SHA-256(authData ‖ SHA-256(challenge))", isErr(appattest.ErrNonce)},
		{"key ID: SHA-256 of the certified key, and the credential ID", isErr(appattest.ErrKeyID)},
		{fmt.Sprintf("app ID: rpIdHash is SHA-256(%q)", cfg.AppIDs[0]), isErr(appattest.ErrAppID)},
		{"counter: 0", isErr(appattest.ErrCounter)},
		{"environment: AAGUID is " + strings.Join(envs, " or "), isErr(appattest.ErrEnvironment)},
		{"key: not attested before (in this run's empty store)", isErr(appattest.ErrKeyExists)},
	}
	v, err := appattest.New(cfg)
	if err != nil {
		return c.fail(path, err)
	}
	k, err := v.VerifyAttestation(context.Background(), keyID, obj, appattest.ClientDataHash([]byte(challenge)))
	fmt.Fprintf(c.stdout, "App Attest attestation, key ID %s\n", keyID)
	if code := c.printSteps(steps, err); code != exitOK {
		return code
	}
	pub, err := ecdhPoint(k.PublicKey)
	if err != nil {
		return c.fail(path, err)
	}
	fmt.Fprintf(c.stdout, "\nattested: app ID %s, environment %s, OS %s, receipt %d bytes\n", k.AppID, k.Environment, orNone(k.OSVersion), len(k.Receipt))
	fmt.Fprintf(c.stdout, "public key (for attest verify -assertion -public-key):\n%s", pub)
	return exitOK
}

func (c *cli) verifyAssertion(path string, cfg appattest.Config, keyID string, obj, clientData []byte, stored uint32) int {
	steps := []attestStep{
		{"object: size within 64 KiB, strict CBOR", isObject},
		{"authenticator data: well-formed", isAuthData},
		{fmt.Sprintf("app ID: rpIdHash is SHA-256(%q)", cfg.AppIDs[0]), isErr(appattest.ErrAppID)},
		{"key: the attested key of -public-key", func(err error) bool {
			return errors.Is(err, appattest.ErrUnknownKey) || errors.Is(err, appattest.ErrStore)
		}},
		{"signature: over SHA-256(authenticatorData ‖ SHA-256(client data)), by the attested key", isErr(appattest.ErrSignature)},
		{fmt.Sprintf("counter: greater than the stored %d", stored), isErr(appattest.ErrCounter)},
	}
	v, err := appattest.New(cfg)
	if err != nil {
		return c.fail(path, err)
	}
	as, err := v.VerifyAssertion(context.Background(), keyID, obj, clientData)
	fmt.Fprintf(c.stdout, "App Attest assertion, key ID %s, client data of %d bytes (SHA-256 %x)\n", keyID, len(clientData), sha256.Sum256(clientData))
	if code := c.printSteps(steps, err); code != exitOK {
		return code
	}
	fmt.Fprintf(c.stdout, "\nverified: app ID %s, counter %d (stored %d): store %d as the key's counter\n", as.AppID, as.Counter, as.Previous, as.Counter)
	return exitOK
}

// printSteps prints each step's outcome: ok up to the step that refused
// err, "not checked" after it. An err no step claims is printed as is.
func (c *cli) printSteps(steps []attestStep, err error) int {
	failed := -1
	if err != nil {
		failed = len(steps) - 1
		for i, s := range steps {
			if s.is(err) {
				failed = i
				break
			}
		}
	}
	for i, s := range steps {
		switch {
		case failed < 0 || i < failed:
			fmt.Fprintf(c.stdout, "  ok           %s\n", s.name)
		case i == failed:
			fmt.Fprintf(c.stdout, "  REFUSED      %s\n               %s\n", s.name, oneLine(err.Error()))
		default:
			fmt.Fprintf(c.stdout, "  not checked  %s\n", s.name)
		}
	}
	if err != nil {
		fmt.Fprintln(c.stdout, "\nrefused")
		return exitFailure
	}
	return exitOK
}

// readObject reads an attestation or assertion: CBOR, or base64 text of it.
func readObject(name string) ([]byte, error) {
	b, err := readFile(name)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(b))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if d, err := enc.DecodeString(text); err == nil && len(d) > 0 {
			return d, nil
		}
	}
	return b, nil
}

// readRoots reads PEM certificates into a pool.
func readRoots(name string) (*x509.CertPool, error) {
	b, err := readFile(name)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", name)
	}
	return pool, nil
}

// ecdhPoint turns an uncompressed P-256 point into a PEM public key.
func ecdhPoint(point []byte) (string, error) {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// oneKey is an appattest.KeyStore holding the one key an assertion is
// checked against, with the counter stored so far; it ignores the store
// id, which is the verifier's business.
type oneKey struct {
	record  []byte
	counter uint32
}

func (k *oneKey) Enroll(context.Context, string, []byte) (bool, error) { return false, nil }

func (k *oneKey) Lookup(context.Context, string) ([]byte, uint32, bool, error) {
	return k.record, k.counter, true, nil
}

func (k *oneKey) AdvanceCounter(_ context.Context, _ string, from, to uint32) (bool, error) {
	if from != k.counter {
		return false, nil
	}
	k.counter = to
	return true, nil
}
