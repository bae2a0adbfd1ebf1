package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// secretEnv names the environment variable that holds the demo's shared
// secret when -secret-file is not given.
const secretEnv = "APIGUARD_DEMO_SECRET" // #nosec G101 -- the variable's name, not a secret

// secrets are the demo's secrets that instances of one service must
// share: from one master (-secret-file or APIGUARD_DEMO_SECRET), each
// derived with HKDF-SHA256 under a label of its own, so that learning one
// reveals neither the master nor the others. Without a master, every
// process makes its own: two instances on one Redis then share neither
// tokens nor limits.
type secrets struct {
	shared       bool
	limitKey     []byte            // ratelimit's KeySecret (hashes keys stored in Redis)
	deviceMaster []byte            // signing's master: each device's secret derives from it
	issuerKey    *ecdsa.PrivateKey // the authorization server's ES256 key
	enrolKey     []byte            // MACs the Android enrolment challenges
}

// loadSecrets reads the master from file (base64, surrounding space
// ignored) or, when file is "", from APIGUARD_DEMO_SECRET; with neither it
// makes per-process secrets. The master must decode to 32 bytes or more.
// Errors never quote the secret.
func loadSecrets(file string) (*secrets, error) {
	text, from := os.Getenv(secretEnv), secretEnv
	if file != "" {
		b, err := os.ReadFile(file) // #nosec G304 -- the operator names the file
		if err != nil {
			return nil, fmt.Errorf("-secret-file: %w", err)
		}
		text, from = string(b), "-secret-file "+file
	}
	if strings.TrimSpace(text) == "" {
		return randomSecrets()
	}
	master, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("%s: not base64 (make one with: openssl rand -base64 32)", from)
	}
	if len(master) < 32 {
		return nil, fmt.Errorf("%s: %d bytes, 32 or more required (make one with: openssl rand -base64 32)", from, len(master))
	}
	return deriveSecrets(master)
}

// deriveSecrets derives every shared secret from master.
func deriveSecrets(master []byte) (*secrets, error) {
	s := &secrets{shared: true}
	var err error
	if s.limitKey, err = derive(master, "ratelimit key secret"); err != nil {
		return nil, err
	}
	if s.deviceMaster, err = derive(master, "signing device master"); err != nil {
		return nil, err
	}
	if s.enrolKey, err = derive(master, "enrolment challenge key"); err != nil {
		return nil, err
	}
	// A P-256 scalar must be below the group order: a 32-byte HKDF output
	// is, except with probability about 2^-32; the next counter is tried
	// then.
	for i := 0; i < 16 && s.issuerKey == nil; i++ {
		seed, err := derive(master, "issuer ES256 key "+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		s.issuerKey, _ = ecdsa.ParseRawPrivateKey(elliptic.P256(), seed)
	}
	if s.issuerKey == nil {
		return nil, errors.New("no issuer key derives from the secret")
	}
	return s, nil
}

// randomSecrets are the secrets of one process alone. The device master
// stays the demo's constant, which the scripted client knows.
func randomSecrets() (*secrets, error) {
	s := &secrets{limitKey: make([]byte, 32), deviceMaster: demoMaster, enrolKey: make([]byte, 32)}
	if _, err := rand.Read(s.limitKey); err != nil {
		return nil, err
	}
	if _, err := rand.Read(s.enrolKey); err != nil {
		return nil, err
	}
	var err error
	s.issuerKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return s, err
}

// derive is HKDF-SHA256 of master under the demo's salt and label: 32
// bytes.
func derive(master []byte, label string) ([]byte, error) {
	return hkdf.Key(sha256.New, master, []byte("apiguard-demo secrets v1"), label, 32)
}
