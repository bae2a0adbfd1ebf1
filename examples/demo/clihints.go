package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/apiguard/apiguard/signing"
)

// cliDevice is the device whose derived secret the CLI commands sign with.
const cliDevice = "device-42.v1"

// cliHints returns shell commands that drive the write paths of the
// running demo with the apiguard CLI (cmd/apiguard): a payment signed as
// a device, and a DPoP-bound POST. The secrets they need are written, not
// printed: the issuer's private key and the device's derived secret go to
// a new private directory (mode 0700, files 0600) that cleanup removes,
// and the commands make and read every other key there too, never in the
// working directory, where a planted key would be used. Access tokens
// reach apiguard and curl through the environment and stdin, never argv.
func cliHints(d *demo) (lines []string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "apiguard-demo-cli-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	secret, err := signing.DeriveSecret(d.api.deviceMaster, demoSalt, cliDevice)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(d.api.issuer.key)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	secretFile, keyFile := filepath.Join(dir, cliDevice+".secret"), filepath.Join(dir, "issuer.pem")
	for _, f := range []struct {
		name string
		data []byte
	}{
		{secretFile, []byte(base64.StdEncoding.EncodeToString(secret) + "\n")},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})},
	} {
		if err := os.WriteFile(f.name, f.data, 0o600); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	cacert, curl := "", "curl"
	if d.pki != nil {
		cacert, curl = " -cacert "+d.pki.caFile, "curl --cacert "+d.pki.caFile
	}
	dpopKey := filepath.Join(dir, "dpop.pem")
	mint := fmt.Sprintf("apiguard token mint -key %s -kid demo-2026 -iss %s -aud %s -sub user-42", keyFile, d.api.issuer.url, d.api.issuer.audience)
	return []string{
		fmt.Sprintf("# the issuer's key and %s's secret are in %s (0600, removed at exit); so is every key below", cliDevice, dir),
		"# tokens go through the environment (-auth-env, -token-env) and curl's stdin, never a command line: ps shows those to every local user",
		"# a payment signed by a device (RFC 9421), sent by sign -send",
		fmt.Sprintf("TOKEN=$(%s -scope payments)", mint),
		fmt.Sprintf(`AUTH="Bearer $TOKEN" apiguard sign%s -keyid %s -secret-file %s -auth-env AUTH -url %s/v1/pay -data '{"amount":100}' -send`,
			cacert, cliDevice, secretFile, d.base),
		"# a DPoP-bound call (RFC 9449): the token is bound to your key, each request carries a fresh proof",
		fmt.Sprintf("apiguard token keygen -out %s >/dev/null", dpopKey),
		fmt.Sprintf("TOKEN=$(%s -scope orders:write -dpop-key %s)", mint, dpopKey),
		"export TOKEN",
		fmt.Sprintf(`printf 'Authorization: DPoP %%s\n' "$TOKEN" | %s -si -X POST -H @- -H "DPoP: $(apiguard dpop -key %s -method POST -url %s/v1/orders -token-env TOKEN)" %s/v1/orders`,
			curl, dpopKey, d.base, d.base),
	}, cleanup, nil
}
