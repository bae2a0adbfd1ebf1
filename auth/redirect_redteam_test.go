package auth

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// roundTripFunc is an http.RoundTripper of a function: the network the
// default client talks to, without sockets.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestJWKSRedirectDowngradeToCleartext: the issuer's https key set (or
// metadata document) answers with a redirect to http on the same host
// (a misconfigured load balancer, an open redirect on the IdP). Host
// equality alone lets the default client follow it, and the keys then
// come over cleartext, where anyone on the path can replace them. The
// https-only rule of Config and Discover must hold for every hop.
func TestJWKSRedirectDowngradeToCleartext(t *testing.T) {
	var cleartext int
	client := defaultHTTPClient(0)
	client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Scheme == "https" {
			h := http.Header{"Location": []string{"http://idp.example/keys"}}
			return &http.Response{StatusCode: http.StatusFound, Header: h, Body: http.NoBody, Request: r}, nil
		}
		cleartext++
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"keys":[]}`)), Request: r}, nil
	})
	_, _, err := getBounded(t.Context(), client, "https://idp.example/keys", "application/json", 1<<10)
	require.ErrorContains(t, err, "redirect")
	require.Zero(t, cleartext, "no request leaves over cleartext")

	// A loopback issuer on http may still redirect on loopback (tests,
	// local development), as Config allows http there.
	client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/old" {
			h := http.Header{"Location": []string{"http://127.0.0.1/keys"}}
			return &http.Response{StatusCode: http.StatusFound, Header: h, Body: http.NoBody, Request: r}, nil
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"keys":[]}`)), Request: r}, nil
	})
	body, _, err := getBounded(t.Context(), client, "http://127.0.0.1/old", "application/json", 1<<10)
	require.NoError(t, err)
	require.JSONEq(t, `{"keys":[]}`, string(body))
}
