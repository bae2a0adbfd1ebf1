package signing

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"

	"github.com/apiguard/apiguard/internal/sfv"
)

// digestAlgorithms are the Content-Digest algorithms verified (RFC 9530
// §5); others are ignored, as the RFC allows.
var digestAlgorithms = map[string]func() hash.Hash{
	"sha-256": sha256.New,
	"sha-512": sha512.New,
}

// checkDigest verifies a Content-Digest field against body: at least one
// supported algorithm must be present, and every supported one must
// match.
func checkDigest(sc *sfv.Scratch, lines []string, body []byte) error {
	d, err := sc.ParseDictionary(lines)
	if err != nil {
		return fmt.Errorf("%w: Content-Digest is not a dictionary", ErrMalformed)
	}
	checked := 0
	for _, m := range d.Members {
		newHash, ok := digestAlgorithms[m.Key]
		if !ok {
			continue
		}
		if m.IsInnerList || m.Item.Value.Kind != sfv.ByteSequence {
			return fmt.Errorf("%w: Content-Digest %s is not a byte sequence", ErrMalformed, m.Key)
		}
		var sum []byte
		if m.Key == "sha-256" {
			s := sha256.Sum256(body)
			sum = s[:]
		} else {
			h := newHash()
			h.Write(body)
			sum = h.Sum(nil)
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
