package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// deviceKeys are an ECDSA P-256 and an Ed25519 device key, registered
// under "ec-1" and "ed-1" by their public keys, beside device-a's HMAC
// secret; further keys are added per test.
type deviceKeys struct {
	ec   *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
	keys map[string]Key
}

func newDeviceKeys(t testing.TB) *deviceKeys {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return &deviceKeys{ec: ec, ed: ed, keys: map[string]Key{
		"ec-1":     {ID: "ec-1", Algorithm: AlgECDSAP256SHA256, PublicKey: &ec.PublicKey},
		"ed-1":     {ID: "ed-1", Algorithm: AlgEd25519, PublicKey: ed.Public()},
		"device-a": {ID: "device-a", Algorithm: AlgHMACSHA256, Secret: secretA},
	}}
}

func (d *deviceKeys) store() KeyStore {
	return KeyStoreFunc(func(_ context.Context, id string) (Key, error) {
		k, ok := d.keys[id]
		if !ok {
			return Key{}, ErrUnknownKey
		}
		return k, nil
	})
}

// ecSign is an ecdsa-p256-sha256 signature of base: r || s.
func ecSign(t testing.TB, k *ecdsa.PrivateKey, base []byte) []byte {
	t.Helper()
	h := sha256.Sum256(base)
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	require.NoError(t, err)
	return rs(r, s)
}

func rs(r, s *big.Int) []byte {
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// signWith is GET api/v1/orders with the Signature-Input member params
// (fmt args fill it) and the signature f makes of its base.
func signWith(t testing.TB, params string, f func(base []byte) []byte, args ...any) *http.Request {
	t.Helper()
	r := httptest.NewRequest("GET", api+"/v1/orders", nil)
	input := "sig1=" + fmt.Sprintf(params, args...)
	base, err := baseFor(t, r, input)
	require.NoError(t, err)
	r.Header.Set("Signature-Input", input)
	r.Header.Set("Signature", "sig1=:"+b64std(f(base))+":")
	return r
}

// opaqueSigner is a crypto.Signer that is not a Go private key type, as
// a key kept in hardware or a KMS is.
type opaqueSigner struct{ crypto.Signer }

// TestDeviceKeySigner: Signer signs with ECDSA P-256 and Ed25519 device
// keys, given as Go keys or as any crypto.Signer; the Verifier accepts
// what it signs, with the key's algorithm, once.
func TestDeviceKeySigner(t *testing.T) {
	d := newDeviceKeys(t)
	for _, tt := range []struct {
		keyID, alg string
		key        crypto.Signer
	}{
		{"ec-1", AlgECDSAP256SHA256, d.ec},
		{"ec-1", AlgECDSAP256SHA256, opaqueSigner{d.ec}},
		{"ed-1", AlgEd25519, d.ed},
		{"ed-1", AlgEd25519, opaqueSigner{d.ed}},
	} {
		t.Run(fmt.Sprintf("%s/%T", tt.alg, tt.key), func(t *testing.T) {
			v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = d.store() })
			s, err := NewKeySigner(tt.keyID, tt.key)
			require.NoError(t, err)
			s.Now = clk.Now
			r := signed(t, s, "POST", api+"/v1/pay", `{"amount":1}`, map[string]string{"Authorization": "Bearer t"})
			require.Contains(t, r.Header.Get("Signature-Input"), `alg="`+tt.alg+`"`)
			replay := r.Clone(context.Background())
			replay.Body = http.NoBody
			res, err := v.Verify(r)
			require.NoError(t, err)
			require.Equal(t, tt.alg, res.Algorithm)
			require.Equal(t, tt.keyID, res.KeyID)
			require.Equal(t, `{"amount":1}`, string(res.Body))
			_, reached, _ := serve(v, asServer(t, replay))
			require.False(t, reached, "replayed")
		})
	}
}

// TestNewKeySignerRefusesOtherKeys: keys that sign neither algorithm
// are refused, and the zero Signer signs nothing (it once MACed with an
// empty secret).
func TestNewKeySignerRefusesOtherKeys(t *testing.T) {
	r, err := http.NewRequest("GET", api+"/v1/orders", nil)
	require.NoError(t, err)
	require.Error(t, new(Signer).Sign(r))
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for _, k := range []crypto.Signer{nil, p384, rsaKey} {
		_, err := NewKeySigner("k", k)
		require.Error(t, err, "%T", k)
	}
}

// TestDeviceKeyAttacks: each way to get a signature past a device key
// is refused for its reason, and answered as an unknown key is.
func TestDeviceKeyAttacks(t *testing.T) {
	d := newDeviceKeys(t)
	other := newDeviceKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	ecPubBytes, err := x509.MarshalPKIXPublicKey(&d.ec.PublicKey)
	require.NoError(t, err)
	edPubBytes := []byte(d.ed.Public().(ed25519.PublicKey)) // 32 bytes: the length of an HMAC secret
	// Keys a faulty key store could hand out.
	d.keys["hmac-with-pub"] = Key{Algorithm: AlgHMACSHA256, Secret: edPubBytes, PublicKey: d.ed.Public()}
	d.keys["ec-with-secret"] = Key{Algorithm: AlgECDSAP256SHA256, Secret: secretA, PublicKey: &d.ec.PublicKey}
	d.keys["ec-secret-only"] = Key{Algorithm: AlgECDSAP256SHA256, Secret: secretA}
	d.keys["ed-secret-only"] = Key{Algorithm: AlgEd25519, Secret: edPubBytes}
	d.keys["ec-is-ed"] = Key{Algorithm: AlgECDSAP256SHA256, PublicKey: d.ed.Public()}
	d.keys["ed-is-ec"] = Key{Algorithm: AlgEd25519, PublicKey: &d.ec.PublicKey}
	d.keys["ec-p384"] = Key{Algorithm: AlgECDSAP256SHA256, PublicKey: &p384.PublicKey}
	d.keys["ec-by-value"] = Key{Algorithm: AlgECDSAP256SHA256, PublicKey: d.ec.PublicKey}
	d.keys["rsa-alg"] = Key{Algorithm: "rsa-pss-sha512", PublicKey: &d.ec.PublicKey}

	const p = `("@method" "@target-uri");created=%d;keyid="%s";nonce="n1"`
	hmacBy := func(secret []byte) func([]byte) []byte { return func(b []byte) []byte { return hmacSum(secret, b) } }
	ecBy := func(k *ecdsa.PrivateKey) func([]byte) []byte { return func(b []byte) []byte { return ecSign(t, k, b) } }
	edBy := func(k ed25519.PrivateKey) func([]byte) []byte {
		return func(b []byte) []byte { return ed25519.Sign(k, b) }
	}
	n := elliptic.P256().Params().N
	tests := []struct {
		name, keyID, extra string // extra: more parameters (alg)
		sign               func(base []byte) []byte
		wantErr            error
	}{
		// An attacker knows the device's public key (it is public) and
		// MACs with its bytes, claiming hmac-sha256 or no algorithm.
		{"alg_confusion_hmac_with_public_key/ecdsa_key_alg_hmac", "ec-1", `;alg="hmac-sha256"`, hmacBy(ecPubBytes), ErrAlgorithm},
		{"alg_confusion_hmac_with_public_key/ecdsa_key_no_alg", "ec-1", "", hmacBy(ecPubBytes), ErrSignature},
		{"alg_confusion_hmac_with_public_key/ed25519_key_alg_hmac", "ed-1", `;alg="hmac-sha256"`, hmacBy(edPubBytes), ErrAlgorithm},
		{"alg_confusion_hmac_with_public_key/ed25519_key_no_alg", "ed-1", "", hmacBy(edPubBytes), ErrSignature},
		{"alg_confusion_hmac_with_public_key/store_key_with_both", "hmac-with-pub", "", hmacBy(edPubBytes), ErrAlgorithm},
		// An HMAC secret is never a public key, nor a public key a secret.
		{"secret_on_ecdsa_key/hmac_signature", "ec-with-secret", "", hmacBy(secretA), ErrAlgorithm},
		{"secret_on_ecdsa_key/ecdsa_signature", "ec-with-secret", "", ecBy(d.ec), ErrAlgorithm},
		{"ecdsa_key_with_only_a_secret", "ec-secret-only", "", hmacBy(secretA), ErrAlgorithm},
		{"ed25519_key_with_only_a_secret", "ed-secret-only", "", hmacBy(edPubBytes), ErrAlgorithm},
		{"hmac_signature_under_hmac_key_claiming_ecdsa", "device-a", `;alg="ecdsa-p256-sha256"`, hmacBy(secretA), ErrAlgorithm},
		// Wrong key types in the store.
		{"wrong_key_type/ed25519_key_as_ecdsa", "ec-is-ed", "", edBy(d.ed), ErrAlgorithm},
		{"wrong_key_type/ecdsa_key_as_ed25519", "ed-is-ec", "", ecBy(d.ec), ErrAlgorithm},
		{"wrong_key_type/p384_key_as_p256", "ec-p384", "", ecBy(d.ec), ErrAlgorithm},
		{"wrong_key_type/ecdsa_key_by_value", "ec-by-value", "", ecBy(d.ec), ErrAlgorithm},
		{"wrong_key_type/unsupported_algorithm", "rsa-alg", "", ecBy(d.ec), ErrAlgorithm},
		// The signature's alg must be the key's.
		{"alg_mismatch/ecdsa_key_alg_ed25519", "ec-1", `;alg="ed25519"`, ecBy(d.ec), ErrAlgorithm},
		{"alg_mismatch/ed25519_key_alg_ecdsa", "ed-1", `;alg="ecdsa-p256-sha256"`, edBy(d.ed), ErrAlgorithm},
		{"alg_mismatch/ed25519_signature_under_ecdsa_key", "ec-1", "", edBy(d.ed), ErrSignature},
		// Malformed signatures.
		{"malformed_signature_length/ecdsa_asn1_der", "ec-1", "", func(b []byte) []byte {
			h := sha256.Sum256(b)
			der, err := ecdsa.SignASN1(rand.Reader, d.ec, h[:])
			require.NoError(t, err)
			return der
		}, ErrSignature},
		{"malformed_signature_length/ecdsa_63", "ec-1", "", func(b []byte) []byte { return ecSign(t, d.ec, b)[:63] }, ErrSignature},
		{"malformed_signature_length/ecdsa_65", "ec-1", "", func(b []byte) []byte { return append(ecSign(t, d.ec, b), 0) }, ErrSignature},
		{"malformed_signature_length/ecdsa_empty", "ec-1", "", func([]byte) []byte { return nil }, ErrSignature},
		{"malformed_signature_length/ed25519_63", "ed-1", "", func(b []byte) []byte { return ed25519.Sign(d.ed, b)[:63] }, ErrSignature},
		{"malformed_signature_length/ed25519_65", "ed-1", "", func(b []byte) []byte { return append(ed25519.Sign(d.ed, b), 0) }, ErrSignature},
		{"ecdsa_r_zero", "ec-1", "", func(b []byte) []byte { return rs(big.NewInt(0), big.NewInt(1)) }, ErrSignature},
		{"ecdsa_s_zero", "ec-1", "", func(b []byte) []byte { return rs(big.NewInt(1), big.NewInt(0)) }, ErrSignature},
		{"ecdsa_r_is_n", "ec-1", "", func(b []byte) []byte {
			sig := ecSign(t, d.ec, b)
			n.FillBytes(sig[:32])
			return sig
		}, ErrSignature},
		// A signature by another device's key.
		{"signature_by_another_key/ecdsa", "ec-1", "", ecBy(other.ec), ErrSignature},
		{"signature_by_another_key/ed25519", "ed-1", "", edBy(other.ed), ErrSignature},
	}
	unknownAnswer := func() *httptest.ResponseRecorder {
		v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = d.store() })
		w, _, _ := serve(v, signWith(t, p, hmacBy(secretA), clk.Now().Unix(), "nobody"))
		return w
	}()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = d.store() })
			_, err := v.Verify(signWith(t, p+tt.extra, tt.sign, clk.Now().Unix(), tt.keyID))
			require.ErrorIs(t, err, tt.wantErr)
			w, reached, _ := serve(v, signWith(t, p+tt.extra, tt.sign, clk.Now().Unix(), tt.keyID))
			require.False(t, reached)
			require.Equal(t, unknownAnswer.Code, w.Code)
			require.Equal(t, unknownAnswer.Header(), w.Header())
			require.Equal(t, unknownAnswer.Body.String(), w.Body.String(), "the answer tells the key apart from an unknown one")
		})
	}
}

// TestECDSAHighS (ecdsa_malleated_signature_replayed): RFC 9421 asks for
// no low-S form, and Keystore, the Secure Enclave and WebCrypto make
// either, so (r, n-s) verifies as (r, s) does. The malleated copy of an
// accepted request is still a replay: the nonce it covers is used.
func TestECDSAHighS(t *testing.T) {
	d := newDeviceKeys(t)
	const p = `("@method" "@target-uri");created=%d;keyid="ec-1";nonce="n1"`
	var sig []byte
	n := elliptic.P256().Params().N
	malleate := func(sig []byte) []byte {
		s := new(big.Int).Sub(n, new(big.Int).SetBytes(sig[32:]))
		return rs(new(big.Int).SetBytes(sig[:32]), s)
	}

	v, clk, _ := newTestVerifier(t, func(c *Config) { c.Keys = d.store() })
	_, err := v.Verify(signWith(t, p, func(b []byte) []byte { sig = ecSign(t, d.ec, b); return malleate(sig) }, clk.Now().Unix()))
	require.NoError(t, err, "the other half of s verifies")

	v, clk, _ = newTestVerifier(t, func(c *Config) { c.Keys = d.store() })
	_, err = v.Verify(signWith(t, p, func(b []byte) []byte { sig = ecSign(t, d.ec, b); return sig }, clk.Now().Unix()))
	require.NoError(t, err)
	_, err = v.Verify(signWith(t, p, func([]byte) []byte { return malleate(sig) }, clk.Now().Unix()))
	require.ErrorIs(t, err, ErrReplay)
}

// TestSignerAlgorithmNamed: the Signer names its key's algorithm in alg
// and an ECDSA signature is r || s.
func TestSignerAlgorithmNamed(t *testing.T) {
	d := newDeviceKeys(t)
	s, err := NewKeySigner("ec-1", d.ec)
	require.NoError(t, err)
	r, err := http.NewRequest("GET", api+"/v1/orders", nil)
	require.NoError(t, err)
	require.NoError(t, s.Sign(r))
	require.True(t, strings.HasSuffix(r.Header.Get("Signature-Input"), `alg="ecdsa-p256-sha256"`))
	sig := r.Header.Get("Signature")
	require.Len(t, sig, len("sig1=::")+88, "64 bytes in base64")
}
