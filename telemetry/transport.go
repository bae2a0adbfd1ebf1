package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// NewTransport returns an http.RoundTripper that adds the correlation ID
// and the W3C traceparent (and tracestate) of the request's context to
// outgoing requests, then calls base (nil base: http.DefaultTransport).
//
// The caller's request is never modified: when there is something to add,
// the request is cloned first. Headers the caller already set are kept.
// The ID header is the one the [Observer] that handled the incoming
// request uses.
func NewTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base}
}

type transport struct {
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	sc, st := spanContextOf(ctx)
	addID := st != nil && len(req.Header[st.obs.header]) == 0
	addTrace := sc.IsValid() && req.Header.Get("Traceparent") == ""
	if !addID && !addTrace {
		return t.base.RoundTrip(req)
	}
	r2 := req.Clone(ctx)
	if r2.Header == nil {
		r2.Header = make(http.Header)
	}
	if addID {
		r2.Header[st.obs.header] = []string{st.id}
	}
	if addTrace {
		propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(ctx, sc), propagation.HeaderCarrier(r2.Header))
	}
	return t.base.RoundTrip(r2)
}
