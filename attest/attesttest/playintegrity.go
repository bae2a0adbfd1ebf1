package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwe"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// PlayKeys are a developer's Play Integrity keys: the AES-256 key that
// encrypts classic tokens and the EC key that signs them.
type PlayKeys struct {
	DecryptionKey []byte
	SigningKey    *ecdsa.PrivateKey
}

// NewPlayKeys makes a fresh pair.
func NewPlayKeys() (*PlayKeys, error) {
	aes := make([]byte, 32)
	if _, err := rand.Read(aes); err != nil {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &PlayKeys{DecryptionKey: aes, SigningKey: k}, nil
}

// Verdict returns a passing Play Integrity payload for packageName with
// nonce (classic) and requestHash (standard), at timestampMillis, signed
// by certDigest. Change fields of the map to mint failing verdicts.
func Verdict(packageName, nonce, requestHash string, timestampMillis int64, certDigest string) map[string]any {
	return map[string]any{
		"requestDetails": map[string]any{
			"requestPackageName": packageName, "nonce": nonce, "requestHash": requestHash,
			"timestampMillis": timestampMillis,
		},
		"appIntegrity": map[string]any{
			"appRecognitionVerdict": "PLAY_RECOGNIZED", "packageName": packageName,
			"certificateSha256Digest": []string{certDigest}, "versionCode": "42",
		},
		"deviceIntegrity": map[string]any{
			"deviceRecognitionVerdict": []string{"MEETS_DEVICE_INTEGRITY", "MEETS_BASIC_INTEGRITY"},
		},
		"accountDetails":     map[string]any{"appLicensingVerdict": "LICENSED"},
		"environmentDetails": map[string]any{"playProtectVerdict": "NO_ISSUES"},
	}
}

// Classic mints a classic token: the payload signed with ES256, then
// encrypted with A256KW and A256GCM, as Google does.
func (k *PlayKeys) Classic(payload map[string]any) (string, error) {
	return k.ClassicWith(payload, jwa.A256KW)
}

// ClassicWith mints a classic token with another key-wrap algorithm (for
// A128KW, pass a 16-byte DecryptionKey).
func (k *PlayKeys) ClassicWith(payload map[string]any, alg jwa.KeyEncryptionAlgorithm) (string, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	signed, err := jws.Sign(b, jws.WithKey(jwa.ES256, k.SigningKey))
	if err != nil {
		return "", err
	}
	enc, err := jwe.Encrypt(signed, jwe.WithKey(alg, k.DecryptionKey), jwe.WithContentEncryption(jwa.A256GCM))
	if err != nil {
		return "", err
	}
	return string(enc), nil
}
