package signing

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/internal/sfv"
	"github.com/stretchr/testify/require"
)

var sentinels = []error{ErrMissingSignature, ErrMalformed, ErrProfile, ErrUnknownKey, ErrRevokedKey,
	ErrAlgorithm, ErrSignature, ErrDigest, ErrBodyTooLarge, ErrExpired, ErrFuture, ErrStale, ErrReplay,
	ErrReplayFloor, ErrStoreUnavailable}

// FuzzVerify feeds arbitrary Signature-Input, Signature and Content-Digest
// fields and bodies: every rejection is a sentinel, nothing panics, and
// nothing is accepted without the key. The key store holds HMAC secrets
// and device keys (ec-1, ed-1).
func FuzzVerify(f *testing.F) {
	d := newDeviceKeys(f)
	d.keys["device-b"] = Key{ID: "device-b", Algorithm: AlgHMACSHA256, Secret: secretB}
	v, clk, _ := newTestVerifier(f, func(c *Config) { c.Keys = d.store() })
	s := signer(clk, "device-a", secretA)
	s.Rand = strings.NewReader(strings.Repeat("n", 16)) // the same seed in every fuzz worker
	good := signed(f, s, "POST", api+"/v1/pay?x=1", `{"a":1}`, map[string]string{"Authorization": "Bearer t"})
	f.Add(good.Header.Get("Signature-Input"), good.Header.Get("Signature"), good.Header.Get("Content-Digest"), `{"a":1}`)
	f.Add(`sig1=("@query-param";name="x" "@method");created=1;keyid="device-a";nonce="n"`, `sig1=:AAAA:`, `sha-512=:AAAA:`, "")
	f.Add(`a=("x";sf "y";key="k" "z";bs), a=()`, `a=:=:, b=?1`, `sha-256=("x")`, "body")
	f.Add(`sig1=("@method" "@target-uri");created=99999999999999;keyid="";nonce=""`, `sig1=:`, ``, "")
	sig64 := "sig1=:" + b64std(make([]byte, 64)) + ":"
	f.Add(`sig1=("@method" "@target-uri" "authorization");created=1772366400;keyid="ec-1";nonce="n";alg="ecdsa-p256-sha256"`, sig64, "", "")
	f.Add(`sig1=("@method" "@target-uri" "authorization");created=1772366400;keyid="ed-1";nonce="n"`, sig64, "", "")
	f.Fuzz(func(t *testing.T, input, sig, digest, body string) {
		r := httptest.NewRequest("POST", api+"/v1/pay?x=1", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer t")
		r.Header["Signature-Input"] = []string{input}
		r.Header["Signature"] = []string{sig}
		r.Header["Content-Digest"] = []string{digest}
		r.Header["X-Dict"] = []string{input}
		res, err := v.Verify(r)
		if err != nil && res != nil {
			t.Fatalf("a Result beside an error: %+v, %v", res, err)
		}
		if err == nil {
			// Only the seed signed with the key may pass, once.
			if input != good.Header.Get("Signature-Input") {
				t.Fatalf("accepted a forged signature: %q %q", input, sig)
			}
			return
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error outside the sentinels: %v", err)
	})
}

// FuzzSignatureBase builds signature bases for arbitrary component lists
// over fixed requests, among them RFC 9421's test request (B.2): it must
// fail cleanly or produce a base with one line per component, the same
// whether @signature-params comes from the parsed text or is serialized
// again, and the same as referenceBase's, or fail where it fails. The
// list is compiled once and built from for every request, as a list
// listCache remembers is.
func FuzzSignatureBase(f *testing.F) {
	f.Add(`("@method" "@target-uri" "@authority" "@scheme" "@path" "@query" "@request-target")`)
	f.Add(`("@query-param";name="x" "content-type" "x-dict";key="a" "x-dict";sf "x-dict";bs)`)
	f.Add(`("@status" "@query-param" "X-Upper" "x-missing";req)`)
	f.Add(`("@authority" "host" "content-type" "@method" "@target-uri" "x-dict")`)
	f.Add(`("@query-param";name="Pet" "@query-param";name="param" "content-digest";sf "content-digest";key="sha-512" "content-length";bs "date")`)
	f.Add(`("x-dict";key="c" "x-dict";key="b" "x-dict";sf=?0;bs=?0 "@query-param";name="y" "x-dict" "x-dict")`)
	vec := rfc9421Request(f)
	f.Add(vec.Input[strings.IndexByte(vec.Input, '=')+1:])
	f.Fuzz(func(t *testing.T, list string) {
		l, err := sfv.ParseList([]string{list})
		if err != nil || len(l) != 1 || !l[0].IsInnerList {
			return
		}
		inner := l[0]
		api := target{scheme: "https", authority: "api.example.com"}
		r := httptest.NewRequest("GET", "https://api.example.com/v1/a%20b?x=1&y=%C3%A9", nil)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Dict", `a=1, b="two";p, c=(x y)`)
		type request struct {
			r *http.Request
			t target
		}
		requests := []request{{r, api}}
		for _, mod := range []func(*http.Request){
			func(r *http.Request) { r.Header.Del("Content-Type") },
			func(r *http.Request) { r.Header.Set("Content-Type", "a\nb") },
			func(r *http.Request) {
				r.Method = "PUT"
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery = "/other", "", ""
				r.Header["Content-Type"] = []string{" x ", "\ty"}
			},
		} {
			o := httptest.NewRequest("GET", "https://api.example.com/v1/a%20b?x=1&y=%C3%A9", nil)
			o.Header = r.Header.Clone()
			mod(o)
			requests = append(requests, request{o, api})
		}
		requests = append(requests, request{vec.request(), target{scheme: "http", authority: "example.com"}})

		var cl componentList
		compileErr := cl.compile(inner.Items)
		if compileErr != nil && !errors.Is(compileErr, ErrMalformed) {
			t.Fatalf("compile: error outside ErrMalformed: %v", compileErr)
		}
		for _, q := range requests {
			want, errW := referenceBase(q.r, q.t, inner.Items, inner.Params)
			if compileErr != nil {
				if errW == nil {
					t.Fatalf("the list does not compile (%v), the reference builds:\n%s", compileErr, want)
				}
				continue
			}
			base, err := signatureBase(nil, q.r, q.t, &cl, inner.Params, inner.Raw)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error outside ErrMalformed: %v", err)
				}
				if errW == nil {
					t.Fatalf("base fails (%v), the reference builds:\n%s", err, want)
				}
				continue
			}
			if got, want := strings.Count(string(base), "\n"), len(inner.Items); got != want {
				t.Fatalf("%d lines for %d components:\n%s", got, want, base)
			}
			// The parser's text of the list, when it has one, is what the
			// serializer writes: the base is the same either way.
			reserialized, err := signatureBase(nil, q.r, q.t, &cl, inner.Params, "")
			if err != nil || string(reserialized) != string(base) {
				t.Fatalf("base from the parsed text differs from the reserialized one (%v):\n%s\n%s", err, base, reserialized)
			}
			if errW != nil || string(base) != want {
				t.Fatalf("base differs from the reference (%v):\n%s\n%s", errW, base, want)
			}
		}
	})
}

// FuzzListCache: a Signature-Input line read through a remembered list
// (listCache) parses as the parser reads it whole: the same label, items,
// parameters and Raw text, and never a line the parser refuses. learned
// populates the cache; line is then looked up.
func FuzzListCache(f *testing.F) {
	const list = `sig1=("@method" "@target-uri" "content-digest")`
	f.Add(list+`;created=1;keyid="k";nonce="n"`, list+`;created=2;keyid="k";nonce="m";alg="hmac-sha256"`)
	f.Add(list+`;created=1`, list+`;created=1, sig2=("@method")`)
	f.Add(list, list+`;created=01;x=?1; y;tag="t"`)
	f.Add(`sig1=("x)" "@method");created=1`, `sig1=("x)" "@method");created=2`)
	f.Add(`  sig1=("a";sf "b";key="k");created=1`, `  sig1=("a";sf "b";key="k");created=1 `)
	f.Add(list+`;created=1`, list+`;created=1;created=2;a=:YQ==:;b=1.5;c=%"x"`)
	f.Add(list+`;created=1`, list+`;created=1;`)
	f.Fuzz(func(t *testing.T, learned, line string) {
		var c listCache
		if d, err := sfv.ParseDictionary([]string{learned}); err == nil && len(d.Members) == 1 {
			c.remember(learned, d.Members[0].Key)
		}
		e := c.lookup(line)
		if e == nil {
			return
		}
		var sc sfv.Scratch
		got, ok := parseCached(&sc, line, e)
		whole, err := sfv.ParseDictionary([]string{line})
		if !ok {
			return // the parser reads it instead
		}
		if err != nil || len(whole.Members) != 1 || whole.Repeated {
			t.Fatalf("%q: read through the cache, but the parser says %v (%d members)", line, err, len(whole.Members))
		}
		want := whole.Members[0]
		if want.Key != e.label || !want.IsInnerList {
			t.Fatalf("%q: label %q, parser %q", line, e.label, want.Key)
		}
		a, errA := sfv.AppendInnerList(nil, got.Items, got.Params)
		b, errB := sfv.AppendInnerList(nil, want.Items, want.Params)
		if (errA == nil) != (errB == nil) || string(a) != string(b) {
			t.Fatalf("%q: through the cache %q (%v), parser %q (%v)", line, a, errA, b, errB)
		}
		if got.Raw != want.Raw {
			t.Fatalf("%q: Raw %q through the cache, %q from the parser", line, got.Raw, want.Raw)
		}
	})
}

// FuzzContentDigest: checkDigest, with its shortcut for the canonical
// one-member sha-256 shape, decides as its plain twin checkDigestParsed
// does, for any field line and body, with the same kind of error.
func FuzzContentDigest(f *testing.F) {
	f.Add("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", []byte(`{"hello": "world"}`))
	f.Add(ContentDigest([]byte("x")), []byte("x"))
	f.Add(ContentDigest([]byte("x")), []byte("y"))
	f.Add("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE:=", []byte(""))
	f.Add("sha-256=:"+strings.Repeat("A", 44)+":", []byte(""))
	f.Fuzz(func(t *testing.T, line string, body []byte) {
		var a, b sfv.Scratch
		got, want := checkDigest(&a, []string{line}, body), checkDigestParsed(&b, []string{line}, body, nil)
		if (got == nil) != (want == nil) || errors.Is(got, ErrDigest) != errors.Is(want, ErrDigest) ||
			errors.Is(got, ErrMalformed) != errors.Is(want, ErrMalformed) {
			t.Fatalf("%q: shortcut %v, parsed %v", line, got, want)
		}
	})
}

// FuzzMACCache: the cache of keyed HMAC states answers as a new HMAC
// does, over any sequence of key IDs, secrets and messages (slots reused,
// secrets rotated under one key ID).
func FuzzMACCache(f *testing.F) {
	f.Add([]byte("\x00\x01\x02\x00\x01"), []byte("message"))
	f.Add([]byte("\x05\x05\x05\x05"), []byte(""))
	f.Fuzz(func(t *testing.T, ops []byte, msg []byte) {
		c := newMACCache()
		for i, op := range ops {
			keyID := "device-" + strconv.Itoa(int(op&3))
			secret := bytes.Repeat([]byte{op >> 2}, 32)
			m := append(msg, byte(i))
			sum := hmac.New(sha256.New, secret)
			sum.Write(m)
			good := sum.Sum(nil)
			if !c.equal(keyID, secret, m, good) {
				t.Fatalf("op %d: the cache refused the HMAC of %s", i, keyID)
			}
			bad := append([]byte(nil), good...)
			bad[i%len(bad)] ^= 1
			if c.equal(keyID, secret, m, bad) {
				t.Fatalf("op %d: the cache accepted a wrong MAC", i)
			}
		}
	})
}

// TestCommonFieldsCanonical: the table of common field names holds what
// http.CanonicalHeaderKey returns for each, its plain twin.
func TestCommonFieldsCanonical(t *testing.T) {
	for name, canon := range commonFields {
		require.Equal(t, http.CanonicalHeaderKey(name), canon)
	}
}

// FuzzHandlerBody: the body Handler hands next, read from its recycled
// buffer (and read again through GetBody), is the body Verify returns
// from a new slice, its plain twin, for any body, of known length or not.
func FuzzHandlerBody(f *testing.F) {
	f.Add([]byte(`{"amount":100}`), false)
	f.Add(bytes.Repeat([]byte("a"), 70<<10), true)
	f.Add([]byte("x"), true)
	f.Fuzz(func(t *testing.T, body []byte, unknownLength bool) {
		if len(body) == 0 {
			return // no body: nothing to hand on
		}
		request := func(v *Verifier, clk *testClock) *http.Request {
			r := signed(t, signer(clk, "device-a", secretA), "POST", api+"/v1/pay", string(body), nil)
			if unknownLength {
				r.ContentLength = -1
			}
			return r
		}
		v1, clk1, _ := newTestVerifier(t, nil)
		res, err := v1.Verify(request(v1, clk1))
		require.NoError(t, err)
		require.Equal(t, body, res.Body)
		v2, clk2, _ := newTestVerifier(t, nil)
		var got, again []byte
		rec := httptest.NewRecorder()
		v2.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ = io.ReadAll(r.Body)
			rc, err := r.GetBody()
			if err == nil {
				again, _ = io.ReadAll(rc)
			}
		})).ServeHTTP(rec, request(v2, clk2))
		require.Equal(t, res.Body, got, "Handler's body against Verify's")
		require.Equal(t, res.Body, again, "GetBody")
	})
}
