package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ServerMetadata is what [Discover] read from an authorization server's
// metadata document (OpenID Connect Discovery 1.0, RFC 8414): the members
// apiguard uses, each URL checked to be https (http only on loopback).
type ServerMetadata struct {
	URL                   string // where the document was found
	Issuer                string // issuer, equal to the one asked for
	JWKSURI               string // jwks_uri
	TokenEndpoint         string // token_endpoint; empty when absent
	IntrospectionEndpoint string // introspection_endpoint; empty when absent
}

// maxDiscoverySize caps a metadata document read by [Discover]; a
// Verifier uses Config.MaxJWKSSize.
const maxDiscoverySize = 512 << 10

// errDiscovery marks a failed discovery, for the log's reason.
var errDiscovery = errors.New("discovery")

// Discover fetches the metadata of the authorization server issuer: first
// the OpenID Connect document (issuer + "/.well-known/openid-configuration"),
// then, only if that answers 404 or 410, the RFC 8414 document (the
// well-known path inserted between host and path, RFC 8414 §3.1). It
// refuses a document whose issuer is not exactly issuer (RFC 8414 §3.3,
// OpenID Connect Discovery §4.3: a document for another issuer is an
// attack or a mix-up), one without jwks_uri, one over 512 KiB, and URLs
// that are not https (http only on loopback). A nil client gets one that
// follows no redirect to another host or to http and gives up after 5s, the
// Verifier's defaults. A Verifier whose issuer has neither JWKSURL nor
// Keys runs it on its key-fetch schedule (see [Issuer]).
func Discover(ctx context.Context, client *http.Client, issuer string) (*ServerMetadata, error) {
	if client == nil {
		client = defaultHTTPClient(5 * time.Second)
	}
	if err := checkIssuerURL(issuer); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	m, err := discover(ctx, client, issuer, maxDiscoverySize)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return m, nil
}

// discoveryURLs returns the URLs of issuer's metadata in the order tried:
// OpenID Connect Discovery §4 (the issuer, any terminating "/" removed,
// then /.well-known/openid-configuration), then RFC 8414 §3.1
// (/.well-known/oauth-authorization-server inserted between host and
// path, any terminating "/" removed).
func discoveryURLs(issuer string) []string {
	u, _ := url.Parse(issuer) // checked by checkIssuerURL
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	oidc := *u
	oidc.RawPath = ""
	oidc.Path = ""
	oidc.Opaque = ""
	base := oidc.String()
	return []string{
		base + path + "/.well-known/openid-configuration",
		base + "/.well-known/oauth-authorization-server" + path,
	}
}

// checkIssuerURL checks that issuer can be discovered: an https URL
// (http only on loopback) without query or fragment (RFC 8414 §2).
func checkIssuerURL(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || !secureScheme(u) {
		return fmt.Errorf("issuer %q must be an https URL (http only on loopback) without query or fragment to discover its jwks_uri", issuer)
	}
	return nil
}

// secureScheme reports whether u is https, or http to a loopback host.
func secureScheme(u *url.URL) bool {
	return u.Scheme == "https" || (u.Scheme == "http" && isLoopback(u.Hostname()))
}

// discover fetches and checks issuer's metadata, trying the URLs of
// discoveryURLs in order while they answer 404 or 410.
func discover(ctx context.Context, client *http.Client, issuer string, maxSize int64) (*ServerMetadata, error) {
	var err error
	for _, u := range discoveryURLs(issuer) {
		var m *ServerMetadata
		m, err = fetchMetadata(ctx, client, u, issuer, maxSize)
		if err == nil {
			return m, nil
		}
		if se, ok := errors.AsType[*statusError](err); !ok || !se.gone() {
			break // an outage or a bad document: no fallback that could hide it
		}
	}
	return nil, err
}

func fetchMetadata(ctx context.Context, client *http.Client, docURL, issuer string, maxSize int64) (*ServerMetadata, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w document %s: %s", errDiscovery, docURL, fmt.Sprintf(format, args...))
	}
	body, _, err := getBounded(ctx, client, docURL, "application/json", maxSize)
	if err != nil {
		return nil, fmt.Errorf("%w document: %w", errDiscovery, err)
	}
	var doc struct {
		Issuer                *string `json:"issuer"`
		JWKSURI               string  `json:"jwks_uri"`
		TokenEndpoint         string  `json:"token_endpoint"`
		IntrospectionEndpoint string  `json:"introspection_endpoint"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fail("not a JSON object of string members: %v", err)
	}
	if doc.Issuer == nil {
		return nil, fail("no issuer member")
	}
	if *doc.Issuer != issuer {
		return nil, fail("issuer mismatch: the document is for %s, configured issuer is %q", quoteUntrusted(*doc.Issuer), issuer)
	}
	if doc.JWKSURI == "" {
		return nil, fail("no jwks_uri")
	}
	for _, f := range []struct{ name, val string }{
		{"jwks_uri", doc.JWKSURI}, {"token_endpoint", doc.TokenEndpoint}, {"introspection_endpoint", doc.IntrospectionEndpoint},
	} {
		if f.val == "" {
			continue
		}
		if u, err := url.Parse(f.val); err != nil || u.Host == "" || u.Fragment != "" || !secureScheme(u) {
			return nil, fail("%s %s is not an https URL (http only on loopback)", f.name, quoteUntrusted(f.val))
		}
	}
	return &ServerMetadata{
		URL: docURL, Issuer: *doc.Issuer, JWKSURI: doc.JWKSURI,
		TokenEndpoint: doc.TokenEndpoint, IntrospectionEndpoint: doc.IntrospectionEndpoint,
	}, nil
}

// statusError is a fetch answered with a status other than 200.
type statusError struct {
	url  string
	code int
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s returned %d", e.url, e.code) }

// gone reports whether the resource is not (or no longer) there: 404 or
// 410, the answers that make a Verifier discover the JWKS URL again.
func (e *statusError) gone() bool {
	return e.code == http.StatusNotFound || e.code == http.StatusGone
}

// getBounded GETs u and returns its body of at most maxSize bytes, and
// its headers. A status other than 200 is a *statusError.
func getBounded(ctx context.Context, client *http.Client, u, accept string, maxSize int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // its text repeats the method and URL
		}
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, &statusError{url: u, code: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(body)) > maxSize {
		return nil, nil, fmt.Errorf("GET %s: body over Config.MaxJWKSSize (%d bytes)", u, maxSize)
	}
	return body, resp.Header, nil
}

// discovered is the JWKS URL found by discovery, and when: the fetch
// goroutine owns it (fetches of one issuer never overlap).
type discovered struct {
	jwksURL string
	at      time.Time // start of the key-set fetch that discovered it
}

// discoverJWKS is the key-set fetch of an issuer configured without
// JWKSURL: it discovers the JWKS URL when none is known, when the last
// discovery is MaxKeyRefresh old, and again at once (once per fetch) when
// the JWKS URL answers 404 or 410; then it downloads the JWKS. A failed
// discovery fails the fetch, with the same back-off, staleness and
// readiness rules as a failed JWKS download.
func (ik *issuerKeys) discoverJWKS(ctx context.Context, started time.Time) (*keySet, time.Duration, error) {
	fresh := false
	if ik.disc == nil || started.Sub(ik.disc.at) >= ik.v.cfg.MaxKeyRefresh {
		if err := ik.rediscover(ctx, started); err != nil {
			return nil, 0, err
		}
		fresh = true
	}
	set, maxAge, err := ik.downloadFrom(ctx, ik.disc.jwksURL, started)
	if se, ok := errors.AsType[*statusError](err); ok && se.gone() && !fresh {
		if err := ik.rediscover(ctx, started); err != nil {
			return nil, 0, err
		}
		return ik.downloadFrom(ctx, ik.disc.jwksURL, started)
	}
	return set, maxAge, err
}

func (ik *issuerKeys) rediscover(ctx context.Context, started time.Time) error {
	m, err := discover(ctx, ik.v.cfg.HTTPClient, ik.issuer.Issuer, ik.v.cfg.MaxJWKSSize)
	if err != nil {
		return err
	}
	ik.disc = &discovered{jwksURL: m.JWKSURI, at: started}
	return nil
}

// keySource names where the issuer's keys come from, for errors.
func (ik *issuerKeys) keySource() string {
	if ik.issuer.JWKSURL != "" {
		return ik.issuer.JWKSURL
	}
	return discoveryURLs(ik.issuer.Issuer)[0]
}

// defaultHTTPClient fetches JWKS and metadata: no redirect to another
// host or to cleartext (https only, http only on loopback, as for the
// configured URLs: keys fetched over http could be replaced on the
// path), at most 3 redirects, timeout.
func defaultHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			switch {
			case len(via) >= 3 || req.URL.Host != via[0].URL.Host:
				return errors.New("auth: JWKS redirect to another host refused")
			case !secureScheme(req.URL):
				return errors.New("auth: JWKS redirect to cleartext http refused")
			}
			return nil
		},
	}
}
