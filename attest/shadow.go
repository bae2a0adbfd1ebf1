package attest

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/apiguard/apiguard/internal/events"
)

// refuse logs a refusal that is not a risk band (a body that cannot be
// read whole, an outage on a route that fails closed) and answers it
// through Config.ErrorHandler, and reports true; in shadow mode it logs
// the refusal with shadow=true, answers nothing and reports false: the
// caller passes r on.
func (v *Verifier) refuse(w http.ResponseWriter, r *http.Request, err error) bool {
	event, reason := "attestation_failed", "body"
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		reason = "body_too_large"
	case errors.Is(err, ErrStore):
		event, reason = "attestation_unavailable", "store"
	case errors.Is(err, ErrVendor), errors.Is(err, errOutage):
		event, reason = "attestation_unavailable", "vendor"
	}
	attrs := []slog.Attr{slog.String("event", event), slog.String("reason", reason)}
	if v.cfg.Shadow {
		attrs = append(attrs, slog.Bool("shadow", true))
	}
	events.Log(r.Context(), v.cfg.Logger, slog.LevelWarn, "attest: request refused", attrs...)
	if v.cfg.Shadow {
		return false
	}
	v.cfg.ErrorHandler(w, r, err)
	return true
}
