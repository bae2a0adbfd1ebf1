package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"unicode"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// maxFile caps every file the CLI reads (keys, secrets, bodies, objects).
const maxFile = 8 << 20

// readFile reads a file named on the command line, at most maxFile bytes.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name) // #nosec G304 -- the user names the file on the command line
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFile)
	}
	return b, nil
}

// readPrivateKey reads a PEM private key: PKCS #8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE KEY"). Errors name the file,
// never its content.
func readPrivateKey(name string) (crypto.Signer, error) {
	b, err := readFile(name)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", name)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: a %q PEM block is not a private key", name, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: not a private key", name)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: a %T cannot sign", name, key)
	}
	return s, nil
}

// readPublicKey reads a PEM public key ("PUBLIC KEY", SubjectPublicKeyInfo)
// or, from a private key file, its public half.
func readPublicKey(name string) (crypto.PublicKey, error) {
	b, err := readFile(name)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", name)
	}
	if block.Type != "PUBLIC KEY" {
		k, err := readPrivateKey(name)
		if err != nil {
			return nil, err
		}
		return k.Public(), nil
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a public key: %w", name, err)
	}
	return pub, nil
}

// writePrivateKey writes key as PKCS #8 PEM to a new file with mode 0600;
// an existing file is not overwritten.
func writePrivateKey(name string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- the user names the file on the command line
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// algFor returns the JWS algorithm a key signs with by default: ES256
// (P-256), ES384, ES512, EdDSA, or RS256.
func algFor(pub crypto.PublicKey) (jwa.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256, nil
		case elliptic.P384():
			return jwa.ES384, nil
		case elliptic.P521():
			return jwa.ES512, nil
		}
	case ed25519.PublicKey:
		return jwa.EdDSA, nil
	case *rsa.PublicKey:
		return jwa.RS256, nil
	}
	return "", fmt.Errorf("a %T key signs no JWS algorithm here", pub)
}

// publicJWK returns the public JWK of pub with kid (default: its RFC 7638
// SHA-256 thumbprint), alg and use sig.
func publicJWK(pub crypto.PublicKey, kid string, alg jwa.SignatureAlgorithm) (jwk.Key, error) {
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = thumbprint(k); err != nil {
			return nil, err
		}
	}
	for name, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: "sig"} {
		if err := k.Set(name, v); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of k, base64url.
func thumbprint(k jwk.Key) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// readSecret reads a base64 secret (standard or URL-safe, padding
// optional, surrounding space ignored) from the file or the environment
// variable named by the flags -<kind>-file and -<kind>-env; exactly one of
// file and envName is set. Errors name the flag, never the file, the
// variable or the secret: a secret pasted in place of its name
// (-secret-env "$SECRET") stays out of the terminal and the CI log.
func (c *cli) readSecret(kind, file, envName string) ([]byte, error) {
	text, from, err := c.readText(kind, file, envName)
	if err != nil {
		return nil, err
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s: not base64 (make a secret with: openssl rand -base64 32)", from)
}

// readCredential reads a credential that is text, such as an access token
// or an Authorization header's value, as readSecret reads a secret: from
// the file or the variable named by -<kind>-file or -<kind>-env,
// surrounding space dropped. A control character (a line break that
// would inject a header) is an error. Errors never quote the value.
func (c *cli) readCredential(kind, file, envName string) (string, error) {
	text, from, err := c.readText(kind, file, envName)
	if err != nil {
		return "", err
	}
	if strings.ContainsFunc(text, unicode.IsControl) {
		return "", fmt.Errorf("%s: holds a control character", from)
	}
	return text, nil
}

// readText reads the trimmed, non-empty text of a file or an environment
// variable for readSecret and readCredential; from names its flag.
func (c *cli) readText(kind, file, envName string) (text, from string, err error) {
	if file != "" {
		from = "the file named by -" + kind + "-file"
		b, err := readFile(file)
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			return "", from, fmt.Errorf("%s: %w", from, pe.Err)
		} else if err != nil {
			return "", from, fmt.Errorf("%s: larger than %d bytes", from, maxFile)
		}
		text = string(b)
	} else {
		text, from = c.env(envName), "the variable named by -"+kind+"-env"
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return "", from, fmt.Errorf("%s: empty", from)
	}
	return text, from, nil
}
