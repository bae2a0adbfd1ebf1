// Package provider is what attest's risk engine and its vendor packages
// (appattest, playintegrity, appcheck) share, so that each vendor package
// is usable alone and none imports another: the contract through which
// the engine consults a vendor ([Provider], [Request], [Verdict]), the
// outage errors whose identity both sides test with errors.Is, the
// spacing of calls to vendors and the loop that fetches a vendor's
// document ([Fetcher]: a key set, a revocation status list), the
// request's one store deadline, the
// client data that binds an attestation to a request, and store-id
// scopes.
package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/apiguard/apiguard/internal/problem"
)

// Errors shared by the engine and the vendors, re-exported by each public
// package that returns them, so that errors.Is matches across packages.
var (
	ErrVendor       = errors.New("attest: attestation vendor unavailable")
	ErrStore        = errors.New("attest: store unavailable")
	ErrBodyTooLarge = errors.New("attest: request body too large")
)

// UnavailableError reports that a vendor cannot be asked now (its key set
// never loaded or is stale, its API failed and is backed off, or too many
// calls are under way), and how long until the verifier asks it again:
// Retry-After is what the server will actually do. It wraps ErrVendor.
type UnavailableError struct {
	// RetryAfter is the time until the verifier will ask the vendor
	// again: at least one second.
	RetryAfter time.Duration
	// Err is the cause; it matches ErrVendor with errors.Is.
	Err error
}

// Error implements error.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.RetryAfter)
}

// Unwrap returns Err.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable wraps cause (nil: none known) in an UnavailableError that
// matches ErrVendor.
func Unavailable(retry time.Duration, cause error) *UnavailableError {
	err := ErrVendor
	if cause != nil {
		err = fmt.Errorf("%w: %v", ErrVendor, cause)
	}
	return &UnavailableError{RetryAfter: max(retry, time.Second), Err: err}
}

// RetryAfterHeader is the Retry-After of an error: an UnavailableError's
// own, rounded up to whole seconds, or one second (a store is asked again
// by the next request).
func RetryAfterHeader(err error) string {
	if ue, ok := errors.AsType[*UnavailableError](err); ok {
		return strconv.FormatInt(int64((ue.RetryAfter+time.Second-1)/time.Second), 10)
	}
	return "1"
}

// Header names of the attestation evidence a request carries.
const (
	HeaderKeyID         = "X-App-Attest-Key-Id"
	HeaderAssertion     = "X-App-Attest-Assertion"
	HeaderChallenge     = "X-App-Attest-Challenge"
	HeaderPlayIntegrity = "X-Play-Integrity"
	HeaderAppCheck      = "X-Firebase-AppCheck"
)

// Request is the part of one request that a vendor checks.
type Request struct {
	// Method, Path (escaped, as sent) and RawQuery: what client data binds.
	Method, Path, RawQuery string
	// Body is the request body, nil when there is none.
	Body []byte
	// KeyID, Challenge and Assertion are the App Attest headers.
	KeyID, Challenge, Assertion string
	// Token is the Play Integrity or App Check token.
	Token string
	// Store is the one deadline of the request's store calls.
	Store *StoreDeadline
	// LimitedUse: the route requires a limited-use App Check token, used
	// once (attest.Route.LimitedUse).
	LimitedUse bool
}

// Verdict is what a vendor's check of one request tells the engine.
type Verdict struct {
	// KeyID is the attested key that signed (App Attest), for key churn.
	KeyID string
	// OSVersion is the iOS version of the attested key (App Attest).
	OSVersion string
	// CounterJump is how far the assertion counter advanced (App Attest).
	CounterJump uint32
	// PlayProtect, DeviceActivity and SDKVersion are Play Integrity's
	// playProtectVerdict, deviceActivityLevel and sdkVersion.
	PlayProtect, DeviceActivity string
	SDKVersion                  int
}

// Provider is a vendor verifier as the engine consults it.
type Provider struct {
	// Name is app_attest, play_integrity or app_check.
	Name string
	// Identities name the apps it verifies (App IDs, a package name, a
	// project), for the engine's default namespace.
	Identities []string
	// Check verifies the evidence of r. Its errors that match ErrVendor
	// or ErrStore are outages; any other is evidence that does not
	// verify. It logs its own refusals.
	Check func(ctx context.Context, r *Request) (*Verdict, error)
}

// StoreDeadline is the one deadline of a request's store calls, fixed
// Timeout after the first of them, so that a slow store costs a request
// one timeout, not one per call. It is safe for concurrent use.
type StoreDeadline struct {
	Timeout time.Duration
	mu      sync.Mutex
	at      time.Time
}

// Context returns ctx bounded by the deadline.
func (d *StoreDeadline) Context(ctx context.Context) (context.Context, context.CancelFunc) {
	d.mu.Lock()
	if d.at.IsZero() {
		d.at = time.Now().Add(d.Timeout)
	}
	at := d.at
	d.mu.Unlock()
	return context.WithDeadline(ctx, at)
}

// ClientDataVersion is the first line of client data.
const ClientDataVersion = "apiguard-attest-v2"

// ClientData is the canonical client data of a request (see
// appattest.ClientData).
func ClientData(method, path, query string, body []byte, challenge string) []byte {
	sum := sha256.Sum256(body)
	return clientData(method, path, query, hex.EncodeToString(sum[:]), challenge)
}

func clientData(method, path, query, bodyHex, challenge string) []byte {
	return []byte(ClientDataVersion + "\n" + method + "\n" + path + "\n" + query + "\n" + bodyHex + "\n" + challenge)
}

// legacyClientData is the client data of the first HTTP profile (method,
// path, body digest and challenge): it does not cover the query.
func legacyClientData(method, path, bodyHex, challenge string) []byte {
	return []byte(method + "\n" + path + "\n" + bodyHex + "\n" + challenge)
}

// RequestHash is the Play Integrity requestHash of a request: lower-case
// hex SHA-256 of its client data without a challenge.
func RequestHash(method, path, query string, body []byte) string {
	sum := sha256.Sum256(ClientData(method, path, query, body, ""))
	return hex.EncodeToString(sum[:])
}

// ClientData returns the client data of r under the current binding,
// and under the legacy one when legacy is true (else nil).
func (r *Request) ClientData(challenge string, legacy bool) (current, old []byte) {
	sum := sha256.Sum256(r.Body)
	bodyHex := hex.EncodeToString(sum[:])
	current = clientData(r.Method, r.Path, r.RawQuery, bodyHex, challenge)
	if legacy {
		old = legacyClientData(r.Method, r.Path, bodyHex, challenge)
	}
	return current, old
}

// RequestHashes returns the request hashes r's token may carry: the
// current one, and the legacy one (no query) when legacy is true.
func (r *Request) RequestHashes(legacy bool) []string {
	current, old := r.ClientData("", legacy)
	sum := sha256.Sum256(current)
	out := []string{hex.EncodeToString(sum[:])}
	if old != nil {
		sum = sha256.Sum256(old)
		out = append(out, hex.EncodeToString(sum[:]))
	}
	return out
}

// Scope returns the prefix of the store ids of one namespace: a digest of
// the purpose and the namespace, of fixed length (so that ids stay
// unambiguous whatever follows) and holding neither in the clear.
func Scope(purpose, namespace string) string {
	sum := sha256.Sum256([]byte(purpose + "\x00" + namespace))
	return hex.EncodeToString(sum[:16]) + ":"
}

// Body limits: the default, and the most a Config may set (a body is
// held in memory while it is checked).
const (
	DefaultMaxBody = 1 << 20
	MaxBodyLimit   = 1 << 30
)

// ReadBody reads r's body whole, up to maxBody bytes: nil when there is
// none, ErrBodyTooLarge when it is larger.
func ReadBody(r *http.Request, maxBody int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok || int64(len(b)) > maxBody {
		return nil, ErrBodyTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("attest: read body: %w", err)
	}
	return b, nil
}

// Problems written by the default error handlers.
var (
	ProbBadAttest  = problem.Problem{Type: problem.TypeBase + "invalid-attestation", Title: "Invalid app attestation", Status: http.StatusUnauthorized, Detail: "The request's app attestation is missing or invalid; attest again."}
	ProbAttestDown = problem.Problem{Type: problem.TypeBase + "attestation-unavailable", Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: "App attestation cannot be checked right now; retry later."}
	ProbTooBig     = problem.Problem{Type: problem.TypeBase + "body-too-large", Title: "Body too large", Status: http.StatusRequestEntityTooLarge, Detail: "The request body is larger than this endpoint accepts."}
)

// Field is a numeric Config field, for [Negative].
type Field struct {
	Name  string // as the user spells it: "appattest.Config.StoreTimeout"
	Value int64  // a time.Duration or a size
	IsDur bool
}

// Dur and Size make Fields.
func Dur(name string, d time.Duration) Field { return Field{Name: name, Value: int64(d), IsDur: true} }

// Size makes a Field of a count or a size.
func Size(name string, n int64) Field { return Field{Name: name, Value: n} }

// Negative returns an error naming the first negative field, or nil: a
// negative timeout or size is a mistake, never a silent default.
func Negative(fields ...Field) error {
	for _, f := range fields {
		if f.Value >= 0 {
			continue
		}
		got := strconv.FormatInt(f.Value, 10)
		if f.IsDur {
			got = time.Duration(f.Value).String()
		}
		return fmt.Errorf("attest: %s must not be negative (got %s); 0 takes the default", f.Name, got)
	}
	return nil
}

// StoreReady asks store whether it is ready when it has a Ready(ctx)
// error method (redisstore's stores do), and wraps a failure in ErrStore
// naming what: "key store". A store without one is ready.
func StoreReady(ctx context.Context, what string, store any) error {
	r, ok := store.(interface{ Ready(context.Context) error })
	if !ok {
		return nil
	}
	if err := r.Ready(ctx); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStore, what, err)
	}
	return nil
}
