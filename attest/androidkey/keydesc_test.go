package androidkey

import (
	"encoding/asn1"
	"testing"

	"github.com/stretchr/testify/require"
)

// el is one [tag] EXPLICIT element holding der.
func el(t *testing.T, tag int, v any, params string) []byte {
	t.Helper()
	inner, err := asn1.MarshalWithParams(v, params)
	require.NoError(t, err)
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: inner})
	require.NoError(t, err)
	return out
}

func seq(parts ...[]byte) asn1.RawValue {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body}
}

func kdWith(t *testing.T, level int, sw, hw asn1.RawValue) []byte {
	t.Helper()
	b, err := asn1.Marshal(struct {
		V1   int
		L1   asn1.Enumerated
		V2   int
		L2   asn1.Enumerated
		C, U []byte
		S, H asn1.RawValue
	}{300, asn1.Enumerated(level), 300, asn1.Enumerated(level), []byte("c"), []byte{}, sw, hw})
	require.NoError(t, err)
	return b
}

func rot(t *testing.T, state int) []byte {
	return el(t, 704, struct {
		K []byte
		L bool
		S asn1.Enumerated
		H []byte
	}{make([]byte, 32), true, asn1.Enumerated(state), make([]byte, 32)}, "")
}

// TestKeyDescriptionUnknownTagsTolerated: an unknown tag between known
// ones is skipped and the known ones after it are still read.
func TestKeyDescriptionUnknownTagsTolerated(t *testing.T) {
	hw := seq(el(t, 2, 3, ""), el(t, 9999, []byte("future"), ""), rot(t, 0), el(t, 706, 202610, ""))
	k, err := parseKeyDescription(kdWith(t, 1, seq(), hw))
	require.NoError(t, err)
	require.Equal(t, []int{2, 9999, 704, 706}, k.Hardware.Tags)
	require.Equal(t, 3, k.Algorithm)
	require.Equal(t, 202610, k.OSPatchLevel)
	require.NotNil(t, k.RootOfTrust)
	require.Equal(t, Verified, k.RootOfTrust.BootState)
}

// TestKeyDescriptionMalformedRefused: each malformation is refused with
// ErrKeyDescription and says what was wrong.
func TestKeyDescriptionMalformedRefused(t *testing.T) {
	many := make([]int, maxSetSize+1)
	type pkg struct {
		Name    []byte
		Version int64
	}
	pkgs := make([]pkg, maxPackages+1)
	for i := range pkgs {
		pkgs[i] = pkg{Name: []byte("p"), Version: int64(i)}
	}
	appID, err := asn1.Marshal(struct {
		P []pkg    `asn1:"set"`
		D [][]byte `asn1:"set"`
	}{pkgs, [][]byte{}})
	require.NoError(t, err)
	good := kdWith(t, 1, seq(), seq(rot(t, 0)))
	tests := []struct {
		name string
		give []byte
		want string
	}{
		{"duplicated_root_of_trust", kdWith(t, 1, seq(), seq(rot(t, 0), rot(t, 2))), "tag 704 repeated"},
		{"trailing_data", append(append([]byte{}, good...), 0x05, 0x00), "trailing data"},
		{"oversized_extension", make([]byte, maxKeyDescription+1), "extension of"},
		{"security_level_out_of_range", kdWith(t, 7, seq(), seq()), "security level"},
		{"boot_state_out_of_range", kdWith(t, 1, seq(), seq(rot(t, 9))), "verified boot state"},
		{"purpose_set_too_large", kdWith(t, 1, seq(), seq(el(t, 1, many, "set"))), "set of"},
		{"too_many_packages", kdWith(t, 1, seq(el(t, 709, appID, "")), seq()), "attestationApplicationId of"},
		{"no_auth_required_not_null", kdWith(t, 1, seq(), seq(el(t, 503, 1, ""))), "not NULL"},
		{"implicit_tag_element", kdWith(t, 1, seq(), seq([]byte{0x02, 0x01, 0x01})), "explicit context tag"},
		{"wrong_type_in_known_tag", kdWith(t, 1, seq(), seq(el(t, 706, []byte("x"), ""))), "tag 706"},
		{"truncated", good[:len(good)-3], "ErrKeyDescription"},
		{"empty", nil, "ErrKeyDescription"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseKeyDescription(tt.give)
			require.ErrorIs(t, err, ErrKeyDescription)
			if tt.want != "ErrKeyDescription" {
				require.Contains(t, err.Error(), tt.want)
			}
		})
	}
}
