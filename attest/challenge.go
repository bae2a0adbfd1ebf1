package attest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/apiguard/apiguard/internal/problem"
)

// ErrChallenge: the challenge is unknown, used, expired, or bound to
// another key.
var ErrChallenge = errors.New("attest: challenge not valid")

type challenges struct {
	store ChallengeStore
	ttl   time.Duration
	now   func() time.Time
	scope string // the namespace's prefix of store ids
}

// issue makes a 32-byte random challenge bound to binding.
func (c *challenges) issue(ctx context.Context, binding string) (string, time.Time, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	ch := base64.RawURLEncoding.EncodeToString(b[:])
	exp := c.now().Add(c.ttl)
	if err := c.store.Put(ctx, c.scope+ch, binding, exp); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrStore, err)
	}
	return ch, exp, nil
}

// consume uses challenge once; binding must match the one it was issued
// for (an unbound challenge matches any).
func (c *challenges) consume(ctx context.Context, challenge, binding string) error {
	if challenge == "" || len(challenge) > 128 {
		return ErrChallenge
	}
	got, ok, err := c.store.Take(ctx, c.scope+challenge)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", ErrStore, err)
	case !ok:
		return ErrChallenge
	case got != "" && got != binding:
		return fmt.Errorf("%w: bound to another key", ErrChallenge)
	}
	return nil
}

// IssueChallenge returns a fresh single-use challenge bound to binding (a
// key ID for assertions, or "" for an attestation), and its expiry.
func (a *AppAttest) IssueChallenge(ctx context.Context, binding string) (string, time.Time, error) {
	ctx, cancel := a.storeContext(ctx)
	defer cancel()
	return a.challeng.issue(ctx, binding)
}

// ConsumeChallenge uses challenge once; it returns [ErrChallenge] when it
// is unknown, used, expired or bound to another key.
func (a *AppAttest) ConsumeChallenge(ctx context.Context, challenge, binding string) error {
	ctx, cancel := a.storeContext(ctx)
	defer cancel()
	return a.challeng.consume(ctx, challenge, binding)
}

// Header names of the App Attest HTTP profile.
const (
	HeaderKeyID     = "X-App-Attest-Key-Id"
	HeaderAssertion = "X-App-Attest-Assertion"
	HeaderChallenge = "X-App-Attest-Challenge"
)

// ChallengeHandler serves challenges: a POST answers
// {"challenge": "...", "expires_at": "..."}; the challenge is bound to the
// key ID in the X-App-Attest-Key-Id header when there is one (for
// assertions), and unbound otherwise (for an attestation). Put a rate
// limiter in front of it.
func (a *AppAttest) ChallengeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem.Write(w, problem.Problem{Type: problem.TypeBase + "method-not-allowed", Status: http.StatusMethodNotAllowed, Title: "Method not allowed"})
			return
		}
		binding := r.Header.Get(HeaderKeyID)
		if len(binding) > 64 {
			problem.Write(w, probBadAttest)
			return
		}
		ch, exp, err := a.IssueChallenge(r.Context(), binding)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			problem.Write(w, probAttestDown)
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
// input of a Play Integrity [RequestHash]. It binds the whole request: six
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
// percentEncodedQuery; Android: OkHttp's HttpUrl.encodedPath and
// encodedQuery), so that both are byte for byte the request target the
// server receives; the server reads [net/url.URL.EscapedPath] and
// [net/url.URL.RawQuery] of the request. Nothing between the app and the
// server may rewrite the target (a proxy that normalises query strings
// makes every assertion fail). No field can hold a line feed in a request
// that net/http accepts.
func ClientData(method, path, query string, body []byte, challenge string) []byte {
	sum := sha256.Sum256(body)
	return clientData(method, path, query, hex.EncodeToString(sum[:]), challenge)
}

func clientData(method, path, query, bodyHex, challenge string) []byte {
	return []byte(ClientDataVersion + "\n" + method + "\n" + path + "\n" + query + "\n" + bodyHex + "\n" + challenge)
}

// legacyClientData is the client data of the first HTTP profile (method,
// path, body digest and challenge): it does not cover the query. Accepted
// only under AppAttestConfig.InsecureAllowLegacyClientData and
// PlayIntegrityConfig.InsecureAllowLegacyRequestHash.
func legacyClientData(method, path, bodyHex, challenge string) []byte {
	return []byte(method + "\n" + path + "\n" + bodyHex + "\n" + challenge)
}

// requestClientData returns the client data of ev under the current
// binding, and under the legacy one when legacy is true (else nil).
func requestClientData(ev *Evidence, challenge string, legacy bool) (current, old []byte) {
	sum := sha256.Sum256(ev.Body)
	bodyHex := hex.EncodeToString(sum[:])
	current = clientData(ev.Method, ev.Path, ev.RawQuery, bodyHex, challenge)
	if legacy {
		old = legacyClientData(ev.Method, ev.Path, bodyHex, challenge)
	}
	return current, old
}

var (
	probBadAttest  = problem.Problem{Type: problem.TypeBase + "invalid-attestation", Title: "Invalid app attestation", Status: http.StatusUnauthorized, Detail: "The request's app attestation is missing or invalid; attest again."}
	probAttestDown = problem.Problem{Type: problem.TypeBase + "attestation-unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: "App attestation cannot be checked right now; retry later."}
	probTooBig     = problem.Problem{Type: problem.TypeBase + "body-too-large", Title: "Body too large", Status: http.StatusRequestEntityTooLarge, Detail: "The request body is larger than this endpoint accepts."}
)

// maxAssertedBody caps the body an assertion middleware reads.
const maxAssertedBody = 1 << 20

type assertionKey struct{}

// AssertionFrom returns the verified assertion of the request whose
// context is ctx.
func AssertionFrom(ctx context.Context) (*Assertion, bool) {
	a, ok := ctx.Value(assertionKey{}).(*Assertion)
	return a, ok
}

// Handler returns next behind App Attest assertions: each request carries
// X-App-Attest-Key-Id, X-App-Attest-Assertion (standard base64 CBOR) and
// X-App-Attest-Challenge (issued by [AppAttest.ChallengeHandler] for that
// key), and the assertion signs [ClientData] of the request. The
// challenge is used once, the body is read (up to 1 MiB) and handed on
// intact, and the verified [Assertion] is in the context. Failures are
// 401 problem+json, 413 for a large body, 503 when a store is down. It
// panics if next is nil.
func (a *AppAttest) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("attest: nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.Header.Get(HeaderKeyID) == "" || r.Header.Get(HeaderChallenge) == "" || r.Header.Get(HeaderAssertion) == "" {
			a.fail(ctx, "assertion", ErrMalformed)
			problem.Write(w, probBadAttest)
			return
		}
		ev, err := requestEvidence(r, maxAssertedBody)
		if errors.Is(err, ErrBodyTooLarge) {
			problem.Write(w, probTooBig)
			return
		}
		if err != nil {
			problem.Write(w, probBadAttest)
			return
		}
		sctx, cancel := a.storeContext(ctx)
		as, err := a.verifyRequest(sctx, &ev)
		cancel()
		if err != nil {
			if errors.Is(err, ErrStore) {
				w.Header().Set("Retry-After", "1")
				problem.Write(w, probAttestDown)
				return
			}
			problem.Write(w, probBadAttest)
			return
		}
		r2 := r.WithContext(context.WithValue(ctx, assertionKey{}, as))
		if ev.Body != nil {
			r2.Body = io.NopCloser(bytes.NewReader(ev.Body))
			r2.ContentLength = int64(len(ev.Body))
		}
		next.ServeHTTP(w, r2)
	})
}

// verifyRequest verifies the App Attest headers of ev: the assertion over
// the request's [ClientData], then the
// challenge, used once and bound to the key. The signature comes first,
// so that unauthenticated traffic never consumes a challenge. ctx carries
// the one deadline of the request's store calls. Failures are logged
// once, here.
func (a *AppAttest) verifyRequest(ctx context.Context, ev *Evidence) (*Assertion, error) {
	keyID, challenge := ev.KeyID, ev.Challenge
	assertion, err := base64.StdEncoding.DecodeString(ev.Assertion)
	if keyID == "" || challenge == "" || err != nil || len(assertion) == 0 {
		a.fail(ctx, "assertion", ErrMalformed)
		return nil, ErrMalformed
	}
	current, legacy := requestClientData(ev, challenge, a.cfg.InsecureAllowLegacyClientData)
	as, err := a.verifyAssertion(ctx, keyID, assertion, current, legacy)
	if err == nil {
		err = a.challeng.consume(ctx, challenge, keyID)
	}
	if err != nil {
		a.fail(ctx, "assertion", err)
		return nil, err
	}
	if as.LegacyClientData {
		a.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "attest: assertion over legacy client data admitted",
			slog.String("event", "attestation_legacy_binding"), slog.String("reason", "query_not_covered"),
			slog.String("provider", "app_attest"))
	}
	return as, nil
}
