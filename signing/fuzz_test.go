package signing

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apiguard/apiguard/internal/sfv"
)

var sentinels = []error{ErrMissingSignature, ErrMalformed, ErrProfile, ErrUnknownKey, ErrRevokedKey,
	ErrAlgorithm, ErrSignature, ErrDigest, ErrBodyTooLarge, ErrExpired, ErrFuture, ErrStale, ErrReplay,
	ErrReplayFloor, ErrStoreUnavailable}

// FuzzVerify feeds arbitrary Signature-Input, Signature and Content-Digest
// fields and bodies: every rejection is a sentinel, nothing panics, and
// nothing is accepted without the key.
func FuzzVerify(f *testing.F) {
	v, clk, _ := newTestVerifier(f, nil)
	s := signer(clk, "device-a", secretA)
	s.Rand = strings.NewReader(strings.Repeat("n", 16)) // the same seed in every fuzz worker
	good := signed(f, s, "POST", api+"/v1/pay?x=1", `{"a":1}`, map[string]string{"Authorization": "Bearer t"})
	f.Add(good.Header.Get("Signature-Input"), good.Header.Get("Signature"), good.Header.Get("Content-Digest"), `{"a":1}`)
	f.Add(`sig1=("@query-param";name="x" "@method");created=1;keyid="device-a";nonce="n"`, `sig1=:AAAA:`, `sha-512=:AAAA:`, "")
	f.Add(`a=("x";sf "y";key="k" "z";bs), a=()`, `a=:=:, b=?1`, `sha-256=("x")`, "body")
	f.Add(`sig1=("@method" "@target-uri");created=99999999999999;keyid="";nonce=""`, `sig1=:`, ``, "")
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
// over a fixed request: it must fail cleanly or produce a base with one
// line per component, the same whether @signature-params comes from the
// parsed text or is serialized again.
func FuzzSignatureBase(f *testing.F) {
	f.Add(`("@method" "@target-uri" "@authority" "@scheme" "@path" "@query" "@request-target")`)
	f.Add(`("@query-param";name="x" "content-type" "x-dict";key="a" "x-dict";sf "x-dict";bs)`)
	f.Add(`("@status" "@query-param" "X-Upper" "x-missing";req)`)
	f.Add(`("@authority" "host" "content-type" "@method" "@target-uri" "x-dict")`)
	f.Fuzz(func(t *testing.T, list string) {
		l, err := sfv.ParseList([]string{list})
		if err != nil || len(l) != 1 || !l[0].IsInnerList {
			return
		}
		inner := l[0]
		r := httptest.NewRequest("GET", api+"/v1/a%20b?x=1&y=%C3%A9", nil)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Dict", `a=1, b="two";p, c=(x y)`)
		base, err := signatureBase(nil, r, target{scheme: "https", authority: "api.example.com"}, inner.Items, inner.Params, inner.Raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error outside ErrMalformed: %v", err)
			}
			return
		}
		if got, want := strings.Count(string(base), "\n"), len(inner.Items); got != want {
			t.Fatalf("%d lines for %d components:\n%s", got, want, base)
		}
		// The parser's text of the list, when it has one, is what the
		// serializer writes: the base is the same either way.
		reserialized, err := signatureBase(nil, r, target{scheme: "https", authority: "api.example.com"}, inner.Items, inner.Params, "")
		if err != nil || string(reserialized) != string(base) {
			t.Fatalf("base from the parsed text differs from the reserialized one (%v):\n%s\n%s", err, base, reserialized)
		}
		// Compiled, as listCache keeps a list that built a base, the
		// list builds the same base, from this request and from one with
		// a field gone, one with a line break and one with another method,
		// path and value: or fails as signatureBase does.
		comps := compileComponents(inner.Items)
		if comps == nil {
			t.Fatalf("a list that built a base does not compile")
		}
		others := []*http.Request{r}
		for _, mod := range []func(*http.Request){
			func(r *http.Request) { r.Header.Del("Content-Type") },
			func(r *http.Request) { r.Header.Set("Content-Type", "a\nb") },
			func(r *http.Request) {
				r.Method = "PUT"
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery = "/other", "", ""
				r.Header["Content-Type"] = []string{" x ", "\ty"}
			},
		} {
			o := httptest.NewRequest("GET", api+"/v1/a%20b?x=1&y=%C3%A9", nil)
			o.Header = r.Header.Clone()
			mod(o)
			others = append(others, o)
		}
		for _, o := range others {
			for _, raw := range []string{inner.Raw, ""} {
				want, errW := signatureBase(nil, o, target{scheme: "https", authority: "api.example.com"}, inner.Items, inner.Params, raw)
				got, errG := signatureBaseCompiled(nil, o, target{scheme: "https", authority: "api.example.com"}, inner.Items, comps, inner.Params, raw)
				if (errW == nil) != (errG == nil) || string(got) != string(want) {
					t.Fatalf("compiled base differs (%v, %v):\n%s\n%s", errG, errW, got, want)
				}
				if errG != nil && !errors.Is(errG, ErrMalformed) {
					t.Fatalf("compiled base: error outside ErrMalformed: %v", errG)
				}
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
