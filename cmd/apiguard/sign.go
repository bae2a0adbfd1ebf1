package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/apiguard/apiguard/signing"
)

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ", ") }

func (h *headerFlags) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	*h = append(*h, v)
	return nil
}

func (c *cli) sign(args []string) int {
	fs := newFlags("sign", "-keyid ID (-secret-file F | -secret-env V | -master-file F | -master-env V | -key F) -url URL [flags]", `
RFC 9421-sign a request as a device, with signing.Signer: @method,
@target-uri, content-digest when there is a body, authorization when
that header is set; created, keyid, nonce and alg, as signing.Verifier
asks by default. Print it as a curl command, or send it with -send and
print the status and body (a redirect is printed, not followed).

The key is one of: the device's hmac-sha256 secret (-secret-file, or
-secret-env naming a variable; base64); the server's master secret
(-master-file or -master-env, base64) with -salt, from which the
device's secret is derived as signing.DerivedKeys does
(HKDF-SHA256, info = the key ID); or a device key (-key, an ECDSA P-256
or Ed25519 private key, PEM). Secrets and keys are never printed.

An Authorization header (an access token) is given with -auth-file or
-auth-env (a variable's name) and -send: a value in -H is on the
command line, which other local users can read (ps), and so is the
curl command printed without -send. The value is never printed.

The signature is single use and fresh for signing's Window (5 minutes
by default): run the printed command once, soon.`)
	keyID := fs.String("keyid", "", "the device's key ID (keyid). Required")
	secretFile := fs.String("secret-file", "", "file holding the device's hmac-sha256 secret (base64)")
	secretEnv := fs.String("secret-env", "", "environment variable holding the device's hmac-sha256 secret (base64)")
	masterFile := fs.String("master-file", "", "file holding the master secret of signing.DerivedKeys (base64)")
	masterEnv := fs.String("master-env", "", "environment variable holding the master secret of signing.DerivedKeys (base64)")
	salt := fs.String("salt", "", "the salt of signing.DerivedKeys (with -master-file or -master-env)")
	keyFile := fs.String("key", "", "device key file (ECDSA P-256 or Ed25519 private key, PEM)")
	method := fs.String("method", "", "method (default: POST with a body, else GET)")
	rawURL := fs.String("url", "", "absolute request URL, as the server sees it (its Scheme and Authority). Required")
	data := fs.String("data", "", "request body")
	dataFile := fs.String("data-file", "", "file holding the request body")
	var headers headerFlags
	fs.Var(&headers, "H", `request header "Name: value" (repeatable; Authorization is covered when set, but visible in ps: prefer -auth-file or -auth-env)`)
	authFile := fs.String("auth-file", "", `file holding the Authorization header's value ("Bearer <token>"; with -send)`)
	authEnv := fs.String("auth-env", "", `environment variable holding the Authorization header's value ("Bearer <token>"; with -send)`)
	send := fs.Bool("send", false, "send the request and print the status and body instead of a curl command")
	caFile := fs.String("cacert", "", "PEM file of the CA to trust for -send, and passed to curl (a local API's throwaway CA)")
	if ok, code := c.parse(fs, args, 0); !ok {
		return code
	}
	sources := 0
	for _, s := range []string{*secretFile, *secretEnv, *masterFile, *masterEnv, *keyFile} {
		if s != "" {
			sources++
		}
	}
	switch {
	case *keyID == "" || *rawURL == "":
		return c.usageErr(fs, "-keyid and -url are required")
	case sources != 1:
		return c.usageErr(fs, "exactly one of -secret-file, -secret-env, -master-file, -master-env and -key is required")
	case *data != "" && *dataFile != "":
		return c.usageErr(fs, "-data and -data-file exclude each other")
	case *salt != "" && *masterFile == "" && *masterEnv == "":
		return c.usageErr(fs, "-salt goes with -master-file or -master-env")
	case *authFile != "" && *authEnv != "":
		return c.usageErr(fs, "-auth-file and -auth-env exclude each other")
	case (*authFile != "" || *authEnv != "") && !*send:
		return c.usageErr(fs, "-auth-file and -auth-env go with -send (a printed curl command would show the value)")
	case (*authFile != "" || *authEnv != "") && slices.ContainsFunc(headers, isAuthorization):
		return c.usageErr(fs, "-auth-file and -auth-env exclude an -H Authorization header")
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return c.usageErr(fs, "-url must be an absolute http or https URL")
	}
	signer, err := c.signer(*keyID, *secretFile, *secretEnv, *masterFile, *masterEnv, *salt, *keyFile)
	if err != nil {
		return c.fail(fs.path, err)
	}
	body := []byte(*data)
	if *dataFile != "" {
		if body, err = readFile(*dataFile); err != nil {
			return c.fail(fs.path, err)
		}
	}
	m := *method
	if m == "" {
		m = http.MethodGet
		if len(body) > 0 {
			m = http.MethodPost
		}
	}
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.ctx, m, u.String(), rd)
	if err != nil {
		return c.usageErr(fs, "%v", err)
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if *authFile != "" || *authEnv != "" {
		v, err := c.readCredential("auth", *authFile, *authEnv)
		if err != nil {
			return c.fail(fs.path, err)
		}
		req.Header.Set("Authorization", v)
	}
	if err := signer.Sign(req); err != nil {
		return c.fail(fs.path, err)
	}
	if !*send {
		fmt.Fprintln(c.stdout, curlCommand(req, body, *dataFile, *caFile))
		return exitOK
	}
	// A redirect is never followed: it would hand the new host a fresh,
	// replayable signature (and the body), which it could not verify
	// anyway, @target-uri being signed. It is printed and fails.
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	if *caFile != "" {
		roots, err := readRoots(*caFile)
		if err != nil {
			return c.fail(fs.path, err)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return c.fail(fs.path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxFile))
	if err != nil {
		return c.fail(fs.path, err)
	}
	fmt.Fprintln(c.stdout, resp.Status)
	_, _ = c.stdout.Write(out)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		fmt.Fprintln(c.stdout)
	}
	if resp.StatusCode >= 300 {
		return exitFailure
	}
	return exitOK
}

// isAuthorization reports whether an -H flag sets Authorization.
func isAuthorization(h string) bool {
	name, _, _ := strings.Cut(h, ":")
	return strings.EqualFold(strings.TrimSpace(name), "Authorization")
}

// signer makes the Signer from the one key source given.
func (c *cli) signer(keyID, secretFile, secretEnv, masterFile, masterEnv, salt, keyFile string) (*signing.Signer, error) {
	switch {
	case keyFile != "":
		key, err := readPrivateKey(keyFile)
		if err != nil {
			return nil, err
		}
		switch key.(type) {
		case *ecdsa.PrivateKey, ed25519.PrivateKey:
		default:
			return nil, fmt.Errorf("%s: a device key is ECDSA P-256 or Ed25519, not %T", keyFile, key)
		}
		return signing.NewKeySigner(keyID, key)
	case masterFile != "" || masterEnv != "":
		master, err := c.readSecret("master", masterFile, masterEnv)
		if err != nil {
			return nil, err
		}
		if len(master) < 32 {
			return nil, fmt.Errorf("the master secret is %d bytes; signing.DerivedKeys wants at least 32", len(master))
		}
		secret, err := signing.DeriveSecret(master, []byte(salt), keyID)
		if err != nil {
			return nil, err
		}
		return signing.NewSigner(keyID, secret), nil
	default:
		secret, err := c.readSecret("secret", secretFile, secretEnv)
		if err != nil {
			return nil, err
		}
		if len(secret) < 32 {
			return nil, fmt.Errorf("the device secret is %d bytes; signing wants at least 32", len(secret))
		}
		return signing.NewSigner(keyID, secret), nil
	}
}

// curlCommand renders a signed request as a curl command line for a
// POSIX shell. A body from a file is sent with --data-binary @file, so
// that curl sends the exact bytes the digest covers.
func curlCommand(req *http.Request, body []byte, bodyFile, caFile string) string {
	var b strings.Builder
	b.WriteString("curl -i")
	if caFile != "" {
		b.WriteString(" --cacert " + shellQuote(caFile))
	}
	if req.Method != http.MethodGet || len(body) > 0 {
		b.WriteString(" -X " + shellQuote(req.Method))
	}
	for _, name := range []string{"Authorization", "Content-Type", "Content-Digest", "Signature-Input", "Signature"} {
		for _, v := range req.Header.Values(name) {
			b.WriteString(" -H " + shellQuote(name+": "+v))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(req.Header)) {
		switch name {
		case "Authorization", "Content-Type", "Content-Digest", "Signature-Input", "Signature":
			continue
		}
		for _, v := range req.Header[name] {
			b.WriteString(" -H " + shellQuote(name+": "+v))
		}
	}
	switch {
	case bodyFile != "":
		b.WriteString(" --data-binary " + shellQuote("@"+bodyFile))
	case len(body) > 0:
		// --data-raw: curl reads an inline body starting with @ as a file
		// name under --data-binary.
		b.WriteString(" --data-raw " + shellQuote(string(body)))
	}
	b.WriteString(" " + shellQuote(req.URL.String()))
	return b.String()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
