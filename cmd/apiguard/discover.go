package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/apiguard/apiguard/auth"
	"github.com/lestrrat-go/jwx/v2/jwa"
)

// algLists are the algorithm members of a discovery document that
// discover prints; auth.Discover reads only what auth uses.
type algLists struct {
	IDToken              []string `json:"id_token_signing_alg_values_supported"`
	DPoP                 []string `json:"dpop_signing_alg_values_supported"`
	TokenEndpointAuth    []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
}

func (c *cli) discover(args []string) int {
	fs := newFlags("discover", "ISSUER [flags]", `
Find an issuer's metadata as auth does (auth.Discover): its OpenID
Connect discovery document (ISSUER/.well-known/openid-configuration) or,
when that answers 404 or 410, its RFC 8414 authorization-server
metadata, whose issuer must equal ISSUER exactly. Print the issuer, the
jwks_uri and the algorithms it supports; then run "jwks check" on its
jwks_uri, with an auth.Verifier configured with the issuer alone, so
that auth discovers the key set itself.`)
	algs := fs.String("alg", "", "the issuer's allowed algorithms for the JWKS check, comma-separated (default: auth's)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each step's fetches")
	if ok, code := c.parse(fs, args, 1); !ok {
		return code
	}
	issuer := fs.pos
	if err := checkFetchURL(issuer); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, *timeout)
	m, err := auth.Discover(ctx, nil, issuer)
	cancel()
	if err != nil {
		return c.fail(fs.path, err)
	}
	fmt.Fprintf(c.stdout, "discovery %s\n", m.URL)
	fmt.Fprintf(c.stdout, "  issuer:    %s\n", m.Issuer)
	fmt.Fprintf(c.stdout, "  jwks_uri:  %s\n", oneLine(m.JWKSURI))
	// The algorithms, for the reader: auth.Discover checked the document.
	if body, _, err := c.fetchTimeout(m.URL, *timeout); err == nil {
		var l algLists
		if json.Unmarshal(body, &l) == nil {
			for _, a := range []struct {
				name string
				v    []string
			}{
				{"id_token_signing_alg_values_supported", l.IDToken},
				{"dpop_signing_alg_values_supported", l.DPoP},
				{"token_endpoint_auth_signing_alg_values_supported", l.TokenEndpointAuth},
				{"code_challenge_methods_supported", l.CodeChallengeMethods},
			} {
				if len(a.v) > 0 {
					fmt.Fprintf(c.stdout, "  %s: %s\n", a.name, oneLine(strings.Join(a.v, ", ")))
				}
			}
		}
	}
	fmt.Fprintln(c.stdout)
	var allowed []jwa.SignatureAlgorithm
	for _, a := range splitList(*algs) {
		allowed = append(allowed, jwa.SignatureAlgorithm(a))
	}
	return c.checkJWKS(fs.path, issuer, m.JWKSURI, allowed, *timeout, true)
}
