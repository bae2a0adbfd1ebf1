package signing

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"

	"github.com/dunglas/httpsfv"
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
func checkDigest(lines []string, body []byte) error {
	d, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil {
		return fmt.Errorf("%w: Content-Digest is not a dictionary", ErrMalformed)
	}
	checked := 0
	for _, name := range d.Names() {
		newHash, ok := digestAlgorithms[name]
		if !ok {
			continue
		}
		m, _ := d.Get(name)
		it, ok := m.(httpsfv.Item)
		want, isBytes := it.Value.([]byte)
		if !ok || !isBytes {
			return fmt.Errorf("%w: Content-Digest %s is not a byte sequence", ErrMalformed, name)
		}
		h := newHash()
		h.Write(body)
		if subtle.ConstantTimeCompare(h.Sum(nil), want) != 1 {
			return fmt.Errorf("%w: %s", ErrDigest, name)
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
	d := httpsfv.NewDictionary()
	d.Add("sha-256", httpsfv.NewItem(sum[:]))
	s, _ := httpsfv.Marshal(d)
	return s
}
