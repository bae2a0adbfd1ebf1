package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/stretchr/testify/require"
)

const apiBase = "https://api.example.com"

// proof makes a DPoP proof with key k; fields in over replace or (nil)
// remove the defaults.
func proof(t testing.TB, k *signer, method, htu, token string, iat time.Time, over map[string]any) string {
	t.Helper()
	claims := map[string]any{"jti": "jti-" + htu + iat.String(), "htm": method, "htu": htu, "iat": iat.Unix(), "ath": AccessTokenHash(token)}
	hdr := map[string]any{"typ": "dpop+jwt", "jwk": k.pub}
	for key, v := range over {
		switch key {
		case "typ", "jwk":
			if v == nil {
				delete(hdr, key)
			} else {
				hdr[key] = v
			}
		default:
			if v == nil {
				delete(claims, key)
			} else {
				claims[key] = v
			}
		}
	}
	// The proof key carries no kid of its own.
	pub, err := jwk.PublicKeyOf(k.pub)
	require.NoError(t, err)
	_ = pub.Remove(jwk.KeyIDKey)
	if _, ok := over["jwk"]; !ok {
		hdr["jwk"] = pub
	}
	return k.sign(t, hdr, claims)
}

func jkt(t testing.TB, k *signer) string {
	t.Helper()
	s, err := Thumbprint(k.pub)
	require.NoError(t, err)
	return s
}

func dpopRequest(method, path, token, prf string) *http.Request {
	r := httptest.NewRequest(method, apiBase+path, nil)
	r.Header.Set("Authorization", "DPoP "+token)
	if prf != "" {
		r.Header.Set("DPoP", prf)
	}
	return r
}

func TestThumbprintVectors(t *testing.T) {
	var rfc7638 struct {
		JWK        json.RawMessage `json:"jwk"`
		Thumbprint string          `json:"thumbprint_sha256"`
	}
	readVector(t, "testdata/rfc7638-thumbprint.json", &rfc7638)
	k, err := jwk.ParseKey(rfc7638.JWK)
	require.NoError(t, err)
	got, err := Thumbprint(k)
	require.NoError(t, err)
	require.Equal(t, rfc7638.Thumbprint, got)

	var rfc9449 dpopVector
	readVector(t, "testdata/rfc9449-dpop.json", &rfc9449)
	k, err = jwk.ParseKey(rfc9449.JWK)
	require.NoError(t, err)
	got, err = Thumbprint(k)
	require.NoError(t, err)
	require.Equal(t, rfc9449.JKT, got)
	require.Equal(t, rfc9449.ATH, AccessTokenHash(rfc9449.AccessToken))
}

type dpopVector struct {
	JWK         json.RawMessage `json:"jwk"`
	JKT         string          `json:"jkt"`
	AccessToken string          `json:"access_token"`
	ATH         string          `json:"ath"`
	Resource    struct {
		Htm   string `json:"htm"`
		Htu   string `json:"htu"`
		Iat   int64  `json:"iat"`
		Proof string `json:"proof"`
	} `json:"resource_request_proof"`
}

func readVector(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

// TestRFC9449Proof verifies the RFC's own resource-request proof
// (Figure 13) with the clock at its iat.
func TestRFC9449Proof(t *testing.T) {
	var vec dpopVector
	readVector(t, "testdata/rfc9449-dpop.json", &vec)
	clk := testkit.NewClock(time.Unix(vec.Resource.Iat-10, 0))
	cfg := &Config{DPoPURL: "https://resource.example.org", DPoPAlgorithms: defaultAlgorithms, DPoPProofWindow: time.Minute, ReplayCacheSize: 10, Now: clk.Now}
	d, err := newDPoPChecker(cfg)
	require.NoError(t, err)
	clk.Advance(10 * time.Second)
	r := httptest.NewRequest(vec.Resource.Htm, "https://resource.example.org/protectedresource", nil)
	r.Header.Set("DPoP", vec.Resource.Proof)
	require.ErrorIs(t, d.verifyProof(r, vec.AccessToken, "another-thumbprint"), ErrDPoPBinding)
	require.NoError(t, d.verifyProof(r, vec.AccessToken, vec.JKT), "binding failure did not burn the jti")
	require.ErrorIs(t, d.verifyProof(r, vec.AccessToken, vec.JKT), ErrDPoPReplay, "the same proof twice")
}

func TestDPoP(t *testing.T) {
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	thief := newSigner(t, jwa.ES256, "thief")
	edDevice := newSigner(t, jwa.EdDSA, "ed-device")
	hsKey := &signer{alg: jwa.HS256, priv: []byte("0123456789abcdef0123456789abcdef"), pub: device.pub}

	type req struct {
		method, path string
		scheme       string // "DPoP" or "Bearer"
		token        string
		proofs       []string
	}
	tests := []struct {
		name       string
		mode       DPoPMode
		build      func(t *testing.T, now time.Time) req
		wantStatus int
		wantErr    error
	}{
		{name: "bound_token_with_valid_proof", mode: DPoPRequired, wantStatus: 204, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders/7?page=2", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders/7", tok, now, nil)}}
		}},
		{name: "eddsa_proof", mode: DPoPAllowed, wantStatus: 204, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, edDevice)}})
			return req{"POST", "/orders", "DPoP", tok, []string{proof(t, edDevice, "POST", apiBase+"/orders", tok, now, nil)}}
		}},
		{name: "htu_normalised", mode: DPoPAllowed, wantStatus: 204, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders/7", "DPoP", tok, []string{proof(t, device, "GET", "HTTPS://API.example.com:443/orders/./%37?q=1#frag", tok, now, nil)}}
		}},
		{name: "unbound_bearer_allowed", mode: DPoPAllowed, wantStatus: 204, build: func(t *testing.T, now time.Time) req {
			return req{"GET", "/orders", "Bearer", issuerKey.token(t, nil), nil}
		}},
		{name: "unbound_bearer_when_required", mode: DPoPRequired, wantStatus: 401, wantErr: ErrNoToken, build: func(t *testing.T, now time.Time) req {
			return req{"GET", "/orders", "Bearer", issuerKey.token(t, nil), nil}
		}},
		{name: "stolen_dpop_token_as_bearer", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPBinding, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "Bearer", tok, nil}
		}},
		{name: "stolen_dpop_token_with_thief_key", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPBinding, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, thief, "GET", apiBase+"/orders", tok, now, nil)}}
		}},
		{name: "bound_token_without_proof", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, nil}
		}},
		{name: "unbound_token_with_dpop_scheme", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPBinding, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, nil)
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", tok, now, nil)}}
		}},
		{name: "replayed_proof", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPReplay, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{"REPLAY", proof(t, device, "GET", apiBase+"/orders", tok, now, nil)}}
		}},
		{name: "proof_for_another_url", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/admin", tok, now, nil)}}
		}},
		{name: "proof_for_another_host", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", "https://evil.example.com/orders", tok, now, nil)}}
		}},
		{name: "proof_for_another_method", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"DELETE", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", tok, now, nil)}}
		}},
		{name: "proof_for_another_token", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", "other-token", now, nil)}}
		}},
		{name: "proof_too_old", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", tok, now.Add(-5*time.Minute), nil)}}
		}},
		{name: "proof_from_future", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", tok, now.Add(5*time.Minute), nil)}}
		}},
		{name: "proof_wrong_typ", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", tok, now, map[string]any{"typ": "JWT"})}}
		}},
		{name: "proof_without_jti", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", tok, now, map[string]any{"jti": nil})}}
		}},
		{name: "proof_hmac_alg", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{hsKey.sign(t, map[string]any{"typ": "dpop+jwt", "jwk": device.pub}, map[string]any{"jti": "x", "htm": "GET", "htu": apiBase + "/orders", "iat": now.Unix(), "ath": AccessTokenHash(tok)})}}
		}},
		{name: "proof_with_private_jwk", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			priv, err := jwk.FromRaw(device.priv)
			require.NoError(t, err)
			return req{"GET", "/orders", "DPoP", tok, []string{proof(t, device, "GET", apiBase+"/orders", tok, now, map[string]any{"jwk": priv})}}
		}},
		{name: "proof_signed_by_other_key_than_jwk", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "DPoP", tok, []string{thief.sign(t, map[string]any{"typ": "dpop+jwt", "jwk": device.pub}, map[string]any{"jti": "x", "htm": "GET", "htu": apiBase + "/orders", "iat": now.Unix(), "ath": AccessTokenHash(tok)})}}
		}},
		{name: "two_dpop_headers", mode: DPoPAllowed, wantStatus: 401, wantErr: ErrDPoPProof, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			p := proof(t, device, "GET", apiBase+"/orders", tok, now, nil)
			return req{"GET", "/orders", "DPoP", tok, []string{"TWO", p}}
		}},
		{name: "bound_token_when_off", mode: DPoPOff, wantStatus: 401, wantErr: ErrDPoPBinding, build: func(t *testing.T, now time.Time) req {
			tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
			return req{"GET", "/orders", "Bearer", tok, nil}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			v, logs := newTestVerifier(t, clk, func(c *Config) {
				c.DPoP = tt.mode
				if tt.mode != DPoPOff {
					c.DPoPURL = apiBase
				}
			}, issuerKey)
			rq := tt.build(t, clk.Now())
			mk := func(proofs ...string) *http.Request {
				r := httptest.NewRequest(rq.method, apiBase+rq.path, nil)
				r.Header.Set("Authorization", rq.scheme+" "+rq.token)
				for _, p := range proofs {
					r.Header.Add("DPoP", p)
				}
				return r
			}
			var r *http.Request
			switch {
			case len(rq.proofs) == 2 && rq.proofs[0] == "REPLAY":
				rec, reached, _ := call(v.Handler, mk(rq.proofs[1]))
				require.True(t, reached, "first use accepted: %s", rec.Body.String())
				r = mk(rq.proofs[1])
			case len(rq.proofs) == 2 && rq.proofs[0] == "TWO":
				r = mk(rq.proofs[1], rq.proofs[1])
			default:
				r = mk(rq.proofs...)
			}
			rec, reached, claims := call(v.Handler, r)
			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			require.Equal(t, tt.wantStatus == 204, reached)
			if reached {
				require.NotNil(t, claims)
				return
			}
			_, err := v.Verify(r)
			require.ErrorIs(t, err, tt.wantErr)
			if tt.mode != DPoPOff {
				require.Contains(t, rec.Header().Values("WWW-Authenticate"), dpopChallengeFor(tt.mode, tt.wantErr))
			}
			require.Contains(t, logs.String(), `"event":"auth_failed"`)
		})
	}
}

func dpopChallengeFor(mode DPoPMode, err error) string {
	code := "invalid_token"
	switch {
	case errors.Is(err, ErrNoToken):
		return `DPoP algs="RS256 PS256 ES256 EdDSA"`
	case errors.Is(err, ErrDPoPProof), errors.Is(err, ErrDPoPReplay):
		code = "invalid_dpop_proof"
	}
	return `DPoP error="` + code + `", algs="RS256 PS256 ES256 EdDSA"`
}

func TestDPoPFailedProofDoesNotBurnJti(t *testing.T) {
	clk := testkit.NewClock(t0)
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = apiBase }, issuerKey)
	tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
	bad := proof(t, device, "GET", apiBase+"/wrong", tok, clk.Now(), map[string]any{"jti": "same"})
	_, err := v.Verify(dpopRequest("GET", "/orders", tok, bad))
	require.ErrorIs(t, err, ErrDPoPProof)
	good := proof(t, device, "GET", apiBase+"/orders", tok, clk.Now(), map[string]any{"jti": "same"})
	_, err = v.Verify(dpopRequest("GET", "/orders", tok, good))
	require.NoError(t, err, "the failed proof did not burn the jti")
}

func TestDPoPNonce(t *testing.T) {
	clk := testkit.NewClock(t0)
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	key := []byte("0123456789abcdef0123456789abcdef")
	v, _ := newTestVerifier(t, clk, func(c *Config) {
		c.DPoP = DPoPRequired
		c.DPoPURL = apiBase
		c.DPoPNonceKey = key
	}, issuerKey)
	tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})

	// Without a nonce: 401 use_dpop_nonce with a DPoP-Nonce to retry with.
	rec, reached, _ := call(v.Handler, dpopRequest("GET", "/orders", tok, proof(t, device, "GET", apiBase+"/orders", tok, clk.Now(), map[string]any{"jti": "1"})))
	require.False(t, reached)
	require.Equal(t, 401, rec.Code)
	require.Equal(t, `DPoP error="use_dpop_nonce", algs="RS256 PS256 ES256 EdDSA"`, rec.Header().Get("WWW-Authenticate"))
	nonce := rec.Header().Get("DPoP-Nonce")
	require.NotEmpty(t, nonce)

	// A second instance with the same key accepts the nonce: stateless.
	v2, _ := newTestVerifier(t, clk, func(c *Config) {
		c.DPoP = DPoPRequired
		c.DPoPURL = apiBase
		c.DPoPNonceKey = key
	}, issuerKey)
	rec, reached, _ = call(v2.Handler, dpopRequest("GET", "/orders", tok, proof(t, device, "GET", apiBase+"/orders", tok, clk.Now(), map[string]any{"jti": "2", "nonce": nonce})))
	require.True(t, reached, rec.Body.String())

	// A forged nonce and an expired one are refused.
	_, err := v.Verify(dpopRequest("GET", "/orders", tok, proof(t, device, "GET", apiBase+"/orders", tok, clk.Now(), map[string]any{"jti": "3", "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})))
	require.ErrorIs(t, err, ErrDPoPNonce)
	clk.Advance(6 * time.Minute)
	tok2 := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}, "iat": clk.Now().Unix(), "exp": clk.Now().Add(5 * time.Minute).Unix()})
	_, err = v.Verify(dpopRequest("GET", "/orders", tok2, proof(t, device, "GET", apiBase+"/orders", tok2, clk.Now(), map[string]any{"jti": "4", "nonce": nonce})))
	require.ErrorIs(t, err, ErrDPoPNonce)
}

func TestNormalizeURL(t *testing.T) {
	tests := []struct{ give, want string }{
		{"https://API.Example.com:443/a/b", "https://api.example.com/a/b"},
		{"http://x.com:80", "http://x.com/"},
		{"https://x.com:8443/a/../b/./c", "https://x.com:8443/b/c"},
		{"https://x.com/a/b/..", "https://x.com/a/"},
		{"https://x.com/../../a", "https://x.com/a"},
		{"https://x.com/%7euser/%2f", "https://x.com/~user/%2F"},
		{"https://x.com/a/%2E%2E/b", "https://x.com/b"},
		{"https://x.com/a/%2F/../b", "https://x.com/a/b"},
		{"https://x.com/a/b/.", "https://x.com/a/b/"},
		{"https://x.com/a/...", "https://x.com/a/..."},
		{"https://[2001:DB8::1]:443/p?q#f", "https://[2001:db8::1]/p"},
	}
	for _, tt := range tests {
		u, err := normalizeURL(tt.give)
		require.NoError(t, err, tt.give)
		require.Equal(t, tt.want, u, tt.give)
	}
	for _, bad := range []string{"ftp://x.com/", "/relative", "https://user@x.com/", "://", "http://:"} {
		_, err := normalizeURL(bad)
		require.Error(t, err, bad)
	}
}

func TestMemoryReplayStore(t *testing.T) {
	clk := testkit.NewClock(t0)
	s := NewMemoryReplayStore(2, clk.Now)
	clk.Advance(2 * time.Minute)
	ctx := context.Background()
	ok, err := s.Use(ctx, "a", clk.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok)
	ok, _ = s.Use(ctx, "a", clk.Now().Add(time.Minute))
	require.False(t, ok)
	s.Use(ctx, "b", clk.Now().Add(time.Minute+time.Second))
	s.Use(ctx, "c", clk.Now().Add(time.Minute+2*time.Second))
	require.Equal(t, 2, s.Len())
	ok, _ = s.Use(ctx, "a", clk.Now().Add(time.Minute))
	require.False(t, ok, "evicted id still refused")
}

// oversizeRSA returns an RSA public key of bits bits: not a usable key
// (its modulus is random), which is enough, since a size check must come
// before any use of it.
func oversizeRSA(t testing.TB, bits int) *rsa.PublicKey {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	require.NoError(t, err)
	n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
	return &rsa.PublicKey{N: n, E: 65537}
}

// TestDPoPProofRSAKeyTooLarge: a proof's key is the client's own and its
// signature is checked before anything binds it to a token, so an RSA
// proof key over 4096 bits is refused before it is used.
func TestDPoPProofRSAKeyTooLarge(t *testing.T) {
	clk := testkit.NewClock(t0)
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	rs := newSigner(t, jwa.PS256, "rs-device")
	v, _ := newTestVerifier(t, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = apiBase }, issuerKey)
	large, err := jwk.FromRaw(oversizeRSA(t, 4608))
	require.NoError(t, err)
	tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, rs)}})
	_, err = v.Verify(dpopRequest("GET", "/orders", tok, proof(t, rs, "GET", apiBase+"/orders", tok, clk.Now(), map[string]any{"jwk": large})))
	require.ErrorIs(t, err, ErrDPoPProof)
	require.ErrorContains(t, err, "RSA key of 4608 bits")

	// A 2048-bit RSA proof key of the token's binding is accepted.
	_, err = v.Verify(dpopRequest("GET", "/orders", tok, proof(t, rs, "GET", apiBase+"/orders", tok, clk.Now(), nil)))
	require.NoError(t, err)
}

func TestRSAKeySizeBounds(t *testing.T) {
	all := []jwa.SignatureAlgorithm{jwa.RS256, jwa.PS256}
	for _, tt := range []struct {
		bits int
		err  string
	}{{1024, "too small"}, {2048, ""}, {8192, ""}, {8200, "too large"}} {
		_, err := algsForKey(oversizeRSA(t, tt.bits), "", all)
		if tt.err == "" {
			require.NoError(t, err, tt.bits)
		} else {
			require.ErrorContains(t, err, tt.err, tt.bits)
		}
	}
}

// TestDPoPHtuPaths: a proof binds to the resource the request reaches. A
// request path with dot segments, literal or percent-encoded, is refused
// whatever the proof (routers resolve such paths differently); the proof's
// own htu is normalised (RFC 3986 §6.2.2), so equivalent spellings of a
// normal path match, and an encoded slash stays a different path.
func TestDPoPHtuPaths(t *testing.T) {
	tests := []struct {
		name    string
		path    string // of the request
		htu     string // of the proof
		wantErr error  // nil: accepted
	}{
		{name: "dot_segments_reach_other_route", path: "/a/../b", htu: apiBase + "/b", wantErr: ErrDPoPProof},
		{name: "encoded_dot_segments_reach_other_route", path: "/a/%2E%2E/b", htu: apiBase + "/b", wantErr: ErrDPoPProof},
		{name: "lowercase_encoded_dot_segments", path: "/a/%2e%2e/b", htu: apiBase + "/b", wantErr: ErrDPoPProof},
		{name: "half_encoded_dot_segment", path: "/a/.%2E/b", htu: apiBase + "/b", wantErr: ErrDPoPProof},
		{name: "dot_segments_with_matching_htu", path: "/a/../b", htu: apiBase + "/a/../b", wantErr: ErrDPoPProof},
		{name: "single_dot_segment", path: "/./b", htu: apiBase + "/b", wantErr: ErrDPoPProof},
		{name: "trailing_dot_dot", path: "/b/c/..", htu: apiBase + "/b/", wantErr: ErrDPoPProof},
		{name: "encoded_slash_is_another_path", path: "/files/a%2Fb", htu: apiBase + "/files/a/b", wantErr: ErrDPoPProof},
		{name: "htu_for_parent_path", path: "/b", htu: apiBase + "/a/b", wantErr: ErrDPoPProof},
		{name: "htu_with_dot_segments_names_b", path: "/b", htu: apiBase + "/a/../b"},
		{name: "htu_with_encoded_dot_segments_names_b", path: "/b", htu: apiBase + "/a/%2E%2E/b"},
		{name: "encoded_space", path: "/files/a%20b", htu: apiBase + "/files/a%20b"},
		{name: "encoded_unreserved_in_htu", path: "/files/~user", htu: apiBase + "/files/%7Euser"},
		{name: "encoded_unreserved_in_request", path: "/files/%7Euser", htu: apiBase + "/files/~user"},
		{name: "lowercase_escape_in_request", path: "/files/a%2fb", htu: apiBase + "/files/a%2Fb"},
		{name: "dots_inside_segments", path: "/files/report.v2.pdf/...", htu: apiBase + "/files/report.v2.pdf/..."},
		{name: "host_case_and_default_port", path: "/b", htu: "HTTPS://API.EXAMPLE.COM:443/b"},
	}
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			v, _ := newTestVerifier(t, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = apiBase }, issuerKey)
			r := dpopRequest("GET", tt.path, tok, proof(t, device, "GET", tt.htu, tok, clk.Now(), nil))
			require.Equal(t, tt.path, r.URL.EscapedPath(), "the request reaches the verifier as sent")
			_, err := v.Verify(r)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

// TestDPoPIatBounds: a proof may be DPoPProofWindow plus ClockSkew old,
// but only DPoPFutureSkew ahead of the server's clock.
func TestDPoPIatBounds(t *testing.T) {
	tests := []struct {
		name    string
		iat     time.Duration // from now
		wantErr error
	}{
		{name: "future_iat_within_skew", iat: 10 * time.Second},
		{name: "future_iat_past_skew", iat: 11 * time.Second, wantErr: ErrDPoPProof},
		{name: "future_iat_within_old_window", iat: 80 * time.Second, wantErr: ErrDPoPProof},
		{name: "old_iat_within_window", iat: -89 * time.Second},
		{name: "old_iat_past_window", iat: -91 * time.Second, wantErr: ErrDPoPProof},
	}
	issuerKey := newSigner(t, jwa.ES256, "es-1")
	device := newSigner(t, jwa.ES256, "device")
	tok := issuerKey.token(t, map[string]any{"cnf": map[string]any{"jkt": jkt(t, device)}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(t0)
			v, _ := newTestVerifier(t, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = apiBase }, issuerKey)
			_, err := v.Verify(dpopRequest("GET", "/b", tok, proof(t, device, "GET", apiBase+"/b", tok, clk.Now().Add(tt.iat), nil)))
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}

	t.Run("future_skew_configurable", func(t *testing.T) {
		clk := testkit.NewClock(t0)
		v, _ := newTestVerifier(t, clk, func(c *Config) { c.DPoP = DPoPAllowed; c.DPoPURL = apiBase; c.DPoPFutureSkew = time.Second }, issuerKey)
		_, err := v.Verify(dpopRequest("GET", "/b", tok, proof(t, device, "GET", apiBase+"/b", tok, clk.Now().Add(2*time.Second), nil)))
		require.ErrorIs(t, err, ErrDPoPProof)
		_, err = v.Verify(dpopRequest("GET", "/b", tok, proof(t, device, "GET", apiBase+"/b", tok, clk.Now().Add(time.Second), nil)))
		require.NoError(t, err)
	})
}
