// Command devicekeys walks through hardware-backed device keys end to
// end: an Android app enrols a key it made in Keystore with the key's
// Key Attestation chain; the attested public key goes to a device key
// store (redisstore's with -redis, in memory otherwise) that signing
// reads; a payment signed with the key (RFC 9421, ecdsa-p256-sha256) is
// accepted at another instance; the phone is reported lost and its key
// revoked in one call; and a payment signed with it is then refused by
// every instance.
//
// No phone is at hand, so the chain comes from a test root of
// attest/attesttest; a real service leaves androidkey.Config.Roots unset
// (Google's roots are embedded) and lets it fetch the revocation status
// list.
//
//	go run ./examples/devicekeys
//	go run ./examples/devicekeys -redis localhost:6379
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/apiguard/apiguard/attest/androidkey"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/redisstore"
	"github.com/apiguard/apiguard/signing"
	"github.com/redis/go-redis/v9"
)

const pkg = "com.example.shop"

// maxKeys bounds the in-memory key store.
const maxKeys = 100_000

// signer is the SHA-256 of the app's signing certificate.
var signer = sha256.Sum256([]byte("the app's signing certificate (DER)"))

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devicekeys:", err)
		os.Exit(1)
	}
}

// keyStore is what the service needs of its device key store:
// redisstore.DeviceKeyStore, or memoryKeys in a single process.
type keyStore interface {
	Put(ctx context.Context, keyID, alg string, pub crypto.PublicKey) error
	Get(ctx context.Context, keyID string) (redisstore.DeviceKey, bool, error)
	Revoke(ctx context.Context, keyID string) error
}

// stores are the stores and secrets every instance shares.
type stores struct {
	challenges challenges
	keys       keyStore
	nonces     androidkey.NonceStore // used enrolment challenges
	replay     signing.ReplayStore   // used signature nonces
	name       string
}

func newStores(redisAddr string) (*stores, func(), error) {
	// The challenge key: a real service loads it from its secret store,
	// the same on every instance.
	ch := challenges{key: make([]byte, 32), ttl: 5 * time.Minute}
	if _, err := rand.Read(ch.key); err != nil {
		return nil, nil, err
	}
	if redisAddr == "" {
		// One process: the instances share in-memory stores. What is
		// single use must be shared wherever the keys are, or an
		// enrolment or a signed payment replayed at the other instance
		// is accepted there.
		return &stores{
			challenges: ch, keys: &memoryKeys{keys: map[string]redisstore.DeviceKey{}},
			nonces: auth.NewMemoryReplayStore(0, nil), replay: signing.NewMemoryReplayStore(0, 5*time.Minute, nil), // signing.Config.Window
			name: "in memory",
		}, func() {}, nil
	}
	// The client settings redisstore's documentation asks for.
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{redisAddr}, ContextTimeoutEnabled: true, MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, nil, fmt.Errorf("redis %s: %w", redisAddr, err)
	}
	opts := redisstore.Options{Prefix: "apiguard-devicekeys:", Timeout: 250 * time.Millisecond}
	replay := redisstore.NewReplayStore(rdb, opts)
	return &stores{
		challenges: ch,
		keys:       redisstore.NewDeviceKeyStore(rdb, opts),
		nonces:     replay.WithNamespace("enrol"), replay: replay.WithNamespace("pay"),
		name: "Redis " + redisAddr,
	}, func() { _ = rdb.Close() }, nil
}

// challenges issues the enrolment challenges that keys are attested
// with, stateless so that every instance accepts them: 8 bytes of expiry,
// 16 random bytes and a MAC over both. androidkey checks that the
// attested challenge equals the one sent back and uses it up (single use,
// in Redis with -redis). A service with accounts binds it to the
// signed-in account too, and stores the key under that account, looking
// it up only for requests of the same account (examples/demo's
// ownedKeyID): otherwise a stolen access token is signed with the
// thief's own enrolled key.
type challenges struct {
	key []byte
	ttl time.Duration
}

func (c challenges) mac(b []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// issue answers {"challenge": "<base64url>"}.
func (c challenges) issue() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 24, 40)
		binary.BigEndian.PutUint64(b, uint64(time.Now().Add(c.ttl).Unix())) // #nosec G115 -- a time after 1970
		if _, err := rand.Read(b[8:]); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]string{"challenge": base64.RawURLEncoding.EncodeToString(append(b, c.mac(b)...))})
	})
}

// check is androidkey's Enrolment.Challenge: the X-Challenge header's
// challenge if this service issued it and it has not expired.
func (c challenges) check(r *http.Request) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(r.Header.Get("X-Challenge"))
	switch {
	case err != nil || len(b) != 40 || !hmac.Equal(b[24:], c.mac(b[:24])):
		return nil, errors.New("devicekeys: challenge not issued here")
	case time.Now().Unix() > int64(binary.BigEndian.Uint64(b)): // #nosec G115 -- issued above, below 2^63
		return nil, errors.New("devicekeys: challenge expired")
	}
	return b, nil
}

// newInstance is one instance of the service: the enrolment endpoint
// and a payment endpoint that only device keys can sign for.
func newInstance(st *stores, roots *attesttest.AndroidCA, logger *slog.Logger) (http.Handler, func(), error) {
	ak, err := androidkey.New(androidkey.Config{
		Packages: []string{pkg}, SignatureDigests: [][]byte{signer[:]},
		Roots:      roots.Roots(),            // default: Google's roots
		StatusList: []byte(`{"entries":{}}`), // default: fetched from Google
		Nonces:     st.nonces, Logger: logger,
	})
	if err != nil {
		return nil, nil, err
	}
	enrol, err := ak.EnrolHandler(androidkey.Enrolment{
		Challenge: st.challenges.check,
		Enrol: func(ctx context.Context, keyID string, pub crypto.PublicKey, _ []string) error {
			err := st.keys.Put(ctx, keyID, redisstore.AlgECDSAP256SHA256, pub)
			if errors.Is(err, redisstore.ErrKeyExists) {
				return fmt.Errorf("%w: %w", androidkey.ErrKeyTaken, err) // 409
			}
			return err // 503
		},
	})
	if err != nil {
		_ = ak.Close()
		return nil, nil, err
	}
	// The packages meet only here: signing reads the keys enrolment stored.
	keys := signing.KeyStoreFunc(func(ctx context.Context, keyID string) (signing.Key, error) {
		k, found, err := st.keys.Get(ctx, keyID)
		if err != nil {
			return signing.Key{}, err // 503
		}
		if !found {
			return signing.Key{}, signing.ErrUnknownKey
		}
		return signing.Key{ID: keyID, Algorithm: k.Algorithm, PublicKey: k.PublicKey, Revoked: k.Revoked}, nil
	})
	v, err := signing.New(signing.Config{Keys: keys, ReplayStore: st.replay, Scheme: "http", Logger: logger})
	if err != nil {
		_ = ak.Close()
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /device-keys/challenge", st.challenges.issue())
	mux.Handle("POST /device-keys/android", enrol)
	mux.Handle("POST /pay", v.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		device, _ := signing.KeyIDFrom(r.Context())
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "paid %s by %s\n", body, device)
	})))
	return mux, func() { _ = ak.Close() }, nil
}

// run starts two instances on loopback and walks a phone through them.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devicekeys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisAddr := fs.String("redis", "", "Redis address (host:port) of the device key store; default: in memory")
	verbose := fs.Bool("v", false, "print the instances' security log to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	logger := slog.New(slog.NewJSONHandler(logOut, nil))
	st, closeStores, err := newStores(*redisAddr)
	if err != nil {
		return err
	}
	defer closeStores()
	ca, err := attesttest.NewAndroidCA(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		return err
	}
	var base [2]string
	for i := range base {
		h, closeInstance, err := newInstance(st, ca, logger)
		if err != nil {
			return err
		}
		defer closeInstance()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		base[i] = "http://" + ln.Addr().String()
	}
	a, b := base[0], base[1]

	// The phone: a P-256 signing key made in Keystore with the server's
	// challenge, and its attestation chain (here from the test root).
	challenge, err := getChallenge(ctx, a+"/device-keys/challenge")
	if err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(challenge)
	if err != nil {
		return err
	}
	chain, key, err := ca.Attest(attesttest.AndroidKey{Challenge: raw, Packages: []string{pkg}, SignatureDigests: [][]byte{signer[:]}})
	if err != nil {
		return err
	}
	keyID := "phone-" + rand.Text()

	fmt.Fprintf(stdout, "device key store: %s; instances A %s and B %s\n\n", st.name, a, b)
	failed := 0
	step := func(name string, want, got int, err error) {
		mark := "ok"
		if err != nil || got != want {
			mark, failed = "UNEXPECTED", failed+1
			if err != nil {
				mark += ": " + err.Error()
			}
		}
		fmt.Fprintf(stdout, "%-62s %d (expected %d) %s\n", name, got, want, mark)
	}
	status, err := postEnrolment(ctx, a+"/device-keys/android", keyID, chain, challenge)
	step("1. enrol the Keystore key with its attestation chain at A", http.StatusCreated, status, err)
	status, body, err := pay(ctx, b+"/pay", keyID, key)
	if err == nil && status == http.StatusOK && body != "paid {\"amount\":250} by "+keyID+"\n" {
		err = fmt.Errorf("the payment handler answered %q", body)
	}
	step("2. payment signed by the device key, at B", http.StatusOK, status, err)
	// The phone is lost: one call, and every instance refuses the key.
	err = st.keys.Revoke(ctx, keyID)
	fmt.Fprintf(stdout, "%-62s %v\n", "3. revoke the device key (one call)", errOrDone(err))
	if err != nil {
		failed++
	}
	status, _, err = pay(ctx, a+"/pay", keyID, key)
	step("4. payment signed by the revoked key, at A", http.StatusUnauthorized, status, err)
	status, _, err = pay(ctx, b+"/pay", keyID, key)
	step("5. payment signed by the revoked key, at B", http.StatusUnauthorized, status, err)
	if failed > 0 {
		return fmt.Errorf("%d steps did not go as expected", failed)
	}
	fmt.Fprintln(stdout, "\nevery step as expected")
	return nil
}

func errOrDone(err error) any {
	if err != nil {
		return err
	}
	return "done"
}

// getChallenge asks for an enrolment challenge.
func getChallenge(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, nil)
	if err != nil {
		return "", err
	}
	status, body, err := send(req)
	var out struct{ Challenge string }
	if err != nil || status != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
		return "", fmt.Errorf("no challenge: %d %v", status, err)
	}
	return out.Challenge, nil
}

// postEnrolment posts the enrolment request the app sends.
func postEnrolment(ctx context.Context, url, keyID string, chain [][]byte, challenge string) (int, error) {
	certs := make([]string, len(chain))
	for i, der := range chain {
		certs[i] = base64.StdEncoding.EncodeToString(der)
	}
	body, err := json.Marshal(map[string]any{"key_id": keyID, "chain": certs})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Challenge", challenge)
	status, _, err := send(req)
	return status, err
}

// pay sends a payment signed, fresh, by the device key: created now and
// a new nonce each time (the key never leaves the phone's TEE).
func pay(ctx context.Context, url, keyID string, key *ecdsa.PrivateKey) (int, string, error) {
	s, err := signing.NewKeySigner(keyID, key)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(`{"amount":250}`))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := s.Sign(req); err != nil {
		return 0, "", err
	}
	return send(req)
}

// send sends req and returns the answer's status and body.
func send(req *http.Request) (int, string, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), err
}

// memoryKeys is a device key store for a single process, with
// redisstore.DeviceKeyStore's rules: an ID is never reused, and a revoked
// ID stays revoked. It holds at most maxKeys IDs.
type memoryKeys struct {
	mu   sync.Mutex
	keys map[string]redisstore.DeviceKey
}

func (m *memoryKeys) Put(_ context.Context, keyID, alg string, pub crypto.PublicKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[keyID]; ok {
		return redisstore.ErrKeyExists
	}
	if len(m.keys) >= maxKeys {
		return errors.New("devicekeys: key store full") // 503
	}
	m.keys[keyID] = redisstore.DeviceKey{Algorithm: alg, PublicKey: pub}
	return nil
}

func (m *memoryKeys) Get(_ context.Context, keyID string) (redisstore.DeviceKey, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[keyID]
	return k, ok, nil
}

func (m *memoryKeys) Revoke(_ context.Context, keyID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[keyID] = redisstore.DeviceKey{Revoked: true}
	return nil
}
