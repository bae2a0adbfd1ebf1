package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// discoveryDoc is the part of an OpenID Connect discovery document or RFC
// 8414 authorization-server metadata that the check reads.
type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	IDTokenAlgs           []string `json:"id_token_signing_alg_values_supported"`
	DPoPAlgs              []string `json:"dpop_signing_alg_values_supported"`
	TokenEndpointAuthAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
}

// discoveryURLs are where an issuer's metadata lives: OpenID Connect
// Discovery appends /.well-known/openid-configuration to the issuer; RFC
// 8414 §3.1 inserts /.well-known/oauth-authorization-server between the
// host and the issuer's path.
func discoveryURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("issuer %q is not an absolute URL without query or fragment", issuer)
	}
	oidc, rfc := *u, *u
	oidc.RawPath, rfc.RawPath = "", ""
	oidc.Path = strings.TrimSuffix(u.Path, "/") + "/.well-known/openid-configuration"
	rfc.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.Path, "/")
	return []string{oidc.String(), rfc.String()}, nil
}

func (c *cli) discover(args []string) int {
	fs := newFlags("discover", "ISSUER [flags]", `
Fetch an issuer's OpenID Connect discovery document
(ISSUER/.well-known/openid-configuration) or, when that answers 404 or
410, its RFC 8414 authorization-server metadata; check that its issuer equals ISSUER
exactly, as auth does; print the issuer, the jwks_uri and the
algorithms it supports; then run "jwks check" on its jwks_uri.`)
	algs := fs.String("alg", "", "the issuer's allowed algorithms for the JWKS check, comma-separated (default: auth's)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each step's fetches")
	if ok, code := c.parse(fs, args, 1); !ok {
		return code
	}
	issuer := fs.pos
	if err := checkFetchURL(issuer); err != nil {
		return c.usageErr(fs, "%v", err)
	}
	urls, err := discoveryURLs(issuer)
	if err != nil {
		return c.usageErr(fs, "%v", err)
	}
	var doc discoveryDoc
	var from string
	var errs []string
	for _, u := range urls {
		body, _, ferr := c.fetchTimeout(u, *timeout)
		if ferr != nil {
			errs = append(errs, ferr.Error())
			// As auth does: RFC 8414 only when the OpenID Connect
			// document is not there.
			var se *statusError
			if errors.As(ferr, &se) && (se.code == http.StatusNotFound || se.code == http.StatusGone) {
				continue
			}
			break
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			errs = append(errs, fmt.Sprintf("%s: not JSON: %v", u, err))
			continue
		}
		from = u
		break
	}
	if from == "" {
		return c.fail(fs.path, fmt.Errorf("no discovery document: %s", strings.Join(errs, "; ")))
	}
	fmt.Fprintf(c.stdout, "discovery %s\n", from)
	fmt.Fprintf(c.stdout, "  issuer:    %s\n", orNone(oneLine(doc.Issuer)))
	fmt.Fprintf(c.stdout, "  jwks_uri:  %s\n", orNone(oneLine(doc.JWKSURI)))
	for _, l := range []struct {
		name string
		v    []string
	}{
		{"id_token_signing_alg_values_supported", doc.IDTokenAlgs},
		{"dpop_signing_alg_values_supported", doc.DPoPAlgs},
		{"token_endpoint_auth_signing_alg_values_supported", doc.TokenEndpointAuthAlgs},
		{"code_challenge_methods_supported", doc.CodeChallengeMethods},
	} {
		if len(l.v) > 0 {
			fmt.Fprintf(c.stdout, "  %s: %s\n", l.name, oneLine(strings.Join(l.v, ", ")))
		}
	}
	if doc.Issuer != issuer {
		fmt.Fprintf(c.stdout, "\nrefused: the document's issuer %q is not %q exactly (OpenID Connect Discovery §4.3, RFC 8414 §3.3)\n", oneLine(doc.Issuer), issuer)
		return exitFailure
	}
	if doc.JWKSURI == "" {
		fmt.Fprintln(c.stdout, "\nrefused: the document has no jwks_uri")
		return exitFailure
	}
	if err := checkFetchURL(doc.JWKSURI); err != nil {
		fmt.Fprintf(c.stdout, "\nrefused: jwks_uri: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(c.stdout)
	var allowed []jwa.SignatureAlgorithm
	for _, a := range splitList(*algs) {
		allowed = append(allowed, jwa.SignatureAlgorithm(a))
	}
	return c.checkJWKS(fs.path, issuer, doc.JWKSURI, allowed, *timeout)
}
