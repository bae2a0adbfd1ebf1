// Package shadowbody keeps what a control in shadow mode reads of a
// request body, so that a request it would have refused reaches the next
// handler with its whole body: what the check read, then the rest.
package shadowbody

import (
	"bytes"
	"io"
	"net/http"
)

// Body is the body of a request under a check in shadow mode; it keeps a
// copy of every byte read from it. A nil *Body stands for a request
// without a body.
type Body struct {
	rc   io.ReadCloser
	seen []byte
}

// Read reads from the original body and keeps what it read.
func (b *Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.seen = append(b.seen, p[:n]...)
	return n, err
}

// Close closes the original body.
func (b *Body) Close() error { return b.rc.Close() }

// Watch returns a shallow copy of r whose body is a [Body] over r's, for
// the check to read, or r itself and nil when r has no body (nil or
// http.NoBody). r is not modified.
func Watch(r *http.Request) (*http.Request, *Body) {
	if r.Body == nil || r.Body == http.NoBody {
		return r, nil
	}
	b := &Body{rc: r.Body}
	r2 := *r
	r2.Body = b
	return &r2, b
}

// Restore returns a shallow copy of r whose body reads what the check
// read and then the rest of the original body, or r itself when b is nil.
// Its GetBody is nil. r is not modified.
func (b *Body) Restore(r *http.Request) *http.Request {
	if b == nil {
		return r
	}
	r2 := *r
	r2.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b.seen), b.rc), b.rc}
	r2.GetBody = nil
	return &r2
}
