package telemetry

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// responseWriter records the status code and keeps http.Flusher,
// http.Hijacker, io.ReaderFrom and Unwrap working for the handlers it
// wraps.
type responseWriter struct {
	w           http.ResponseWriter
	status      int
	wroteHeader bool
}

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

func (rw *responseWriter) WriteHeader(code int) {
	if !rw.wroteHeader {
		// Informational responses (other than 101) precede the real one.
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			rw.w.WriteHeader(code)
			return
		}
		rw.status = code
		rw.wroteHeader = true
	}
	rw.w.WriteHeader(code)
}

func (rw *responseWriter) Write(b []byte) (int, error) {
	if !rw.wroteHeader {
		rw.status = http.StatusOK
		rw.wroteHeader = true
	}
	return rw.w.Write(b)
}

// Flush implements http.Flusher; it does nothing when the underlying
// writer cannot flush.
func (rw *responseWriter) Flush() {
	if !rw.wroteHeader {
		rw.status = http.StatusOK
		rw.wroteHeader = true
	}
	_ = http.NewResponseController(rw.w).Flush()
}

// Hijack implements http.Hijacker, returning http.ErrNotSupported when the
// underlying writer cannot be hijacked.
func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(rw.w).Hijack()
	if err == nil && !rw.wroteHeader {
		rw.status = http.StatusSwitchingProtocols
		rw.wroteHeader = true
	}
	return c, brw, err
}

// ReadFrom keeps the sendfile path of the underlying writer.
func (rw *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if !rw.wroteHeader {
		rw.status = http.StatusOK
		rw.wroteHeader = true
	}
	if rf, ok := rw.w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{rw.w}, src)
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

func (rw *responseWriter) statusCode() int {
	if !rw.wroteHeader {
		return http.StatusOK
	}
	return rw.status
}

// writerOnly hides every method but Write, so io.Copy cannot loop back
// into ReadFrom.
type writerOnly struct{ io.Writer }
