package signing

import (
	"errors"

	"github.com/dunglas/httpsfv"
)

// parseDictionary parses a structured-field dictionary (RFC 8941 §3.2)
// and refuses one that repeats a key. RFC 8941 keeps the last value of a
// repeated key, which would let a second Signature-Input member silently
// replace the first; for signatures a repeated label is an attack, so it
// is an error here.
func parseDictionary(lines []string) (*httpsfv.Dictionary, error) {
	d, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil {
		return nil, err
	}
	if n := countMembers(lines); n != len(d.Names()) {
		return nil, errors.New("repeated dictionary key")
	}
	return d, nil
}

// countMembers counts the top-level members of a dictionary that already
// parsed: the commas outside strings, byte sequences and inner lists, plus
// one per field line.
func countMembers(lines []string) int {
	n := 0
	for _, l := range lines {
		n++
		inString, inBytes, depth := false, false, 0
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case inString:
				if c == '\\' {
					i++
				} else if c == '"' {
					inString = false
				}
			case inBytes:
				if c == ':' {
					inBytes = false
				}
			case c == '"':
				inString = true
			case c == ':':
				inBytes = true
			case c == '(':
				depth++
			case c == ')':
				depth--
			case c == ',' && depth == 0:
				n++
			}
		}
	}
	return n
}
