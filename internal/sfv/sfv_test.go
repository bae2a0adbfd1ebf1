package sfv

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dunglas/httpsfv"
	"github.com/stretchr/testify/require"
)

func serializeDict(t *testing.T, d Dictionary) string {
	t.Helper()
	b, err := AppendDictionary(nil, d)
	require.NoError(t, err)
	return string(b)
}

func TestParseDictionary(t *testing.T) {
	tests := []struct {
		name     string
		give     []string
		want     string // canonical serialization; "" means a parse error
		repeated bool
	}{
		{name: "signature_input", give: []string{`sig1=("@method" "@target-uri" "content-digest");created=1618884473;keyid="test-key";nonce="abc"`},
			want: `sig1=("@method" "@target-uri" "content-digest");created=1618884473;keyid="test-key";nonce="abc"`},
		{name: "byte_sequences", give: []string{`sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:YQ==:`},
			want: `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:YQ==:`},
		{name: "unpadded_base64_allowed", give: []string{`a=:YQ:`}, want: `a=:YQ==:`},
		{name: "over_padded_base64", give: []string{`a=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg==:`}},
		{name: "boolean_member_and_params", give: []string{`a, b;x=1;y, c=?0`}, want: `a, b;x=1;y, c=?0`},
		{name: "lines_joined", give: []string{`a=1`, `b=2`}, want: `a=1, b=2`},
		{name: "ows_around_commas", give: []string{"a=1 ,\tb=2"}, want: `a=1, b=2`},
		{name: "repeated_key_last_wins", give: []string{`a=1, b=2, a=3`}, want: `a=3, b=2`, repeated: true},
		{name: "decimal", give: []string{`a=1.5, b=-0.25`}, want: `a=1.5, b=-0.25`},
		{name: "token_and_escapes", give: []string{`a=foo/bar:baz, b="q\"u\\o"`}, want: `a=foo/bar:baz, b="q\"u\\o"`},
		{name: "date_and_display", give: []string{`a=@1659578233, b=%"f%c3%bc"`}, want: `a=@1659578233, b=%"f%c3%bc"`},
		{name: "trailing_comma", give: []string{`a=1,`}},
		{name: "uppercase_key", give: []string{`A=1`}},
		{name: "unterminated_inner_list", give: []string{`a=(1 2`}},
		{name: "unterminated_string", give: []string{`a="x`}},
		{name: "bad_escape", give: []string{`a="\x"`}},
		{name: "control_char", give: []string{"a=\"\x01\""}},
		{name: "integer_too_long", give: []string{`a=1234567890123456`}},
		{name: "decimal_too_many_fraction_digits", give: []string{`a=1.2345`}},
		{name: "decimal_trailing_dot", give: []string{`a=1.`}},
		{name: "display_uppercase_hex", give: []string{`a=%"%C3%BC"`}},
		{name: "display_invalid_utf8", give: []string{`a=%"%ff"`}},
		{name: "integer_fifteen_digits", give: []string{`a=123456789012345, b=-123456789012345`}, want: `a=123456789012345, b=-123456789012345`},
		{name: "decimal_longest", give: []string{`a=123456789012.125`}, want: `a=123456789012.125`},
		{name: "decimal_whole_too_long", give: []string{`a=1234567890123.1`}},
		{name: "minus_alone", give: []string{`a=-`}},
		{name: "minus_not_digit", give: []string{`a=-x`}},
		{name: "two_dots", give: []string{`a=1.2.3`}},
		{name: "long_string_with_escape", give: []string{`a="0123456789abcdef\"0123456789"`}, want: `a="0123456789abcdef\"0123456789"`},
		{name: "long_string_control_char", give: []string{"a=\"0123456789abc\x7f0123456789\""}},
		{name: "long_string_non_ascii", give: []string{"a=\"0123456789abcdef\xc3\xbc\""}},
		{name: "byte_sequence_with_lf", give: []string{"a=:YWJj\nZGVm:"}},
		{name: "byte_sequence_with_cr", give: []string{"a=:YWJj\rZGVm:, b=1"}},
		{name: "byte_sequence_with_space", give: []string{"a=:YWJj ZGVm:"}},
		{name: "byte_sequence_unterminated", give: []string{"a=:YWJjZGVm"}},
		{name: "empty_is_empty", give: []string{``}, want: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDictionary(tt.give)
			if tt.want == "" && tt.name != "empty_is_empty" {
				require.ErrorIs(t, err, ErrSyntax)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, serializeDict(t, d))
			require.Equal(t, tt.repeated, d.Repeated)
		})
	}
}

func TestSerializeRejectsBadValues(t *testing.T) {
	bad := []BareItem{
		{Kind: Integer, Int: 1_000_000_000_000_000},
		{Kind: String, Str: "line\nbreak"},
		{Kind: Token, Str: "1abc"},
		{Kind: Decimal, Dec: 1e13},
		{Kind: DisplayString, Str: "\xff"},
		{Kind: 0},
	}
	for _, v := range bad {
		_, err := AppendBareItem(nil, v)
		require.ErrorIs(t, err, ErrSyntax, "%+v", v)
	}
	_, err := AppendParams(nil, Params{{Key: "Bad"}})
	require.ErrorIs(t, err, ErrSyntax)
	b, err := AppendBareItem(nil, BareItem{Kind: Decimal, Dec: 2.0625})
	require.NoError(t, err)
	require.Equal(t, "2.062", string(b), "rounded half to even")
}

// FuzzDifferential checks the parser against an independent implementation
// (github.com/dunglas/httpsfv, itself tested against the httpwg suite):
// both accept or both reject, and accepted values serialize the same.
func FuzzDifferential(f *testing.F) {
	for _, s := range []string{
		`sig1=("@method" "@target-uri");created=1;keyid="k";nonce="n"`,
		`sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`,
		`a, b;x=1;y, c=?0, d=1.5, e=-7, f=tok/en, g=@12, h=%"%c3%bc"`,
		`"api";q=100;w=60`, `(1 2);a, "x"`, `a=(  ), b=()`, `a="\"", b=:YQ:`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours, err1 := ParseDictionary([]string{s})
		ref, err2 := httpsfv.UnmarshalDictionary([]string{s})
		if (err1 == nil) != (err2 == nil) && !unpadded(err2) {
			t.Fatalf("dictionary %q: ours %v, reference %v", s, err1, err2)
		}
		if err1 == nil {
			for _, m := range ours.Members {
				checkRaw(t, s, m.Member)
			}
		}
		checkReused(t, s, ours, err1)
		if err1 == nil && err2 == nil {
			a, errA := AppendDictionary(nil, ours)
			b, errB := httpsfv.Marshal(ref)
			if (errA == nil) != (errB == nil) || errA == nil && string(a) != b {
				t.Fatalf("dictionary %q: ours %q (%v), reference %q (%v)", s, a, errA, b, errB)
			}
		}
		lo, err1 := ParseList([]string{s})
		lr, err2 := httpsfv.UnmarshalList([]string{s})
		if (err1 == nil) != (err2 == nil) && !unpadded(err2) {
			t.Fatalf("list %q: ours %v, reference %v", s, err1, err2)
		}
		if err1 == nil {
			for _, m := range lo {
				checkRaw(t, s, m)
			}
		}
		if err1 == nil && err2 == nil {
			a, errA := AppendList(nil, lo)
			b, errB := httpsfv.Marshal(lr)
			if (errA == nil) != (errB == nil) || errA == nil && string(a) != b {
				t.Fatalf("list %q: ours %q (%v), reference %q (%v)", s, a, errA, b, errB)
			}
		}
		io, err1 := ParseItem([]string{s})
		ir, err2 := httpsfv.UnmarshalItem([]string{s})
		if (err1 == nil) != (err2 == nil) && !unpadded(err2) {
			t.Fatalf("item %q: ours %v, reference %v", s, err1, err2)
		}
		if err1 == nil && err2 == nil {
			a, errA := AppendItem(nil, &io)
			b, errB := httpsfv.Marshal(ir)
			if (errA == nil) != (errB == nil) || errA == nil && string(a) != b {
				t.Fatalf("item %q: ours %q (%v), reference %q (%v)", s, a, errA, b, errB)
			}
		}
	})
}

// checkReused fails unless a Scratch that parsed other values before,
// including s itself, failed or not, parses s as a fresh one does (ours,
// err): a value left over in an arena must never show through.
func checkReused(t *testing.T, s string, ours Dictionary, err error) {
	t.Helper()
	var sc Scratch
	for _, dirty := range []string{
		`a=("x";p=1;q="y" :eA==: tok;b), b=?0;c=1.5;d=@1, e="\"", f=%"%c3%bc";g=-12`,
		s, // leaves what it parsed, or part of it when it fails, in the arenas
	} {
		_, _ = sc.ParseDictionary([]string{dirty})
		_, _ = sc.ParseDictionary([]string{dirty, s})
	}
	for _, reset := range []bool{false, true} {
		if reset {
			sc.Reset()
		}
		d, err2 := sc.ParseDictionary([]string{s})
		if (err == nil) != (err2 == nil) {
			t.Fatalf("%q: fresh %v, reused %v", s, err, err2)
		}
		if err == nil {
			a, errA := AppendDictionary(nil, ours)
			b, errB := AppendDictionary(nil, d)
			if (errA == nil) != (errB == nil) || string(a) != string(b) {
				t.Fatalf("%q: fresh %q (%v), reused %q (%v)", s, a, errA, b, errB)
			}
			for i := range d.Members {
				if d.Members[i].Raw != ours.Members[i].Raw {
					t.Fatalf("%q: fresh Raw %q, reused %q", s, ours.Members[i].Raw, d.Members[i].Raw)
				}
			}
		}
	}
}

// checkRaw fails unless m.Raw, when set, is m's serialization.
func checkRaw(t *testing.T, in string, m Member) {
	t.Helper()
	if m.Raw == "" {
		return
	}
	b, err := AppendMember(nil, m)
	if err != nil || string(b) != m.Raw {
		t.Fatalf("%q: Raw %q, serialization %q (%v)", in, m.Raw, b, err)
	}
}

// TestRaw: Member.Raw is the member's text when that is canonical, and
// empty for each kind of text that is not.
func TestRaw(t *testing.T) {
	canonical := []string{
		`("@method" "@target-uri" "content-digest");created=1618884473;keyid="k";nonce="a\"b"`,
		`()`, `(a b);x`, `tok/en;a;b=?0`, `"x";q=0`, `-7`, `0`, `@12`, `?1`, `?0`,
	}
	for _, c := range canonical {
		d, err := ParseDictionary([]string{"m=" + c})
		require.NoError(t, err, c)
		require.Equal(t, c, d.Members[0].Raw, "canonical %s", c)
		checkRaw(t, c, d.Members[0].Member)
		l, err := ParseList([]string{c + ", x"})
		require.NoError(t, err, c)
		require.Equal(t, c, l[0].Raw, "list member %s", c)
	}
	other := []string{
		`( a)`, `(a )`, `(a  b)`, `(a);x=?1`, `(a); x=1`, `(a);x=1;x=2`, `a;x=1;x=2`,
		`007`, `-0`, `1.5`, `1.50`, `:YQ==:`, `%"a"`, `("a";b=?1)`, `(01)`,
	}
	for _, c := range other {
		d, err := ParseDictionary([]string{"m=" + c})
		require.NoError(t, err, c)
		require.Empty(t, d.Members[0].Raw, "not canonical: %s", c)
	}
	d, err := ParseDictionary([]string{"a, b=1"})
	require.NoError(t, err)
	require.Empty(t, d.Members[0].Raw, "a bare key has no member text")
	require.Equal(t, "1", d.Members[1].Raw)
}

// unpadded reports a reference failure on base64 without padding, which
// RFC 9651 §4.2.7 asks parsers to accept and the reference refuses.
func unpadded(err error) bool {
	return err != nil && strings.Contains(err.Error(), "base64")
}

func TestScratch(t *testing.T) {
	inputs := []string{
		`sig1=("@method" "@authority" "@path" "content-digest";sf);created=1618884473;keyid="k";nonce="n"`,
		`sig1=:dGhpcyBpcyBhIDMyIGJ5dGUgc2lnbmF0dXJlIHZhbHVlIQ==:, sig2=:YQ==:`,
		`sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`,
		`a=(1 2 3 4 5 6 7 8 9 10 11 12);x;y;z;w;v, b=?0;p=1, c=(), d`,
	}
	var s Scratch
	check := func(t *testing.T) {
		// Values parsed earlier stay intact while later parses grow the
		// arenas.
		var got []Dictionary
		for _, in := range inputs {
			d, err := s.ParseDictionary([]string{in})
			require.NoError(t, err)
			got = append(got, d)
		}
		for i, d := range got {
			require.Equal(t, inputs[i], serializeDict(t, d))
		}
		// Appending to a parsed slice must not write over its neighbour.
		items := got[0].Members[0].Items
		_ = append(items, Item{Value: BareItem{Kind: Integer, Int: 99}})
		_ = append(got[1].Members[0].Item.Value.Bytes, 'x', 'x', 'x')
		for i, d := range got {
			require.Equal(t, inputs[i], serializeDict(t, d))
		}
	}
	t.Run("fresh", check)
	s.Reset()
	t.Run("reused", check)
	s.Reset()
	allocs := testing.AllocsPerRun(100, func() {
		s.Reset()
		for _, in := range inputs[:3] {
			if _, err := s.ParseDictionary([]string{in}); err != nil {
				panic(err)
			}
		}
	})
	if !raceEnabled {
		require.Zero(t, allocs, "a reused Scratch allocates nothing")
	}
	_, err := s.ParseDictionary([]string{`a=:YQ=:`})
	require.ErrorIs(t, err, ErrSyntax)
}

// TestManyKeys: dictionaries and parameter lists longer than linearKeys
// find repeated keys through keyIndex; the result (the last value in the
// first key's place) is the reference parser's, and a field of fifty
// thousand distinct keys parses (in linear time: it took seconds when the
// repeated-key check was quadratic).
func TestManyKeys(t *testing.T) {
	var dict, params strings.Builder
	for i := range 40 {
		fmt.Fprintf(&dict, "k%d=%d, ", i, i)
		fmt.Fprintf(&params, ";p%d=%d", i, i)
	}
	for i, s := range []string{
		dict.String() + "k5=99, k39=?0, k0",
		"a=()" + params.String() + ";p5=99;p39;p0=?0",
		"a=x" + params.String() + ";p20=\"s\"",
	} {
		ours, err := ParseDictionary([]string{s})
		require.NoError(t, err)
		require.Equal(t, i == 0, ours.Repeated, "Repeated is about dictionary keys")
		ref, err := httpsfv.UnmarshalDictionary([]string{s})
		require.NoError(t, err)
		want, err := httpsfv.Marshal(ref)
		require.NoError(t, err)
		require.Equal(t, want, serializeDict(t, ours))
	}
	d, err := ParseDictionary([]string{dict.String() + "k5=99, k39=?0, k0"})
	require.NoError(t, err)
	require.Len(t, d.Members, 40)
	m := d.Get("k5")
	require.NotNil(t, m)
	require.Equal(t, int64(99), m.Item.Value.Int)
	require.Nil(t, d.Get("k40"))

	var big strings.Builder
	for i := range 50_000 {
		fmt.Fprintf(&big, "k%d;p%d, ", i, i)
	}
	d, err = ParseDictionary([]string{big.String() + "last"})
	require.NoError(t, err)
	require.Len(t, d.Members, 50_001)
	require.False(t, d.Repeated)
}
