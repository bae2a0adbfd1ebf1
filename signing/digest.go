package signing

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"

	"github.com/apiguard/apiguard/internal/sfv"
)

// checkDigest verifies a Content-Digest field against body: at least one
// supported algorithm must be present, and every supported one must
// match.
func checkDigest(sc *sfv.Scratch, lines []string, body []byte) error {
	var sum256 *[sha256.Size]byte
	if len(lines) == 1 && hasCanonicalSHA256Shape(lines[0]) {
		// The shape that ContentDigest writes, and most clients: one
		// sha-256 member, its digest in padded base64. Such a line
		// parses to the one member holding that digest, so comparing it
		// with the canonical serialization of body's digest decides
		// without parsing. A line that differs goes to the parser, which
		// says why.
		sum := sha256.Sum256(body)
		var enc [canonicalSHA256Len - len(canonicalSHA256Prefix) - 1]byte
		base64.StdEncoding.Encode(enc[:], sum[:])
		// Not a constant-time comparison: nothing here is secret (the
		// client sent the body and its digest, and the signature over the
		// digest is already verified).
		if string(enc[:]) == lines[0][len(canonicalSHA256Prefix):len(lines[0])-1] {
			return nil
		}
		sum256 = &sum
	}
	return checkDigestParsed(sc, lines, body, sum256)
}

// canonicalSHA256Prefix and canonicalSHA256Len are the shape of the
// canonical serialization of a Content-Digest of one sha-256 member.
const (
	canonicalSHA256Prefix = "sha-256=:"
	canonicalSHA256Len    = len(canonicalSHA256Prefix) + 44 + len(":")
)

// hasCanonicalSHA256Shape reports whether line has the length, prefix and
// suffix of a canonical one-member sha-256 Content-Digest.
func hasCanonicalSHA256Shape(line string) bool {
	return len(line) == canonicalSHA256Len && line[:len(canonicalSHA256Prefix)] == canonicalSHA256Prefix && line[len(line)-1] == ':'
}

// checkDigestParsed is checkDigest on the parsed field; sum256, when not
// nil, is body's SHA-256, already computed.
func checkDigestParsed(sc *sfv.Scratch, lines []string, body []byte, sum256 *[sha256.Size]byte) error {
	d, err := sc.ParseDictionary(lines)
	if err != nil {
		return fmt.Errorf("%w: Content-Digest is not a dictionary", ErrMalformed)
	}
	checked := 0
	for _, m := range d.Members {
		// The algorithms verified (RFC 9530 §5); others are ignored, as
		// the RFC allows.
		if m.Key != "sha-256" && m.Key != "sha-512" {
			continue
		}
		if m.IsInnerList || m.Item.Value.Kind != sfv.ByteSequence {
			return fmt.Errorf("%w: Content-Digest %s is not a byte sequence", ErrMalformed, m.Key)
		}
		var sum []byte
		switch {
		case m.Key == "sha-512":
			s := sha512.Sum512(body)
			sum = s[:]
		case sum256 != nil:
			sum = sum256[:]
		default:
			s := sha256.Sum256(body)
			sum256, sum = &s, s[:]
		}
		if subtle.ConstantTimeCompare(sum, m.Item.Value.Bytes) != 1 {
			return fmt.Errorf("%w: %s", ErrDigest, m.Key)
		}
		checked++
	}
	if checked == 0 {
		return fmt.Errorf("%w: no supported algorithm", ErrDigest)
	}
	return nil
}

// ContentDigest returns the Content-Digest field value of body with
// sha-256 (RFC 9530).
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	b, _ := sfv.AppendDictionary(nil, sfv.Dictionary{Members: []sfv.DictMember{{Key: "sha-256",
		Member: sfv.Member{Item: sfv.Item{Value: sfv.BareItem{Kind: sfv.ByteSequence, Bytes: sum[:]}}}}}})
	return string(b)
}
