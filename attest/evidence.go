package attest

import (
	"net/http"

	"github.com/apiguard/apiguard/attest/internal/provider"
)

// ErrBodyTooLarge is the error of a request whose body is larger than
// the limit (Config.MaxBodyBytes): the body is read whole to check what
// the assertion or the integrity token binds, so it is refused (413)
// rather than cut.
var ErrBodyTooLarge = provider.ErrBodyTooLarge

// UnavailableError reports that a vendor cannot be asked now, and in
// RetryAfter how long until it is asked again (the Retry-After of a 503).
// It wraps [ErrVendor].
type UnavailableError = provider.UnavailableError

// Evidence is what [Verifier.Assess] reads of one request, without HTTP:
// the request's target and body, which attestations bind, the values of
// the attestation headers, and who and where the request came from.
// [Verifier.EvidenceFrom] gathers it from an *http.Request; a caller
// outside net/http (gRPC, a WebSocket message) fills it in itself.
type Evidence struct {
	// Method, Path and RawQuery are the request's method, its path as
	// sent ([net/url.URL.EscapedPath]) and its query as sent
	// ([net/url.URL.RawQuery]): what an assertion's client data and an
	// integrity token's request hash bind.
	Method, Path, RawQuery string
	// Body is the request body, nil when there is none.
	Body []byte
	// KeyID, Challenge and Assertion are the App Attest headers
	// (X-App-Attest-Key-Id, -Challenge, -Assertion, standard base64): an
	// assertion over appattest.ClientData of the request.
	KeyID, Challenge, Assertion string
	// PlayIntegrity is a Play Integrity standard token whose requestHash
	// is playintegrity.RequestHash of the request (X-Play-Integrity).
	PlayIntegrity string
	// AppCheck is a Firebase App Check token (X-Firebase-AppCheck).
	AppCheck string
	// Subject names the history the request extends; "" assesses the
	// request on its attestation alone.
	Subject string
	// Location is where the request came from, nil when it is not known;
	// it counts only with a Subject.
	Location *Location
}

// EvidenceFrom gathers the Evidence of r: its target, its body (read
// whole, up to Config.MaxBodyBytes), the attestation headers, the subject
// by Config.Subject (an error there leaves it empty) and, for a request
// with a subject, the location by Config.Locator. A body over the limit
// is [ErrBodyTooLarge]; one that cannot be read is another error. r.Body
// is consumed: whoever serves r afterwards hands on Evidence.Body, as
// [Verifier.Handler] does.
func (v *Verifier) EvidenceFrom(r *http.Request) (Evidence, error) {
	ev, err := requestEvidence(r, v.cfg.MaxBodyBytes)
	if err != nil {
		return Evidence{}, err
	}
	if s, err := v.cfg.Subject(r); err == nil {
		ev.Subject = s
	}
	if ev.Subject != "" && v.cfg.Locator != nil {
		if loc, ok := v.cfg.Locator.Locate(r); ok {
			ev.Location = &loc
		}
	}
	return ev, nil
}

// requestEvidence reads r's target, attestation headers and body (up to
// maxBody bytes).
func requestEvidence(r *http.Request, maxBody int64) (Evidence, error) {
	body, err := provider.ReadBody(r, maxBody)
	if err != nil {
		return Evidence{}, err
	}
	return Evidence{
		Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Body: body,
		KeyID: r.Header.Get(provider.HeaderKeyID), Challenge: r.Header.Get(provider.HeaderChallenge),
		Assertion:     r.Header.Get(provider.HeaderAssertion),
		PlayIntegrity: r.Header.Get(provider.HeaderPlayIntegrity), AppCheck: r.Header.Get(provider.HeaderAppCheck),
	}, nil
}
