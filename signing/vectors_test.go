package signing

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/sfv"
	"github.com/stretchr/testify/require"
)

func readVector(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

type rfc9421Vector struct {
	Secret  string `json:"shared_secret_b64"`
	Request struct {
		Method  string            `json:"method"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"request"`
	Base      string `json:"signature_base"`
	Input     string `json:"signature_input"`
	Signature string `json:"signature"`
}

func (vec rfc9421Vector) request() *http.Request {
	r := httptest.NewRequest(vec.Request.Method, vec.Request.URL, strings.NewReader(vec.Request.Body))
	for k, v := range vec.Request.Headers {
		r.Header.Set(k, v)
	}
	r.Host = vec.Request.Headers["Host"]
	r.Header.Set("Signature-Input", vec.Input)
	r.Header.Set("Signature", vec.Signature)
	return r
}

func TestRFC9421B25(t *testing.T) {
	var vec rfc9421Vector
	readVector(t, "testdata/rfc9421-hmac.json", &vec)
	secret, err := base64.StdEncoding.DecodeString(vec.Secret)
	require.NoError(t, err)
	keys := StaticKeys(map[string][]byte{"test-shared-secret": secret})

	// The signature base, byte for byte.
	loose := Profile{InsecureAllowMissingNonce: true, InsecureAllowUncoveredMethod: true, InsecureAllowUncoveredTarget: true, InsecureAllowUnsignedBody: true}
	r := vec.request()
	in, err := (&Verifier{}).parse(r, loose, nil, new(scratch))
	require.NoError(t, err)
	base, err := signatureBase(nil, r, target{scheme: "http", authority: "example.com"}, in.list, in.params, in.raw)
	require.NoError(t, err)
	require.Equal(t, vec.Base, string(base))

	created := time.Unix(1618884473, 0)
	v, err := New(Config{Keys: keys, Scheme: "http", Profile: loose, Now: func() time.Time { return created }, ReplayStore: NewMemoryReplayStore(10, 5*time.Minute, func() time.Time { return created.Add(-time.Hour) })})
	require.NoError(t, err)
	res, err := v.Verify(vec.request())
	require.NoError(t, err)
	require.Equal(t, "test-shared-secret", res.KeyID)
	require.Equal(t, "sig-b25", res.Label)

	// The default mobile profile refuses it: no @method, no nonce.
	strict, err := New(Config{Keys: keys, Scheme: "http", Now: func() time.Time { return created }})
	require.NoError(t, err)
	_, err = strict.Verify(vec.request())
	require.ErrorIs(t, err, ErrProfile)
}

func TestRFC9530Digests(t *testing.T) {
	var vec struct {
		Cases []struct {
			Body   string `json:"body"`
			SHA256 string `json:"sha-256"`
			SHA512 string `json:"sha-512"`
		} `json:"cases"`
		MustReject []string `json:"must_reject"`
	}
	readVector(t, "testdata/rfc9530-digest.json", &vec)
	for _, c := range vec.Cases {
		require.NoError(t, checkDigest(new(sfv.Scratch), []string{"sha-256=:" + c.SHA256 + ":"}, []byte(c.Body)))
		require.Equal(t, "sha-256=:"+c.SHA256+":", ContentDigest([]byte(c.Body)))
		if c.SHA512 != "" {
			require.NoError(t, checkDigest(new(sfv.Scratch), []string{"sha-512=:" + c.SHA512 + ":"}, []byte(c.Body)))
			require.NoError(t, checkDigest(new(sfv.Scratch), []string{"sha-256=:" + c.SHA256 + ":, sha-512=:" + c.SHA512 + ":"}, []byte(c.Body)))
		}
		require.ErrorIs(t, checkDigest(new(sfv.Scratch), []string{"sha-256=:" + c.SHA256 + ":"}, []byte(c.Body+"x")), ErrDigest, "tampered body")
	}
	for _, bad := range vec.MustReject {
		require.ErrorIs(t, checkDigest(new(sfv.Scratch), []string{bad}, []byte(`{"hello": "world"}`+"\n")), ErrMalformed)
	}
	require.ErrorIs(t, checkDigest(new(sfv.Scratch), []string{"md5=:AAAA:"}, nil), ErrDigest, "no supported algorithm")
	require.ErrorIs(t, checkDigest(new(sfv.Scratch), []string{`sha-256="x"`}, nil), ErrMalformed)
	require.ErrorIs(t, checkDigest(new(sfv.Scratch), []string{vec.Cases[0].SHA256 + ", sha-512=:" + vec.Cases[0].SHA512 + ":"}, nil), ErrMalformed)
}

func TestRFC5869HKDF(t *testing.T) {
	var vec struct {
		IKM    string `json:"ikm_hex"`
		Salt   string `json:"salt_hex"`
		Info   string `json:"info_hex"`
		Length int    `json:"length"`
		OKM    string `json:"okm_hex"`
	}
	readVector(t, "testdata/rfc5869-hkdf.json", &vec)
	dec := func(s string) []byte {
		b, err := hex.DecodeString(s)
		require.NoError(t, err)
		return b
	}
	okm, err := derive(dec(vec.IKM), dec(vec.Salt), string(dec(vec.Info)), vec.Length)
	require.NoError(t, err)
	require.Equal(t, vec.OKM, hex.EncodeToString(okm))
}

func TestTrimOWS(t *testing.T) {
	for _, s := range []string{"", " ", "\t", "a", " a ", "\t a b \t", "a\t", "  \t", "\ta", " a\nb "} {
		require.Equal(t, strings.Trim(s, " \t"), trimOWS(s), "%q", s)
	}
}

// TestDigestFastPath checks that the unparsed sha-256 path of checkDigest
// decides as the parser does on lines of its shape: the canonical line,
// one with non-zero trailing bits (which the decoder accepts), and every
// one-character change of the digest to each of a set of characters that
// matter (a line break, a colon, padding, a space, letters).
func TestDigestFastPath(t *testing.T) {
	body := []byte(`{"amount": 100}`)
	canonical := ContentDigest(body)
	enc := canonical[len("sha-256=:") : len(canonical)-1]
	lines := []string{canonical}
	// The last digit before "=" carries two unused bits: set one.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	trailing := "sha-256=:" + enc[:42] + string(alphabet[strings.IndexByte(alphabet, enc[42])|1]) + "=:"
	require.NotEqual(t, canonical, trailing)
	lines = append(lines, trailing)
	for i := range enc {
		for _, c := range "\n\r:= aZ+/" {
			mut := []byte(enc)
			mut[i] = byte(c)
			lines = append(lines, "sha-256=:"+string(mut)+":")
		}
	}
	for _, line := range lines {
		fast := checkDigest(new(sfv.Scratch), []string{line}, body)
		parsed := checkDigestParsed(new(sfv.Scratch), []string{line}, body, nil)
		require.Equal(t, parsed == nil, fast == nil, "%q: fast %v, parsed %v", line, fast, parsed)
		if parsed != nil {
			require.Equal(t, errors.Is(parsed, ErrMalformed), errors.Is(fast, ErrMalformed), "%q", line)
		}
	}
	require.NoError(t, checkDigest(new(sfv.Scratch), []string{canonical}, body))
	require.ErrorIs(t, checkDigest(new(sfv.Scratch), []string{"sha-256=:" + enc[:20] + "\n" + enc[21:] + ":"}, body), ErrMalformed)
}
