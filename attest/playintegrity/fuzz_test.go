package playintegrity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/apiguard/apiguard/attest/attesttest"
)

func oneOf(err error, errs []error) bool {
	for _, e := range errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzClassicToken feeds arbitrary JWE strings to the Play Integrity
// classic path.
func FuzzClassicToken(f *testing.F) {
	keys, _ := attesttest.NewPlayKeys()
	tok, _ := keys.Classic(attesttest.Verdict(pkg, "n", "", synthNow.UnixMilli(), certDigest))
	f.Add(tok)
	f.Add("a.b.c.d.e")
	f.Add("eyJhbGciOiJBMjU2S1ciLCJlbmMiOiJBMjU2R0NNIn0....")
	p, err := New(Config{
		Policy:         Policy{PackageName: pkg, CertificateDigests: []string{certDigest}},
		DecryptionKeys: [][]byte{keys.DecryptionKey}, VerificationKeys: []*ecdsaPub{&keys.SigningKey.PublicKey},
		Now: func() time.Time { return synthNow }, Logger: nopLogger(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		_, err := p.verifyClassic(context.Background(), token, "fuzz-nonce")
		if err != nil && !oneOf(err, []error{ErrToken, ErrPolicy, ErrStore}) {
			t.Fatalf("error outside the sentinels: %v", err)
		}
	})
}
