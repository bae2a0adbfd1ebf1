package appattest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/internal/problem"
	"github.com/apiguard/apiguard/internal/shadowbody"
)

// Header names of the App Attest HTTP profile.
const (
	HeaderKeyID     = "X-App-Attest-Key-Id"
	HeaderAssertion = "X-App-Attest-Assertion"
	HeaderChallenge = "X-App-Attest-Challenge"
)

// ErrBodyTooLarge is the error of a request to [Verifier.Handler] whose
// body is larger than Config.MaxBodyBytes: the body is read whole to
// check what the assertion binds, so it is refused (413) rather than cut.
var ErrBodyTooLarge = provider.ErrBodyTooLarge

// ChallengeHandler serves challenges: a POST answers
// {"challenge": "...", "expires_at": "..."}; the challenge is bound to the
// key ID in the X-App-Attest-Key-Id header when there is one (for
// assertions), and unbound otherwise (for an attestation). Errors go to
// Config.ErrorHandler: [ErrMalformed] for a key ID over 64 bytes, and
// [ErrStore] when the challenge store is down. Put a rate limiter in
// front of it.
func (a *Verifier) ChallengeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem.Write(w, problem.Problem{Type: problem.TypeBase + "method-not-allowed", Status: http.StatusMethodNotAllowed, Title: "Method not allowed"})
			return
		}
		binding := r.Header.Get(HeaderKeyID)
		if len(binding) > 64 {
			a.cfg.ErrorHandler(w, r, ErrMalformed)
			return
		}
		ch, exp, err := a.IssueChallenge(r.Context(), binding)
		if err != nil {
			a.cfg.ErrorHandler(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]string{"challenge": ch, "expires_at": exp.UTC().Format(time.RFC3339)})
	})
}

// ClientDataVersion is the first line of [ClientData]: it names the
// binding, so that client data of one version never reads as another's.
const ClientDataVersion = "apiguard-attest-v2"

// ClientData is the canonical client data an app signs with
// generateAssertion under the HTTP profile, and (without a challenge) the
// input of a Play Integrity requestHash. It binds the whole request: six
// fields, each followed by a line feed except the last:
//
//	apiguard-attest-v2      ClientDataVersion
//	POST                    the method, as sent
//	/v1/transfer            the path, percent-encoded as sent
//	to=alice&amount=10      the query as sent, without the "?": percent-encoding and
//	                        parameter order unchanged, nothing sorted or decoded; empty
//	                        when the URL has none
//	9f86d081884c7d65…       lower-case hex SHA-256 of the body (of no bytes when there is none)
//	Zm9vYmFy…               the challenge, as issued (empty in a requestHash)
//
// The app takes the path and the query from the URL object it sends the
// request with (iOS: URLComponents.percentEncodedPath and
// percentEncodedQuery), so that both are byte for byte the request target
// the server receives; the server reads [net/url.URL.EscapedPath] and
// [net/url.URL.RawQuery] of the request. Nothing between the app and the
// server may rewrite the target (a proxy that normalises query strings
// makes every assertion fail). No field can hold a line feed in a request
// that net/http accepts.
func ClientData(method, path, query string, body []byte, challenge string) []byte {
	return provider.ClientData(method, path, query, body, challenge)
}

// ClientDataHash returns SHA-256 of a challenge: the clientDataHash most
// apps pass to attestKey.
func ClientDataHash(challenge []byte) []byte {
	h := sha256.Sum256(challenge)
	return h[:]
}

type assertionKey struct{}

// shadowKey marks the context of a request that Handler checks in shadow
// mode, so that its refusal is logged with shadow=true.
type shadowKey struct{}

// AssertionFrom returns the verified assertion of the request whose
// context is ctx.
func AssertionFrom(ctx context.Context) (*Assertion, bool) {
	a, ok := ctx.Value(assertionKey{}).(*Assertion)
	return a, ok
}

// Handler returns next behind App Attest assertions: each request carries
// X-App-Attest-Key-Id, X-App-Attest-Assertion (standard base64 CBOR) and
// X-App-Attest-Challenge (issued by [Verifier.ChallengeHandler] for that
// key), and the assertion signs [ClientData] of the request. The
// challenge is used once, the body is read whole (up to
// Config.MaxBodyBytes) and handed on intact, and the verified [Assertion]
// is in the context. Rejections are logged as attestation_failed and go
// to Config.ErrorHandler (in shadow mode, Config.Shadow, logged with
// shadow=true and passed to next). It panics if next is nil.
func (a *Verifier) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("attest: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, in, seen := r.Context(), r, (*shadowbody.Body)(nil)
		if a.cfg.Shadow {
			ctx = context.WithValue(ctx, shadowKey{}, true) // for fail: the refusal is a would-deny
			in, seen = shadowbody.Watch(r)
		}
		refuse := func(err error) {
			if !a.cfg.Shadow {
				a.cfg.ErrorHandler(w, r, err)
				return
			}
			next.ServeHTTP(w, seen.Restore(r))
		}
		if r.Header.Get(HeaderKeyID) == "" || r.Header.Get(HeaderChallenge) == "" || r.Header.Get(HeaderAssertion) == "" {
			a.fail(ctx, "assertion", ErrMalformed)
			refuse(ErrMalformed)
			return
		}
		body, err := provider.ReadBody(in, a.cfg.MaxBodyBytes)
		if err != nil {
			a.fail(ctx, "assertion", err)
			refuse(err)
			return
		}
		req := &provider.Request{
			Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Body: body,
			KeyID: r.Header.Get(HeaderKeyID), Challenge: r.Header.Get(HeaderChallenge), Assertion: r.Header.Get(HeaderAssertion),
		}
		sctx, cancel := a.storeContext(ctx)
		as, err := a.verifyRequest(sctx, req)
		cancel()
		if err != nil {
			refuse(err)
			return
		}
		r2 := r.WithContext(context.WithValue(r.Context(), assertionKey{}, as))
		if body != nil {
			r2.Body = io.NopCloser(bytes.NewReader(body))
			r2.ContentLength = int64(len(body))
		}
		next.ServeHTTP(w, r2)
	})
}

// WriteError is the default Config.ErrorHandler. It answers with an
// RFC 9457 problem+json body: 413 for [ErrBodyTooLarge], 503 with
// Retry-After for [ErrStore], for enrolment 400 for [ErrEnrolRequest]
// and 409 for [ErrKeyTaken], and 401 for any other error (the detail
// never says which check failed).
func (a *Verifier) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrEnrolRequest):
		problem.Write(w, provider.ProbBadEnrolRq)
	case errors.Is(err, ErrKeyTaken):
		problem.Write(w, provider.ProbKeyTaken)
	case errors.Is(err, ErrBodyTooLarge):
		problem.Write(w, provider.ProbTooBig)
	case errors.Is(err, ErrStore):
		w.Header().Set("Retry-After", "1")
		problem.Write(w, provider.ProbAttestDown)
	default:
		problem.Write(w, provider.ProbBadAttest)
	}
}

// verifyRequest verifies the App Attest headers of req: the assertion over
// the request's [ClientData], then the challenge, used once and bound to
// the key. The signature comes first, so that unauthenticated traffic
// never consumes a challenge. ctx carries the one deadline of the
// request's store calls. Failures are logged once, here.
func (a *Verifier) verifyRequest(ctx context.Context, req *provider.Request) (*Assertion, error) {
	keyID, challenge := req.KeyID, req.Challenge
	assertion, err := base64.StdEncoding.DecodeString(req.Assertion)
	if keyID == "" || challenge == "" || err != nil || len(assertion) == 0 {
		a.fail(ctx, "assertion", ErrMalformed)
		return nil, ErrMalformed
	}
	current, legacy := req.ClientData(challenge, a.cfg.InsecureAllowLegacyClientData)
	as, err := a.verifyAssertion(ctx, keyID, assertion, current, legacy)
	if err == nil {
		err = a.challeng.consume(ctx, challenge, keyID)
	}
	if err != nil {
		a.fail(ctx, "assertion", err)
		return nil, err
	}
	if as.LegacyClientData {
		events.Log(ctx, a.cfg.Logger, slog.LevelInfo, "attest: assertion over legacy client data admitted",
			slog.String("event", "attestation_legacy_binding"), slog.String("reason", "query_not_covered"),
			slog.String("provider", "app_attest"))
	}
	return as, nil
}

// Ready reports whether a's stores can be asked: for Config.Keys and
// Config.Challenges that have a Ready(ctx) error method (redisstore's),
// their answers within Config.StoreTimeout, wrapped in [ErrStore]; nil
// for the in-memory defaults. It can be called concurrently with request
// handling.
func (a *Verifier) Ready(ctx context.Context) error {
	ctx, cancel := a.storeContext(ctx)
	defer cancel()
	if err := provider.StoreReady(ctx, "key store", a.cfg.Keys); err != nil {
		return err
	}
	return provider.StoreReady(ctx, "challenge store", a.cfg.Challenges)
}

// Provider is how an attest.Verifier consults a: set a itself as
// attest.Config.AppAttest rather than calling this. Under it, the
// assertion signs [ClientData] of the request and the store calls share
// the risk assessment's store deadline.
func (a *Verifier) Provider() provider.Provider {
	return provider.Provider{Name: "app_attest", Identities: a.cfg.AppIDs,
		Check: func(ctx context.Context, r *provider.Request) (*provider.Verdict, error) {
			sctx, cancel := r.Store.Context(ctx)
			defer cancel()
			as, err := a.verifyRequest(sctx, r)
			if err != nil {
				return nil, err
			}
			return &provider.Verdict{KeyID: as.KeyID, OSVersion: as.Key.OSVersion, CounterJump: as.Counter - as.Previous}, nil
		}}
}
