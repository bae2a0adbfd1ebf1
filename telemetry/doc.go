// Package telemetry gives every request a correlation ID, continues W3C
// traces, turns security events into metrics, and takes in reports that
// only mobile clients can see.
//
// It is the outermost middleware: everything inside it, every apiguard
// package and the application, logs with the request's context and gets
// the correlation ID on every record for free.
//
//	obs, err := telemetry.New(telemetry.Config{})
//	if err != nil { ... }
//	slog.SetDefault(slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil))))
//	mux := http.NewServeMux()
//	mux.Handle("POST /reports", obs.ReportHandler())
//	mux.Handle("GET /orders", orders)
//	srv := &http.Server{Handler: obs.Handler(mux)}
//
// # Correlation IDs
//
// The ID travels in [Config.Header] (default X-Request-ID). An incoming ID
// is kept only if it is 1 to 128 characters of [A-Za-z0-9._~:-]; anything
// else (CR or LF, spaces, quotes, non-ASCII, an oversize value, the header
// repeated) is replaced by a fresh random ID and the replacement is logged
// as event=correlation_id_replaced. The ID is echoed on the response, put
// in the request context ([IDFrom]) and forwarded by [NewTransport].
//
// # Security events
//
// A security event is any slog record with a string attribute "event"
// (and usually "reason"), from any package: apiguard's packages do not
// import telemetry to be measured. The handler from [NewLogHandler] adds
// correlation_id, trace_id and span_id to every record logged with a
// request context, and counts events in the apiguard.security.events
// counter with the attributes event and reason only. Device IDs, key IDs,
// tokens and addresses are never metric attributes.
//
// # Metrics
//
// http.server.request.duration (seconds) is recorded per request with
// http.request.method, http.response.status_code and http.route. The
// route is r.Pattern as [net/http.ServeMux] sets it on the request that
// telemetry passed on, or the value given to [SetRoute]; requests with no
// route collapse into the single value "unmatched", so scanner traffic
// cannot multiply series.
//
// # Failure modes
//
// Telemetry never rejects a request. A malformed traceparent starts a new
// root trace; a malformed correlation ID is replaced; a malformed client
// report gets a 4xx problem+json answer and is not logged.
package telemetry
