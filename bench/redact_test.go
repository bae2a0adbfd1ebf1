package bench

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/apiguard/apiguard/telemetry"
)

// BenchmarkRedactHandler measures telemetry.NewRedactHandler in front of
// slog.JSONHandler, beside slog.JSONHandler alone, on a security event as
// the packages log it (event, reason, policy, IDs, route, status, an
// error's text, the client address). clean has nothing to redact (the
// common case: no allocation beyond JSON's own), secret carries a bearer
// token in the error text, and pii truncates the client address.
func BenchmarkRedactHandler(b *testing.B) {
	clean := []slog.Attr{
		slog.String("event", "rate_limited"), slog.String("reason", "quota_exceeded"), slog.String("policy", "user"),
		slog.String("correlation_id", "4bf92f3577b34da6a3ce929d0e0e4736"), slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
		slog.String("route", "GET /v1/orders"), slog.Int("status", 429),
		slog.Any("error", errors.New("ratelimit: limit exceeded, retry in 2s")),
	}
	secret := append(clean[:len(clean):len(clean)], slog.String("header", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2ln"))
	pii := append(clean[:len(clean):len(clean)], slog.String("client_ip", "203.0.113.7"))
	json := slog.NewJSONHandler(io.Discard, nil)
	run := func(b *testing.B, h slog.Handler, attrs []slog.Attr) {
		l := slog.New(h)
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.LogAttrs(ctx, slog.LevelWarn, "request refused", attrs...)
			}
		})
	}
	redact := telemetry.NewRedactHandler(json, telemetry.RedactConfig{})
	redactPII := telemetry.NewRedactHandler(json, telemetry.RedactConfig{PersonalData: true})
	b.Run("clean/json", func(b *testing.B) { run(b, json, clean) })
	b.Run("clean/json+redact", func(b *testing.B) { run(b, redact, clean) })
	b.Run("clean/json+redact_pii", func(b *testing.B) { run(b, redactPII, clean) })
	b.Run("secret/json", func(b *testing.B) { run(b, json, secret) })
	b.Run("secret/json+redact", func(b *testing.B) { run(b, redact, secret) })
	b.Run("pii/json", func(b *testing.B) { run(b, json, pii) })
	b.Run("pii/json+redact_pii", func(b *testing.B) { run(b, redactPII, pii) })
}
