package main

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/apiguard/apiguard/attest/androidkey"
	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/signing"
	"github.com/apiguard/apiguard/telemetry"
)

// deviceKeyStore holds the device public keys enrolled through the
// Android and App Attest enrolment endpoints: memoryDeviceKeys alone, or
// redisstore's DeviceKeyStore with -redis, shared by every instance. The
// application adapts it to the attest enrol contract (enrol) and to
// signing's KeyStore (signingKeys): the packages meet only here.
type deviceKeyStore interface {
	Put(ctx context.Context, keyID, alg string, pub crypto.PublicKey) error
	Get(ctx context.Context, keyID string) (redisstore.DeviceKey, bool, error)
	Revoke(ctx context.Context, keyID string) error
}

// androidPrefix starts every Android device key ID. The two enrolment
// endpoints share one key space: Android key IDs are the client's choice,
// App Attest ones (standard base64 of a digest) never hold a '-', so the
// prefix keeps an Android enrolment from taking an iPhone's App Attest
// key ID before its Secure Enclave key is enrolled.
const androidPrefix = "android-"

// ownedKeyID is the store's ID of the device key keyID enrolled by the
// account sub. A device key proves the device of that account and no
// other: stored under the account, a key is found only for requests whose
// access token is the same account's, so a stolen token signed with the
// thief's own enrolled key is an unknown key (401). Key IDs never hold a
// NUL byte (provider.ValidKeyID), so the pair is read back unambiguously.
func ownedKeyID(sub, keyID string) string { return sub + "\x00" + keyID }

// enrol is the Enrol function of the enrolment endpoints, android or not:
// the key is stored under the signed-in account (the endpoints sit behind
// auth); an ID taken (enrolled or revoked before) or outside the
// endpoint's share of the key space is a 409, anything else a store
// outage.
func enrol(ks deviceKeyStore, android bool) func(ctx context.Context, keyID string, pub crypto.PublicKey, _ []string) error {
	return func(ctx context.Context, keyID string, pub crypto.PublicKey, _ []string) error {
		if strings.HasPrefix(keyID, androidPrefix) != android {
			return fmt.Errorf("%w: key IDs of Android keys, and only those, start with %q", androidkey.ErrKeyTaken, androidPrefix)
		}
		claims, ok := auth.ClaimsFrom(ctx)
		if !ok {
			return errors.New("demo: device key enrolment without a signed-in account") // a wiring error: 503
		}
		err := ks.Put(ctx, ownedKeyID(claims.Subject, keyID), redisstore.AlgECDSAP256SHA256, pub)
		if errors.Is(err, redisstore.ErrKeyExists) {
			return fmt.Errorf("%w: %w", androidkey.ErrKeyTaken, err)
		}
		return err
	}
}

// signingKeys reads the enrolled keys back for signing, those of the
// request's account only (signing runs after auth): an unknown ID, or one
// another account enrolled, is signing.ErrUnknownKey, a revoked one is
// refused (the same 401).
func signingKeys(ks deviceKeyStore) signing.KeyStore {
	return signing.KeyStoreFunc(func(ctx context.Context, keyID string) (signing.Key, error) {
		claims, ok := auth.ClaimsFrom(ctx)
		if !ok {
			return signing.Key{}, signing.ErrUnknownKey
		}
		k, found, err := ks.Get(ctx, ownedKeyID(claims.Subject, keyID))
		if err != nil {
			return signing.Key{}, err // 503
		}
		if !found {
			return signing.Key{}, signing.ErrUnknownKey
		}
		return signing.Key{ID: keyID, Algorithm: k.Algorithm, PublicKey: k.PublicKey, Revoked: k.Revoked}, nil
	})
}

// memoryDeviceKeys is the single-instance store, with DeviceKeyStore's
// rules: an ID is never reused, a revoked ID stays revoked. It holds at
// most maxDeviceKeys keys (the demo's bound; a real service uses Redis or
// its database).
type memoryDeviceKeys struct {
	mu   sync.Mutex
	keys map[string]redisstore.DeviceKey
}

const maxDeviceKeys = 100_000

func newMemoryDeviceKeys() *memoryDeviceKeys {
	return &memoryDeviceKeys{keys: map[string]redisstore.DeviceKey{}}
}

func (m *memoryDeviceKeys) Put(_ context.Context, keyID, alg string, pub crypto.PublicKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[keyID]; ok {
		return redisstore.ErrKeyExists
	}
	if len(m.keys) >= maxDeviceKeys {
		return errors.New("demo: device key store full")
	}
	m.keys[keyID] = redisstore.DeviceKey{Algorithm: alg, PublicKey: pub}
	return nil
}

func (m *memoryDeviceKeys) Get(_ context.Context, keyID string) (redisstore.DeviceKey, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[keyID]
	return k, ok, nil
}

func (m *memoryDeviceKeys) Revoke(_ context.Context, keyID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[keyID] = redisstore.DeviceKey{Revoked: true}
	return nil
}

// headerEnrolChallenge carries the enrolment challenge back to the
// Android enrolment endpoint (its JSON body takes no other fields).
const headerEnrolChallenge = "X-Enrol-Challenge"

// enrolChallenges issues the challenges Android keys are attested with:
// stateless, so that any instance sharing the secret accepts them. A
// challenge is 8 bytes of expiry, 16 random bytes and a MAC over both and
// the account it was issued to; androidkey checks the attested one equals
// it and uses it up (single use, in Redis with -redis).
type enrolChallenges struct {
	key []byte
	ttl time.Duration
}

func (c enrolChallenges) mac(exp, random []byte, sub string) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(exp)
	m.Write(random)
	m.Write([]byte(sub))
	return m.Sum(nil)[:16]
}

// issue answers {"challenge": "…"} (base64url) to a signed-in account.
func (c enrolChallenges) issue() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := auth.ClaimsFrom(r.Context())
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b := make([]byte, 8+16, 8+16+16)
		binary.BigEndian.PutUint64(b, uint64(time.Now().Add(c.ttl).Unix())) // #nosec G115 -- a time after 1970
		if _, err := rand.Read(b[8:]); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b = append(b, c.mac(b[:8], b[8:24], claims.Subject)...)
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, map[string]string{"challenge": base64.RawURLEncoding.EncodeToString(b)})
	})
}

// challenge is androidkey's Enrolment.Challenge: the header's challenge
// when this service issued it to the signed-in account and it has not
// expired; an error (401) otherwise.
func (c enrolChallenges) challenge(r *http.Request) ([]byte, error) {
	claims, ok := auth.ClaimsFrom(r.Context())
	b, err := base64.RawURLEncoding.DecodeString(r.Header.Get(headerEnrolChallenge))
	switch {
	case !ok || err != nil || len(b) != 40:
		return nil, errors.New("demo: no enrolment challenge")
	case !hmac.Equal(b[24:], c.mac(b[:8], b[8:24], claims.Subject)):
		return nil, errors.New("demo: enrolment challenge not issued here")
	case time.Now().Unix() > int64(binary.BigEndian.Uint64(b)): // #nosec G115 -- issued above, below 2^63
		return nil, errors.New("demo: enrolment challenge expired")
	}
	return b, nil
}

// whyLog remembers, per correlation ID, the reason of the last security
// event logged in that request, so that a row of the table can show why
// its request was refused even where the answer does not say (on
// purpose: an attestation refusal and a revoked key are one 401 to the
// client). It holds at most maxWhy IDs, and starts over when full.
type whyLog struct {
	next slog.Handler
	mu   *sync.Mutex
	why  map[string]string
}

const maxWhy = 4096

func newWhyLog(next slog.Handler) *whyLog {
	return &whyLog{next: next, mu: &sync.Mutex{}, why: map[string]string{}}
}

// Enabled admits security events (Info and above) whatever the level of
// the log under it, as telemetry counts them.
func (h *whyLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *whyLog) Handle(ctx context.Context, rec slog.Record) error {
	if id, ok := telemetry.IDFrom(ctx); ok {
		var event, reason string
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case telemetry.KeyEvent:
				event = a.Value.String()
			case telemetry.KeyReason:
				reason = a.Value.String()
			}
			return true
		})
		if event != "" && reason != "" {
			h.mu.Lock()
			if len(h.why) >= maxWhy {
				clear(h.why)
			}
			h.why[id] = reason
			h.mu.Unlock()
		}
	}
	if !h.next.Enabled(ctx, rec.Level) {
		return nil
	}
	return h.next.Handle(ctx, rec)
}

func (h *whyLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &whyLog{next: h.next.WithAttrs(as), mu: h.mu, why: h.why}
}

func (h *whyLog) WithGroup(name string) slog.Handler {
	return &whyLog{next: h.next.WithGroup(name), mu: h.mu, why: h.why}
}

// reason returns the reason logged for the request with correlation ID id.
func (h *whyLog) reason(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.why[id]
}
