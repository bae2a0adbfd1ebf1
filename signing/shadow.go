package signing

import (
	"bytes"
	"io"
	"net/http"
)

// shadowBody is the body of a request that a Verifier in shadow mode
// checks: it keeps what the check reads, so that a refused request
// reaches the next handler with its whole body.
type shadowBody struct {
	rc   io.ReadCloser
	seen []byte
}

func (b *shadowBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.seen = append(b.seen, p[:n]...)
	return n, err
}

func (b *shadowBody) Close() error { return b.rc.Close() }

// watchBody returns a shallow copy of r whose body keeps what is read
// from it, or r itself and nil when r has no body.
func watchBody(r *http.Request) (*http.Request, *shadowBody) {
	if !hasBody(r) {
		return r, nil
	}
	b := &shadowBody{rc: r.Body}
	r2 := *r
	r2.Body = b
	return &r2, b
}

// restore returns r (a shallow copy when b is not nil) with a body that
// reads what the check read and then the rest of the original body.
func (b *shadowBody) restore(r *http.Request) *http.Request {
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
