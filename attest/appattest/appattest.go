package appattest

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/apiguard/apiguard/attest/internal/provider"
	"github.com/apiguard/apiguard/internal/events"
	"github.com/fxamacker/cbor/v2"
)

// Environment is an App Attest environment.
type Environment string

// Environments. TestFlight builds report production.
const (
	Development Environment = "development"
	Production  Environment = "production"
)

// aaguids of the environments (authenticator data bytes 37..53).
var aaguids = map[Environment][16]byte{
	Development: [16]byte([]byte("appattestdevelop")),
	Production:  [16]byte(append([]byte("appattest"), make([]byte, 7)...)),
}

// OIDs of Apple's App Attest leaf certificate extensions.
var (
	oidNonce     = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 8, 2}
	oidOSVersion = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 8, 7}
)

// appleAppAttestationRoot is the Apple App Attestation Root CA (SHA-256
// 1C:B9:82:3B:A2:8B:A6:AD:2D:33:A0:06:94:1D:E2:AE:4F:51:3E:F1:D4:E8:31:B9:F7:E0:FA:7B:62:42:C9:32).
//
//go:embed apple_app_attestation_root_ca.pem
var appleAppAttestationRoot []byte

// appleAppAttestationRoots returns a pool holding appleAppAttestationRoot.
func appleAppAttestationRoots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(appleAppAttestationRoot)
	return p
}

// App Attest errors. Every error of VerifyAttestation and VerifyAssertion
// matches one of these with errors.Is.
var (
	// ErrMalformed: the attestation or assertion is not the CBOR object
	// Apple defines, or a field has the wrong shape or size.
	ErrMalformed = errors.New("attest: malformed attestation object")
	// ErrFormat: fmt is not "apple-appattest".
	ErrFormat = errors.New("attest: attestation format not apple-appattest")
	// ErrCertificate: the x5c chain does not verify to a pinned root at
	// the current time (expired, wrong root, wrong key type).
	ErrCertificate = errors.New("attest: certificate chain not trusted")
	// ErrNonce: the leaf's nonce extension is not SHA-256(authData ‖
	// clientDataHash): the attestation was made for another challenge.
	ErrNonce = errors.New("attest: nonce mismatch")
	// ErrKeyID: the key ID is not SHA-256 of the attested public key, or
	// not the credential ID of the authenticator data.
	ErrKeyID = errors.New("attest: key ID mismatch")
	// ErrAppID: rpIdHash is not SHA-256 of an allowed App ID.
	ErrAppID = errors.New("attest: app ID not allowed")
	// ErrEnvironment: the AAGUID is not an allowed environment.
	ErrEnvironment = errors.New("attest: environment not allowed")
	// ErrCounter: the counter is not 0 in an attestation, or not greater
	// than the stored counter in an assertion (a replay).
	ErrCounter = errors.New("attest: counter not valid")
	// ErrSignature: the assertion signature does not verify.
	ErrSignature = errors.New("attest: assertion signature mismatch")
	// ErrUnknownKey: no attested key with this key ID (keys are never
	// enrolled implicitly).
	ErrUnknownKey = errors.New("attest: unknown key")
	// ErrKeyExists: the key ID was attested before.
	ErrKeyExists = errors.New("attest: key already attested")
	// ErrStore: a store did not answer (or did not within
	// Config.StoreTimeout).
	ErrStore = provider.ErrStore
)

// Config configures a [Verifier]. A zero field takes the default in its
// comment; a negative duration or size is an error naming the field.
type Config struct {
	// AppIDs are the allowed App IDs, "TEAMID.bundle.id". Required.
	AppIDs []string
	// Environments are the allowed environments. Default: Production only
	// (TestFlight reports production; add Development for debug builds).
	Environments []Environment
	// Roots are the trusted roots. Default: the Apple App Attestation Root
	// CA, embedded in this package (SHA-256 1C:B9:82:3B:…:62:42:C9:32).
	Roots *x509.CertPool
	// Keys stores attested keys and their counters, each under the App ID
	// it was attested for (the id given to the store is a digest of the
	// App ID followed by the key ID), so that two apps on one store never
	// share keys. Default: an in-memory store of MaxKeys keys.
	Keys KeyStore
	// MaxKeys bounds the default Keys. Default: 100000.
	MaxKeys int
	// Challenges issues and consumes challenges, under Namespace.
	// Default: an in-memory store of 100000 challenges.
	Challenges ChallengeStore
	// Namespace names this verifier's challenges in a shared Challenges
	// store (the id given to the store is a digest of it followed by the
	// challenge), so that a challenge issued for one service is never
	// taken by another on the same Redis. Every instance of one service
	// must use the same. Default: the AppIDs, sorted; set it explicitly
	// when instances may list different AppIDs for a while (an App ID
	// being added), or challenges issued by one will fail on the other.
	Namespace string
	// ChallengeTTL is how long a challenge can be used. Default: 5 minutes.
	ChallengeTTL time.Duration
	// MaxObjectSize caps an attestation or assertion. Default: 64 KiB.
	MaxObjectSize int
	// StoreTimeout bounds, together, the store calls of one request to
	// [Verifier.Handler] or [Verifier.ChallengeHandler], and of one
	// call of the methods (key lookup, counter, challenge): one deadline
	// shared through the context, so that a slow store costs a request at
	// most StoreTimeout, not one timeout per call (a deadline ctx already
	// has, if sooner, wins). Default: 250ms.
	StoreTimeout time.Duration
	// InsecureAllowLegacyClientData also accepts, in [Verifier.Handler]
	// and in the risk assessment, assertions over the client data of the
	// first HTTP profile (method, path, body digest and challenge, one per
	// line), which does not cover the query: a proxy can rewrite the query
	// of such a request undetected. Turn it on only while app versions
	// built before [ClientData] covered the query are phased out; each
	// request it admits is logged (event attestation_legacy_binding) and
	// marked in [Assertion.LegacyClientData]. Default: false.
	InsecureAllowLegacyClientData bool
	// MaxBodyBytes caps the body [Verifier.Handler] reads whole to check
	// what the assertion binds; a larger one is [ErrBodyTooLarge] (413).
	// At most 1 GiB. Default: 1 MiB.
	MaxBodyBytes int64
	// Shadow makes [Verifier.Handler] decide every request exactly as in
	// enforce mode, with the same side effects (challenges consumed,
	// counters advanced), log each refusal as attestation_failed with its
	// reason and shadow=true, which telemetry counts with the attribute
	// shadow="true" (the would-deny count), and then call the next
	// handler instead of refusing: without an [Assertion] in the context,
	// with the whole body. Store outages (503 in enforce mode) pass too: a
	// control on trial must not make the API less available than it was
	// without it. ChallengeHandler and EnrolHandler are not affected.
	// Default: false.
	Shadow bool
	// ErrorHandler writes the rejections of [Verifier.Handler] and
	// [Verifier.ChallengeHandler]. Default: [Verifier.WriteError].
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Now is the clock, also for certificate validity. Default: time.Now.
	Now func() time.Time
	// Logger receives events (attestation_failed). Default: slog.Default().
	Logger *slog.Logger
}

// Verifier verifies Apple App Attest attestations and assertions. It is
// safe for concurrent use by multiple goroutines. Create one with [New].
type Verifier struct {
	cfg      Config
	appIDs   map[[32]byte]string
	envs     map[[16]byte]Environment
	dec      cbor.DecMode
	challeng *challenges
	// keyScopes are the KeyStore id prefixes of the AppIDs (keyStoreID).
	keyScopes map[string]string
}

// New validates cfg, fills in its defaults and returns a verifier.
func New(cfg Config) (*Verifier, error) {
	if len(cfg.AppIDs) == 0 {
		return nil, errors.New("attest: appattest.Config.AppIDs is required")
	}
	if err := provider.Negative(
		provider.Dur("appattest.Config.ChallengeTTL", cfg.ChallengeTTL),
		provider.Dur("appattest.Config.StoreTimeout", cfg.StoreTimeout),
		provider.Size("appattest.Config.MaxKeys", int64(cfg.MaxKeys)),
		provider.Size("appattest.Config.MaxObjectSize", int64(cfg.MaxObjectSize)),
	); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxBodyBytes > provider.MaxBodyLimit {
		return nil, errors.New("attest: appattest.Config.MaxBodyBytes must be between 0 and 1 GiB: a body is held in memory while it is checked")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = provider.DefaultMaxBody
	}
	if len(cfg.Environments) == 0 {
		cfg.Environments = []Environment{Production}
	}
	if cfg.Roots == nil {
		cfg.Roots = appleAppAttestationRoots()
	}
	if cfg.ChallengeTTL == 0 {
		cfg.ChallengeTTL = 5 * time.Minute
	}
	if cfg.MaxObjectSize == 0 {
		cfg.MaxObjectSize = 64 << 10
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Keys == nil {
		cfg.Keys = newMemoryKeyStore(cfg.MaxKeys)
	}
	if cfg.Challenges == nil {
		cfg.Challenges = newMemoryChallengeStore(100_000, cfg.Now)
	}
	a := &Verifier{cfg: cfg, appIDs: map[[32]byte]string{}, envs: map[[16]byte]Environment{}, keyScopes: map[string]string{}}
	for _, id := range cfg.AppIDs {
		if id == "" {
			return nil, errors.New("attest: appattest.Config.AppIDs holds an empty App ID")
		}
		a.appIDs[sha256.Sum256([]byte(id))] = id
		a.keyScopes[id] = keyStoreID(id, "")
	}
	for _, e := range cfg.Environments {
		g, ok := aaguids[e]
		if !ok {
			return nil, fmt.Errorf("attest: unknown environment %q", e)
		}
		a.envs[g] = e
	}
	dec, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   8,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		return nil, fmt.Errorf("attest: cbor: %w", err)
	}
	a.dec = dec
	if cfg.Namespace == "" {
		ids := slices.Clone(cfg.AppIDs)
		slices.Sort(ids)
		cfg.Namespace = strings.Join(ids, "\x00")
		a.cfg.Namespace = cfg.Namespace
	}
	a.challeng = &challenges{store: cfg.Challenges, ttl: cfg.ChallengeTTL, now: cfg.Now, scope: provider.Scope("app-attest-challenge", cfg.Namespace)}
	if a.cfg.ErrorHandler == nil {
		a.cfg.ErrorHandler = a.WriteError
	}
	events.WarnUnobserved(a.cfg.Logger, "attest/appattest")
	return a, nil
}

// AttestedKey is a key that passed attestation.
type AttestedKey struct {
	// KeyID is the key ID, standard base64, as the app knows it.
	KeyID string `json:"key_id"`
	// PublicKey is the attested P-256 key, an uncompressed X9.62 point.
	PublicKey []byte `json:"public_key"`
	// AppID is the App ID it was attested for.
	AppID string `json:"app_id"`
	// Environment is development or production.
	Environment Environment `json:"environment"`
	// OSVersion is the OS version the leaf certificate states ("14.4"),
	// a risk signal; empty when absent.
	OSVersion string `json:"os_version,omitempty"`
	// Receipt is Apple's receipt (CMS), for fraud-metric requests.
	Receipt []byte `json:"receipt,omitempty"`
	// AttestedAt is when the attestation was verified.
	AttestedAt time.Time `json:"attested_at"`
}

type attestationObject struct {
	Fmt     string `cbor:"fmt"`
	AttStmt struct {
		X5c     [][]byte `cbor:"x5c"`
		Receipt []byte   `cbor:"receipt"`
	} `cbor:"attStmt"`
	AuthData []byte `cbor:"authData"`
}

// authData is parsed authenticator data (WebAuthn §6.1).
type authData struct {
	rpIDHash [32]byte
	flags    byte
	counter  uint32
	aaguid   [16]byte
	credID   []byte
	coseKey  []byte // the credential public key, CBOR
}

const flagAttested = 0x40

// parseAuthData reads authenticator data by fixed offsets. Extensions
// after the credential data are tolerated: iOS and macOS 27 append
// apple_bundle_version_01 and apple_validation_category_01 without
// setting the extensions flag.
func parseAuthData(b []byte, dec cbor.DecMode, wantCred bool) (*authData, error) {
	if len(b) < 37 {
		return nil, fmt.Errorf("%w: authenticator data of %d bytes", ErrMalformed, len(b))
	}
	ad := &authData{flags: b[32], counter: binary.BigEndian.Uint32(b[33:37])}
	copy(ad.rpIDHash[:], b[:32])
	if !wantCred {
		return ad, nil
	}
	if ad.flags&flagAttested == 0 || len(b) < 55 {
		return nil, fmt.Errorf("%w: no attested credential data", ErrMalformed)
	}
	copy(ad.aaguid[:], b[37:53])
	n := int(binary.BigEndian.Uint16(b[53:55]))
	if n != 32 || len(b) < 55+n {
		return nil, fmt.Errorf("%w: credential ID of %d bytes", ErrMalformed, n)
	}
	ad.credID = b[55 : 55+n]
	// The COSE key is one CBOR item; whatever follows is extensions.
	var raw cbor.RawMessage
	rest, err := dec.UnmarshalFirst(b[55+n:], &raw)
	if err != nil {
		return nil, fmt.Errorf("%w: credential public key: %v", ErrMalformed, err)
	}
	_ = rest
	ad.coseKey = raw
	return ad, nil
}

// coseP256 is a COSE_Key for ES256 (RFC 9053): kty 2, alg -7, crv 1.
type coseP256 struct {
	Kty int    `cbor:"1,keyasint"`
	Alg int    `cbor:"3,keyasint"`
	Crv int    `cbor:"-1,keyasint"`
	X   []byte `cbor:"-2,keyasint"`
	Y   []byte `cbor:"-3,keyasint"`
}

// VerifyAttestation verifies an attestation object for keyID (standard
// base64, as DCAppAttestService returns it) and the clientDataHash the app
// passed to attestKey (any length: use [ClientDataHash] to hash a
// challenge), enrols the key with counter 0 and returns it; errors match
// the package's sentinels.
//
// It decodes the attestation with strict CBOR (size caps, no duplicate or
// unknown keys), checks fmt apple-appattest, verifies the x5c chain to
// the pinned root at the injected time with an explicit usage policy
// (leaves issued since January 2026 carry an Apple-specific extended key
// usage that x509's default refuses), checks the nonce extension against
// SHA-256(authData ‖ clientDataHash), the key ID against SHA-256 of the
// public key and the credential ID, the rpIdHash against the App IDs, a
// counter of 0 and the AAGUID against the allowed environments, and keeps
// the OS version as a signal. Authenticator data is read by fixed
// offsets; trailing extensions (iOS and macOS 27) are tolerated.
func (a *Verifier) VerifyAttestation(ctx context.Context, keyID string, attestation, clientDataHash []byte) (*AttestedKey, error) {
	ctx, cancel := a.storeContext(ctx)
	defer cancel()
	k, err := a.verifyAttestation(keyID, attestation, clientDataHash)
	if err != nil {
		a.fail(ctx, "attestation", err)
		return nil, err
	}
	rec, _ := json.Marshal(k)
	ok, err := a.cfg.Keys.Enroll(ctx, a.keyScopes[k.AppID]+keyID, rec)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	case !ok:
		a.fail(ctx, "attestation", ErrKeyExists)
		return nil, ErrKeyExists
	}
	return k, nil
}

func (a *Verifier) verifyAttestation(keyID string, attestation, clientDataHash []byte) (*AttestedKey, error) {
	kid, err := decodeKeyID(keyID)
	if err != nil {
		return nil, err
	}
	if len(attestation) > a.cfg.MaxObjectSize {
		return nil, fmt.Errorf("%w: attestation of %d bytes", ErrMalformed, len(attestation))
	}
	var obj attestationObject
	if err := a.dec.Unmarshal(attestation, &obj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if obj.Fmt != "apple-appattest" {
		return nil, ErrFormat
	}
	if len(obj.AttStmt.X5c) < 2 || len(obj.AttStmt.X5c) > 4 {
		return nil, fmt.Errorf("%w: x5c holds %d certificates", ErrMalformed, len(obj.AttStmt.X5c))
	}
	certs := make([]*x509.Certificate, len(obj.AttStmt.X5c))
	for i, der := range obj.AttStmt.X5c {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: x5c[%d]: %v", ErrCertificate, i, err)
		}
		// Apple's chain is ECDSA throughout (P-256 leaf, P-384 CA): any
		// other key is refused before chain building, so that a crafted
		// chain cannot buy costly signature checks (a large RSA key).
		if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
			return nil, fmt.Errorf("%w: x5c[%d] key is not ECDSA", ErrCertificate, i)
		}
		certs[i] = c
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	// Apple's leaves issued since January 2026 carry an Apple-specific
	// extended key usage that x509.Verify refuses by default; the trust
	// decision here is the pinned root, so any usage is accepted.
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: a.cfg.Roots, Intermediates: inter, CurrentTime: a.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: leaf key is not P-256", ErrCertificate)
	}
	ad, err := parseAuthData(obj.AuthData, a.dec, true)
	if err != nil {
		return nil, err
	}
	// nonce = SHA-256(authData ‖ clientDataHash) is the leaf's extension.
	h := sha256.New()
	h.Write(obj.AuthData)
	h.Write(clientDataHash)
	nonce := h.Sum(nil)
	ext, err := extension(leaf, oidNonce)
	if err != nil {
		return nil, err
	}
	var n struct {
		Nonce []byte `asn1:"tag:1,explicit"`
	}
	if rest, err := asn1.Unmarshal(ext, &n); err != nil || len(rest) > 0 || !bytes.Equal(n.Nonce, nonce) {
		return nil, ErrNonce
	}
	ecPub, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	point := ecPub.Bytes() // 0x04 ‖ X ‖ Y
	sum := sha256.Sum256(point)
	if !bytes.Equal(sum[:], kid) || !bytes.Equal(ad.credID, kid) {
		return nil, ErrKeyID
	}
	var cose coseP256
	if err := cbor.Unmarshal(ad.coseKey, &cose); err != nil || cose.Kty != 2 || cose.Alg != -7 || cose.Crv != 1 ||
		!bytes.Equal(append(append([]byte{4}, cose.X...), cose.Y...), point) {
		return nil, fmt.Errorf("%w: credential public key is not the certified key", ErrKeyID)
	}
	appID, ok := a.appIDs[ad.rpIDHash]
	if !ok {
		return nil, ErrAppID
	}
	if ad.counter != 0 {
		return nil, ErrCounter
	}
	env, ok := a.envs[ad.aaguid]
	if !ok {
		return nil, ErrEnvironment
	}
	return &AttestedKey{
		KeyID: keyID, PublicKey: point, AppID: appID, Environment: env,
		OSVersion: osVersion(leaf), Receipt: obj.AttStmt.Receipt, AttestedAt: a.cfg.Now(),
	}, nil
}

// decodeKeyID decodes a key ID: standard base64 as DCAppAttestService
// returns it, with or without padding (and base64url, which some client
// libraries send).
func decodeKeyID(keyID string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if kid, err := enc.DecodeString(keyID); err == nil && len(kid) == 32 {
			return kid, nil
		}
	}
	return nil, fmt.Errorf("%w: key ID is not 32 bytes of base64", ErrKeyID)
}

func extension(c *x509.Certificate, oid asn1.ObjectIdentifier) ([]byte, error) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Value, nil
		}
	}
	return nil, fmt.Errorf("%w: leaf lacks extension %s", ErrNonce, oid)
}

// osVersion reads extension 1.2.840.113635.100.8.7: SEQUENCE { [1400]
// OCTET STRING "14.4" }. It returns "" when absent or malformed: it is a
// signal, not a check.
func osVersion(c *x509.Certificate) string {
	ext, err := extension(c, oidOSVersion)
	if err != nil {
		return ""
	}
	var v struct {
		Version []byte `asn1:"tag:1400,explicit"`
	}
	if rest, err := asn1.Unmarshal(ext, &v); err != nil || len(rest) > 0 || len(v.Version) > 32 {
		return ""
	}
	return string(v.Version)
}

// Assertion is a verified assertion.
type Assertion struct {
	KeyID   string
	AppID   string
	Counter uint32
	// Previous is the counter stored before this assertion: a large jump
	// is a risk signal (the key used elsewhere, or a cloned device).
	Previous uint32
	Key      *AttestedKey
	// LegacyClientData is true when the assertion signed the first HTTP
	// profile's client data, which does not cover the query (accepted
	// only under Config.InsecureAllowLegacyClientData).
	LegacyClientData bool
}

type assertionObject struct {
	Signature         []byte `cbor:"signature"`
	AuthenticatorData []byte `cbor:"authenticatorData"`
}

// VerifyAssertion verifies an assertion by the attested key keyID over
// clientData (the exact bytes the app passed to generateAssertion,
// hashed with SHA-256 by the app): the signature over
// SHA-256(authenticatorData ‖ SHA-256(clientData)), the rpIdHash, and a
// counter greater than the stored one, stored with a compare-and-swap.
// An unknown key ID is refused with [ErrUnknownKey].
func (a *Verifier) VerifyAssertion(ctx context.Context, keyID string, assertion, clientData []byte) (*Assertion, error) {
	ctx, cancel := a.storeContext(ctx)
	defer cancel()
	as, err := a.verifyAssertion(ctx, keyID, assertion, clientData, nil)
	if err != nil {
		a.fail(ctx, "assertion", err)
		return nil, err
	}
	return as, nil
}

// verifyAssertion verifies an assertion over clientData or, when legacy
// is not nil and clientData does not verify, over legacy.
func (a *Verifier) verifyAssertion(ctx context.Context, keyID string, assertion, clientData, legacy []byte) (*Assertion, error) {
	if len(assertion) > a.cfg.MaxObjectSize {
		return nil, fmt.Errorf("%w: assertion of %d bytes", ErrMalformed, len(assertion))
	}
	var obj assertionObject
	if err := a.dec.Unmarshal(assertion, &obj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	ad, err := parseAuthData(obj.AuthenticatorData, a.dec, false)
	if err != nil {
		return nil, err
	}
	// Keys are stored under their App ID: the assertion's rpIdHash names
	// it, and one not among AppIDs is refused before any store call.
	appID, ok := a.appIDs[ad.rpIDHash]
	if !ok {
		return nil, ErrAppID
	}
	storeID := a.keyScopes[appID] + keyID
	rec, counter, found, err := a.cfg.Keys.Lookup(ctx, storeID)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	case !found:
		return nil, ErrUnknownKey
	}
	var key AttestedKey
	if err := json.Unmarshal(rec, &key); err != nil {
		return nil, fmt.Errorf("%w: stored key: %v", ErrStore, err)
	}
	pub, err := ecdh.P256().NewPublicKey(key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: stored key: %v", ErrStore, err)
	}
	ecPub, err := ecdsaFromECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: stored key: %v", ErrStore, err)
	}
	signed := func(cd []byte) bool {
		cdh := sha256.Sum256(cd)
		h := sha256.New()
		h.Write(obj.AuthenticatorData)
		h.Write(cdh[:])
		digest := sha256.Sum256(h.Sum(nil))
		return ecdsa.VerifyASN1(ecPub, digest[:], obj.Signature)
	}
	usedLegacy := false
	if !signed(clientData) {
		if legacy == nil || !signed(legacy) {
			return nil, ErrSignature
		}
		usedLegacy = true
	}
	if sum := sha256.Sum256([]byte(key.AppID)); ad.rpIDHash != sum || !slices.Contains(a.cfg.AppIDs, key.AppID) {
		return nil, ErrAppID
	}
	if ad.counter <= counter {
		return nil, fmt.Errorf("%w: %d after %d", ErrCounter, ad.counter, counter)
	}
	ok, err = a.cfg.Keys.AdvanceCounter(ctx, storeID, counter, ad.counter)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	case !ok:
		return nil, fmt.Errorf("%w: counter changed concurrently", ErrCounter)
	}
	return &Assertion{KeyID: keyID, AppID: key.AppID, Counter: ad.counter, Previous: counter, Key: &key, LegacyClientData: usedLegacy}, nil
}

// keyStoreID is the id of an attested key in the KeyStore: the key ID
// under its App ID, so that the keys of two apps on one store never meet.
func keyStoreID(appID, keyID string) string { return provider.Scope("app-attest-key", appID) + keyID }

// storeContext is ctx bounded by StoreTimeout: the one deadline of a
// request's (or a method call's) store calls. Nested, it keeps the outer
// deadline, which is sooner.
func (a *Verifier) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= a.cfg.StoreTimeout {
		return ctx, func() {} // the request's deadline, already sooner
	}
	return context.WithTimeout(ctx, a.cfg.StoreTimeout)
}

// ecdsaFromECDH converts a P-256 ECDH public key to an ECDSA one.
func ecdsaFromECDH(pub *ecdh.PublicKey) (*ecdsa.PublicKey, error) {
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub.Bytes())
}

func (a *Verifier) fail(ctx context.Context, what string, err error) {
	attrs := []slog.Attr{slog.String("event", "attestation_failed"), slog.String("reason", appAttestReason(err)),
		slog.String("provider", "app_attest")}
	if ctx.Value(shadowKey{}) != nil {
		attrs = append(attrs, slog.Bool("shadow", true))
	}
	events.Log(ctx, a.cfg.Logger, slog.LevelWarn, "attest: "+what+" refused", attrs...)
}

func appAttestReason(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrMalformed, "malformed"}, {ErrFormat, "format"}, {ErrCertificate, "certificate"},
		{ErrNonce, "nonce"}, {ErrKeyID, "key_id"}, {ErrAppID, "app_id"}, {ErrEnvironment, "environment"},
		{ErrCounter, "counter"}, {ErrSignature, "signature"}, {ErrUnknownKey, "unknown_key"},
		{ErrKeyExists, "key_exists"}, {ErrDeviceKey, "device_key"}, {ErrStore, "store"},
		{ErrBodyTooLarge, "body_too_large"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "other"
}
