package telemetry

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/apiguard/apiguard/internal/problem"
)

// Report types that [Observer.ReportHandler] maps to their own events.
// Any other type is counted as event=client_report, reason=other.
const (
	// ReportPinningFailure: the app's certificate pinning rejected a
	// server certificate. Event: client_pinning_failure.
	ReportPinningFailure = "pinning-failure"
	// ReportTLSFailure: a TLS handshake failed on the device. Event:
	// client_tls_failure.
	ReportTLSFailure = "tls-failure"
	// ReportAttestationFailure: App Attest, Play Integrity or App Check
	// failed on the device. Event: client_attestation_failure.
	ReportAttestationFailure = "attestation-failure"
	// ReportNetworkError is the W3C Network Error Logging type; a body
	// "type" starting with "tls." makes it client_tls_failure, anything
	// else client_network_error.
	ReportNetworkError = "network-error"
)

// Report is one W3C Reporting API report as a client sends it.
type Report struct {
	Type      string          `json:"type"`
	Age       int64           `json:"age"`
	URL       string          `json:"url"`
	UserAgent string          `json:"user_agent"`
	Body      json.RawMessage `json:"body"`
}

var (
	errReportMethod  = problem.Problem{Type: problem.TypeBase + "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: "Reports are sent with POST."}
	errReportType    = problem.Problem{Type: problem.TypeBase + "unsupported-media-type", Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType, Detail: "Reports are sent as application/reports+json."}
	errReportTooBig  = problem.Problem{Type: problem.TypeBase + "report-too-large", Title: "Report too large", Status: http.StatusRequestEntityTooLarge, Detail: "The report body is larger than this server accepts."}
	errReportInvalid = problem.Problem{Type: problem.TypeBase + "invalid-report", Title: "Invalid report", Status: http.StatusBadRequest, Detail: "The body is not a valid list of reports."}
	errReportTooMany = problem.Problem{Type: problem.TypeBase + "too-many-reports", Title: "Too many reports", Status: http.StatusBadRequest, Detail: "The request holds more reports than this server accepts."}
)

// ReportHandler returns the intake for client-side reports: mobile clients
// POST what only they can see (certificate-pinning failures, TLS handshake
// failures, attestation failures on the device) as W3C Reporting API JSON,
// a list of {type, age, url, user_agent, body} objects with media type
// application/reports+json (application/json is accepted too).
//
// Decoding is strict: unknown members, a body that is not an object,
// trailing data or an empty list are answered 400; a body over
// [Config.MaxReportBytes] 413; more than [Config.MaxReports] reports 400;
// another media type 415; a method other than POST 405. Nothing is logged
// for a rejected request. Each accepted report becomes one security event
// logged with the request's correlation ID, carrying only the report type,
// its age and the host of its URL; the user agent, path, query and body
// are never logged. The answer to an accepted request is 204.
//
// The intake takes unauthenticated traffic by nature (a client that cannot
// complete TLS cannot authenticate): put a rate limit keyed by IP in front.
func (o *Observer) ReportHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem.Write(w, errReportMethod)
			return
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || (mt != "application/reports+json" && mt != "application/json") {
			problem.Write(w, errReportType)
			return
		}
		reports, p := o.decodeReports(http.MaxBytesReader(w, r.Body, o.maxReport))
		if p != nil {
			problem.Write(w, *p)
			return
		}
		ctx := r.Context()
		for _, rep := range reports {
			event, reason := classify(rep)
			attrs := []slog.Attr{
				slog.String(KeyEvent, event),
				slog.String(KeyReason, reason),
				slog.Int64("age_ms", rep.Age),
			}
			if host := reportHost(rep.URL); host != "" {
				attrs = append(attrs, slog.String("host", host))
			}
			o.logger.LogAttrs(ctx, slog.LevelWarn, "telemetry: client report", attrs...)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (o *Observer) decodeReports(body io.Reader) ([]Report, *problem.Problem) {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	fail := func(err error) *problem.Problem {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &errReportTooBig
		}
		return &errReportInvalid
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fail(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, &errReportInvalid
	}
	var reports []Report
	for dec.More() {
		if len(reports) == o.maxReports {
			return nil, &errReportTooMany
		}
		var rep Report
		if err := dec.Decode(&rep); err != nil {
			return nil, fail(err)
		}
		if !validReport(rep) {
			return nil, &errReportInvalid
		}
		reports = append(reports, rep)
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, fail(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, fail(err)
		}
		return nil, &errReportInvalid
	}
	if len(reports) == 0 {
		return nil, &errReportInvalid
	}
	return reports, nil
}

func validReport(rep Report) bool {
	if rep.Type == "" || len(rep.Type) > 64 || rep.Age < 0 {
		return false
	}
	b := strings.TrimLeft(string(rep.Body), " \t\r\n")
	return strings.HasPrefix(b, "{")
}

// classify maps a report to its event and a bounded reason.
func classify(rep Report) (event, reason string) {
	switch rep.Type {
	case ReportPinningFailure:
		return "client_pinning_failure", rep.Type
	case ReportTLSFailure:
		return "client_tls_failure", rep.Type
	case ReportAttestationFailure:
		return "client_attestation_failure", rep.Type
	case ReportNetworkError:
		var body struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(rep.Body, &body) == nil && strings.HasPrefix(body.Type, "tls.") {
			return "client_tls_failure", rep.Type
		}
		return "client_network_error", rep.Type
	}
	return "client_report", "other"
}

// reportHost returns the host of a report URL if it is a plausible host
// name, and "" otherwise; paths and queries can carry secrets and are
// never logged.
func reportHost(raw string) string {
	if len(raw) > 2048 {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || len(u.Host) > 255 {
		return ""
	}
	h := u.Hostname()
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':') {
			return ""
		}
	}
	return h
}
