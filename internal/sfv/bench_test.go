package sfv

import "testing"

var (
	benchInput = []string{`sig1=("@method" "@authority" "@path" "@query" "content-digest" "authorization" "content-type");created=1764059000;keyid="device-1";nonce="bWFueS1ub25jZS0xMjM0NTY3ODkw";alg="hmac-sha256"`}
	benchSig   = []string{`sig1=:dGhpcyBpcyBhIDMyIGJ5dGUgc2lnbmF0dXJlIHZhbHVlIQ==:`}
)

// BenchmarkParseDictionary parses a typical Signature-Input and Signature.
func BenchmarkParseDictionary(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDictionary(benchInput); err != nil {
			b.Fatal(err)
		}
		if _, err := ParseDictionary(benchSig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScratchParseDictionary is BenchmarkParseDictionary reusing a
// Scratch, as the signature verifier does.
func BenchmarkScratchParseDictionary(b *testing.B) {
	b.ReportAllocs()
	var s Scratch
	for b.Loop() {
		s.Reset()
		if _, err := s.ParseDictionary(benchInput); err != nil {
			b.Fatal(err)
		}
		if _, err := s.ParseDictionary(benchSig); err != nil {
			b.Fatal(err)
		}
	}
}
