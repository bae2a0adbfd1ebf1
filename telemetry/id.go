package telemetry

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
	"unsafe"
)

// batchedRand reads crypto/rand in batches of randBatch bytes and hands
// them out in pieces: one call to the system's generator serves about 170
// new IDs. Each byte is handed out once and then zeroed.
type batchedRand struct{}

const randBatch = 4096

type randBuf struct {
	b   [randBatch]byte
	off int
}

var randPool = sync.Pool{New: func() any { return &randBuf{off: randBatch} }}

// Read fills p with random bytes; it never fails.
func (batchedRand) Read(p []byte) (int, error) {
	if len(p) > randBatch/4 {
		return rand.Read(p)
	}
	rb := randPool.Get().(*randBuf)
	if rb.off+len(p) > randBatch {
		_, _ = rand.Read(rb.b[:]) // crypto/rand.Read never returns an error
		rb.off = 0
	}
	n := copy(p, rb.b[rb.off:])
	clear(rb.b[rb.off : rb.off+n])
	rb.off += n
	randPool.Put(rb)
	return n, nil
}

// MaxIDLength is the longest incoming correlation ID that is kept.
const MaxIDLength = 128

// ValidID reports whether id is acceptable as an incoming correlation ID:
// 1 to [MaxIDLength] characters, each of A-Z a-z 0-9 and . _ ~ : -.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '~', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// newID fills b from src and returns its first 128 bits as 32 lower-case
// hex characters, written into out. The other 64 bits are for the caller.
//
// The string shares out's memory instead of copying it, which saves an
// allocation per request: out lives in the request state (on the heap, so
// the string keeps it alive) and is written here once and never again,
// which is what unsafe.String requires.
func newID(src io.Reader, b *[24]byte, out *[32]byte) string {
	if _, err := io.ReadFull(src, b[:]); err != nil {
		// A failing random source must not stop the request; fall back
		// to the operating system's generator, which cannot fail.
		_, _ = rand.Read(b[:])
	}
	hex.Encode(out[:], b[:16])
	return unsafe.String(&out[0], len(out)) // #nosec G103 -- audited: out is heap memory written once, above
}
