// Package telemetry gives every request a correlation ID, continues W3C
// traces, turns security events into metrics, reports readiness, and
// takes in reports that only mobile clients can see.
//
// It is the outermost middleware. Give every apiguard package the
// observer's logger, so that its security events reach the metrics the
// application configured, in a request or not:
//
//	obs, err := telemetry.New(telemetry.Config{MeterProvider: provider})
//	if err != nil { ... }
//	tokens, err := auth.New(auth.Config{Issuers: issuers, Logger: obs.Logger()})
//	mux := http.NewServeMux()
//	mux.Handle("GET /readyz", obs.Health(telemetry.Check{Name: "jwks", Ready: tokens}))
//	mux.Handle("POST /reports", obs.ReportHandler())
//	mux.Handle("GET /orders", tokens.Handler(orders))
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
// A security event is a slog record with a string attribute "event"
// (and usually "reason"). apiguard's packages report them without
// importing telemetry: in a request, telemetry counts them whatever
// logger the package has; outside one (key-set refresh failures, store
// outages) only a logger from [Observer.Logger] counts them, and a
// package's New warns when its logger does not. They are counted in
// apiguard.security.events with the attributes event and reason, the
// policy of a rate-limit event (a limiter's Name, from configuration), a
// bounded device_model with [Config.DeviceModelHeader], and shadow="true"
// on the refusals a control in shadow mode did not make (its would-deny
// count; the record has shadow=true). The logger adds
// correlation_id, trace_id and span_id to every record logged with a
// request context. Device IDs, key IDs, tokens and addresses are never
// metric attributes.
//
// # Logs without secrets
//
// [NewRedactHandler] removes what must never be logged, whatever the
// application passes: values under keys such as authorization, cookie,
// password, token or api_key, and bearer credentials, JWTs, DPoP proofs
// and RFC 9421 signatures inside any string; on request it truncates
// e-mail addresses to their domain and IP addresses to their /24 or /48.
// Put it under the observer's logger, as Config.Logger's handler, so
// that events are counted before it.
//
// Teams on zap or zerolog put their logger under a slog bridge and pass
// it as [Config.Logger]: slog.New(zapslog.NewHandler(zapLogger.Core()))
// with go.uber.org/zap/exp/zapslog, or
// slog.New(slogzerolog.Option{Logger: &zerologLogger}.NewZerologHandler())
// with github.com/samber/slog-zerolog/v2.
//
// # Metrics
//
// http.server.request.duration (seconds) is recorded per request with
// http.request.method, http.response.status_code and http.route. The
// route is r.Pattern as [net/http.ServeMux] sets it on the request that
// telemetry passed on, or the value given to [SetRoute]; requests with no
// route collapse into the single value "unmatched", so scanner traffic
// cannot multiply series. [Observer.Health] adds gauges per dependency.
//
// # Failure modes
//
// Telemetry never rejects a request. A malformed traceparent starts a new
// root trace; a malformed correlation ID is replaced; a malformed client
// report gets a 4xx problem+json answer and is not logged.
package telemetry
