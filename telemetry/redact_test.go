package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/apiguard/apiguard/internal/events"
	"github.com/apiguard/apiguard/telemetry"
)

// captured is a slog.Handler that keeps the attributes of the records it
// handles, flattened to "group.key" -> value as text.
type captured struct {
	mu      sync.Mutex
	msgs    []string
	attrs   map[string]string
	prefix  string
	preset  []slog.Attr
	records int
}

func newCaptured() *captured { return &captured{attrs: map[string]string{}} }

func (c *captured) Enabled(context.Context, slog.Level) bool { return true }

func (c *captured) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records++
	c.msgs = append(c.msgs, r.Message)
	for _, a := range c.preset {
		c.flatten("", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		c.flatten(c.prefix, a)
		return true
	})
	return nil
}

func (c *captured) flatten(prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			c.flatten(prefix+a.Key+".", g)
		}
		return
	}
	c.attrs[prefix+a.Key] = fmt.Sprint(v.Any())
}

func (c *captured) WithAttrs(as []slog.Attr) slog.Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range as {
		c.attrs[c.prefix+a.Key] = a.Value.Resolve().String()
	}
	return c
}

func (c *captured) WithGroup(name string) slog.Handler {
	c.prefix += name + "."
	return c
}

func (c *captured) get(t *testing.T, key string) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.attrs[key]
	require.True(t, ok, "attribute %q missing from %v", key, c.attrs)
	return v
}

type secretValuer struct{ token string }

func (s secretValuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("access_token", s.token), slog.String("user", "bob"))
}

type loginForm struct {
	User     string
	Password string
}

const (
	jwt       = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ1c2VyLTQyIn0.MEUCIQDu1Qb2kZ9cY5z7f3" // gitleaks:allow -- a fake token the test plants
	dpopProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2In0.eyJodG0iOiJHRVQifQ.c2lnbmF0dXJlLWJ5dGVz"
	rfc9421   = `sig1=:K2qGT5srn2OGbOIDzQ6kYT+ruaycnDAAUpKv+ePFfD0=:`
)

// TestRedactHandlerRedacts is the table of what must never reach a log:
// each value must be gone from the attribute, and the "want" text left.
func TestRedactHandlerRedacts(t *testing.T) {
	tests := []struct {
		name   string
		give   slog.Attr
		secret string // must not appear in the logged value
		want   string // the logged value
	}{
		{"authorization_header", slog.String("Authorization", "Bearer abc.def.ghi-opaque-token"), "opaque-token", telemetry.Redacted},
		{"authorization_lower", slog.String("authorization", "Basic YWxpY2U6aHVudGVyMg=="), "YWxpY2U6aHVudGVyMg", telemetry.Redacted},
		{"cookie", slog.String("Cookie", "session=s3cr3t-session-value"), "s3cr3t", telemetry.Redacted},
		{"set_cookie_header_name", slog.String("Set-Cookie", "sid=abcdef0123456789"), "abcdef0123456789", telemetry.Redacted},
		{"password", slog.String("password", "hunter2"), "hunter2", telemetry.Redacted},
		{"passwd_upper", slog.String("PASSWD", "hunter2"), "hunter2", telemetry.Redacted},
		{"password_as_int", slog.Int("pin_password", 123456), "123456", telemetry.Redacted},
		{"token", slog.String("token", "opaque-token-value"), "opaque-token-value", telemetry.Redacted},
		{"access_token_camel", slog.String("accessToken", "at-value-123"), "at-value-123", telemetry.Redacted},
		{"refresh_token", slog.String("refresh_token", "rt-value-123"), "rt-value-123", telemetry.Redacted},
		{"id_token_upper_camel", slog.String("IDToken", "it-value-123"), "it-value-123", telemetry.Redacted},
		{"client_secret", slog.String("client_secret", "cs-value-123"), "cs-value-123", telemetry.Redacted},
		{"api_key_header", slog.String("X-Api-Key", "ak-value-123"), "ak-value-123", telemetry.Redacted},
		{"apikey", slog.String("apikey", "ak-value-123"), "ak-value-123", telemetry.Redacted},
		{"private_key", slog.String("private_key", "-----BEGIN EC PRIVATE KEY-----"), "BEGIN", telemetry.Redacted},
		{"signature_key", slog.String("Signature", rfc9421), "K2qGT5srn2OGbOIDzQ6kYT", telemetry.Redacted},
		{"dpop_key", slog.String("DPoP", dpopProof), dpopProof, telemetry.Redacted},
		{"proof_key", slog.String("proof", "anything"), "anything", telemetry.Redacted},
		{"otel_header_attribute", slog.String("http.request.header.authorization", "Bearer x"), "Bearer x", telemetry.Redacted},
		{"key_inside_group", slog.Group("request", slog.String("method", "GET"), slog.String("authorization", "Bearer zzzzzzzz")), "zzzzzzzz", "GET"},
		{"key_inside_nested_group", slog.Group("a", slog.Group("b", slog.String("Password", "p4ss"))), "p4ss", ""},
		{"group_named_by_a_key", slog.Group("credentials", slog.String("user", "bob"), slog.String("pw", "p4ss")), "p4ss", telemetry.Redacted},
		{"log_valuer", slog.Any("session", secretValuer{token: "tok-in-valuer-1"}), "tok-in-valuer-1", "bob"},
		{"bearer_in_message_value", slog.String("header", "Bearer abcdefgh12345678"), "abcdefgh12345678", "Bearer " + telemetry.Redacted},
		{"dpop_scheme_value", slog.String("header", "DPoP abcdefgh12345678"), "abcdefgh12345678", "DPoP " + telemetry.Redacted},
		{"jwt_value", slog.String("note", "got "+jwt+" from app"), jwt, "got " + telemetry.Redacted + " from app"},
		{"jwt_glued_to_text", slog.String("note", "x"+jwt+"y"), "MEUCIQDu1Qb2kZ9cY5z7f3", telemetry.Redacted},
		{"unsecured_jwt_alg_none", slog.String("note", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."), "eyJzdWIiOiJhZG1pbiJ9", telemetry.Redacted}, // gitleaks:allow -- a fake token the test plants
		{"dpop_proof_value", slog.String("header_value", dpopProof), dpopProof, telemetry.Redacted},
		{"rfc9421_signature_value", slog.String("sig", rfc9421), "K2qGT5srn2OGbOIDzQ6kYT", "sig1=:" + telemetry.Redacted + ":"},
		{"query_token", slog.String("url", "https://api.example/cb?access_token=qwerty123&state=1"), "qwerty123", "https://api.example/cb?access_token=" + telemetry.Redacted + "&state=1"},
		{"json_password", slog.String("body", `{"user":"bob","password":"hunter2"}`), "hunter2", `{"user":"bob","password":"` + telemetry.Redacted + `"}`},
		{"header_dump", slog.String("headers", "Authorization: Bearer abcdefgh12345678\nAccept: */*"), "abcdefgh12345678", "Authorization: Bearer " + telemetry.Redacted + "\nAccept: */*"},
		{"error_with_token", slog.Any("error", fmt.Errorf("fetch: %w", errors.New("401 for Bearer abcdefgh12345678"))), "abcdefgh12345678", "fetch: 401 for Bearer " + telemetry.Redacted},
		{"error_with_url_secret", slog.Any("error", errors.New(`Get "https://idp.example/token?client_secret=cs-9999": EOF`)), "cs-9999", `Get "https://idp.example/token?client_secret=` + telemetry.Redacted + `": EOF`},
		{"struct_with_password", slog.Any("form", loginForm{User: "bob", Password: "hunter2"}), "hunter2", "{User:bob Password:" + telemetry.Redacted + "}"},
		{"header_map", slog.Any("headers", http.Header{"Authorization": {"Bearer opaque-0123456789"}, "Cookie": {"sid=s-42"}}), "opaque-0123456789", "Authorization:[Bearer " + telemetry.Redacted + "]"},
		{"header_map_cookie", slog.Any("headers", http.Header{"Cookie": {"sid=s-4242"}}), "s-4242", "Cookie:[" + telemetry.Redacted + "]"},
		{"bytes_with_token", slog.Any("raw", []byte("Bearer abcdefgh12345678")), "abcdefgh12345678", "Bearer " + telemetry.Redacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCaptured()
			slog.New(telemetry.NewRedactHandler(c, telemetry.RedactConfig{})).Info("msg", tt.give)
			var all strings.Builder
			for k, v := range c.attrs {
				all.WriteString(k + "=" + v + "\n")
			}
			require.NotContains(t, all.String(), tt.secret)
			if tt.want != "" {
				require.Contains(t, all.String(), tt.want)
			}
		})
	}
}

// TestRedactHandlerPasses is the table of what must reach the log
// unchanged: the attributes events are counted and traced by, and the
// ordinary values around them.
func TestRedactHandlerPasses(t *testing.T) {
	tests := []struct {
		name string
		give slog.Attr
	}{
		{"event", slog.String("event", "signature_mismatch")},
		{"reason", slog.String("reason", "token_expired")},
		{"reason_invalid_token", slog.String("reason", "invalid_token")},
		{"policy", slog.String("policy", "login")},
		{"correlation_id", slog.String("correlation_id", "4bf92f3577b34da6a3ce929d0e0e4736")},
		{"correlation_id_client", slog.String("correlation_id", "app-7f3a-0001")},
		{"trace_id", slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")},
		{"span_id", slog.String("span_id", "00f067aa0ba902b7")},
		{"route", slog.String("route", "GET /v1/orders/{id}")},
		{"status", slog.Int("status", 401)},
		{"method", slog.String("method", "POST")},
		{"key_id", slog.String("key_id", "device-42.v1")},
		{"kid", slog.String("kid", "demo-2026")},
		{"spki_pin", slog.String("new_spki_pin", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")},
		{"device_model", slog.String("device_model", "iPhone16,1")},
		{"www_authenticate", slog.String("challenge", `Bearer realm="api", error="invalid_token", resource_metadata="https://api.example/.well-known/oauth-protected-resource"`)},
		{"uuid", slog.String("jti", "8c8a3b4e-9d2f-4e61-b1a3-7f0c2d5e6a10")},
		{"timestamp", slog.String("at", "2026-12-06T12:00:00.123Z")},
		{"hostname", slog.String("issuer", "https://login.example.com/tenant.v2")},
		{"metric_name", slog.String("metric", "apiguard.security.events")},
		{"version", slog.String("go", "go1.26.0")},
		{"sentence", slog.String("msg", "the token was refused: expired")},
		{"duration", slog.Duration("age", 1500)},
		{"email_without_pii", slog.String("user", "alice@example.com")},
		{"ip_without_pii", slog.String("client_ip", "203.0.113.7")},
		{"content_digest_short", slog.String("digest", "sha-256=:abc:")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCaptured()
			slog.New(telemetry.NewRedactHandler(c, telemetry.RedactConfig{})).Info("msg", tt.give)
			require.Equal(t, fmt.Sprint(tt.give.Value.Any()), c.get(t, tt.give.Key))
		})
	}
}

// TestRedactHandlerPersonalData: with PersonalData, addresses are cut to
// what abuse analysis needs (the domain, the /24 or /48), in any string.
func TestRedactHandlerPersonalData(t *testing.T) {
	tests := []struct {
		name string
		give slog.Attr
		want string
	}{
		{"email", slog.String("user", "alice@example.com"), "***@example.com"},
		{"email_in_sentence", slog.String("note", "login failed for Alice.Smith+shop@mail.example.org."), "login failed for ***@mail.example.org."},
		{"email_unicode_local", slog.String("user", "jürgen@example.de"), "***@example.de"},
		{"ipv4", slog.String("client_ip", "203.0.113.7"), "203.0.113.0/24"},
		{"ipv4_with_port", slog.String("remote_addr", "203.0.113.7:51000"), "203.0.113.0/24:51000"},
		{"ipv4_host_prefix", slog.String("net", "203.0.113.7/32"), "203.0.113.0/24"},
		{"ipv4_wide_prefix_kept", slog.String("net", "10.0.0.0/8"), "10.0.0.0/8"},
		{"ipv4_in_error", slog.Any("error", errors.New("dial tcp 192.0.2.44:6379: connection refused")), "dial tcp 192.0.2.0/24:6379: connection refused"},
		{"ipv4_list", slog.String("xff", "198.51.100.23, 10.1.2.3"), "198.51.100.0/24, 10.1.2.0/24"},
		{"ipv6", slog.String("client_ip", "2001:db8:1:2:3:4:5:6"), "2001:db8:1::/48"},
		{"ipv6_bracketed_port", slog.String("remote_addr", "[2001:db8:abcd:12::1]:443"), "[2001:db8:abcd::/48]:443"},
		{"ipv4_mapped", slog.String("client_ip", "::ffff:198.51.100.23"), "198.51.100.0/24"},
		{"netip_addr", slog.Any("client_ip", netip.MustParseAddr("198.51.100.23")), "198.51.100.0/24"},
		{"net_ip", slog.Any("client_ip", net.ParseIP("2001:db8:1:2::9")), "2001:db8:1::/48"},
		{"not_a_version", slog.String("v", "1.2.3.4.5"), "1.2.3.4.5"},
		{"not_a_time", slog.String("at", "2026-12-06T12:00:00Z"), "2026-12-06T12:00:00Z"},
		{"not_an_address", slog.String("user", "@handle"), "@handle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCaptured()
			slog.New(telemetry.NewRedactHandler(c, telemetry.RedactConfig{PersonalData: true})).Info("msg", tt.give)
			require.Equal(t, tt.want, c.get(t, tt.give.Key))
		})
	}
}

func TestRedactHandlerConfiguredKeys(t *testing.T) {
	c := newCaptured()
	h := telemetry.NewRedactHandler(c, telemetry.RedactConfig{Keys: []string{"SSN", "x-internal-ref"}, KeepKeys: []string{"nonce"}})
	slog.New(h).Info("msg", "ssn", "078-05-1120", "X-Internal-Ref", "r-1", "nonce", "n-0123", "password", "hunter2")
	require.Equal(t, telemetry.Redacted, c.get(t, "ssn"))
	require.Equal(t, telemetry.Redacted, c.get(t, "X-Internal-Ref"))
	require.Equal(t, "n-0123", c.get(t, "nonce"), "a default key removed by KeepKeys")
	require.Equal(t, telemetry.Redacted, c.get(t, "password"))
	require.NotContains(t, telemetry.DefaultRedactKeys(), "event")
}

func TestRedactHandlerWithAttrsAndGroups(t *testing.T) {
	c := newCaptured()
	l := slog.New(telemetry.NewRedactHandler(c, telemetry.RedactConfig{}))
	l.With("api_key", "ak-1", "route", "/v1/orders").WithGroup("session").Info("msg", "token", "t-1", "user", "bob")
	require.Equal(t, telemetry.Redacted, c.get(t, "api_key"))
	require.Equal(t, "/v1/orders", c.get(t, "route"))
	require.Equal(t, telemetry.Redacted, c.get(t, "session.token"))
	require.Equal(t, "bob", c.get(t, "session.user"))

	c = newCaptured()
	slog.New(telemetry.NewRedactHandler(c, telemetry.RedactConfig{})).WithGroup("secret").Info("msg", "user", "bob")
	require.Equal(t, telemetry.Redacted, c.get(t, "secret.user"), "every value under a group named by a key")
}

func TestRedactHandlerRedactsMessage(t *testing.T) {
	c := newCaptured()
	slog.New(telemetry.NewRedactHandler(c, telemetry.RedactConfig{PersonalData: true})).
		Info("refused Bearer abcdefgh12345678 from bob@example.com at 203.0.113.7")
	require.Equal(t, []string{"refused Bearer " + telemetry.Redacted + " from ***@example.com at 203.0.113.0/24"}, c.msgs)
}

type panickyErr struct{}

func (panickyErr) Error() string { panic("boom") }

type panickyValuer struct{}

func (panickyValuer) LogValue() slog.Value { panic("boom") }

// A value whose methods panic neither panics the handler nor reaches
// next as the panicking value.
func TestRedactHandlerValuesThatPanic(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(telemetry.NewRedactHandler(slog.NewJSONHandler(&buf, nil), telemetry.RedactConfig{PersonalData: true}))
	require.NotPanics(t, func() {
		l.Info("msg", "err", error(panickyErr{}), "valuer", slog.LogValuer(panickyValuer{}), "nil", nil, "nilerr", (*net.OpError)(nil))
	})
	require.Contains(t, buf.String(), "PANIC")
}

// The redacting handler sits under the observer's log handler: events
// are counted from the record as logged, and their attributes pass.
func TestRedactHandlerUnderObserverCountsEvents(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	var buf bytes.Buffer
	obs, err := telemetry.New(telemetry.Config{
		Logger:        slog.New(telemetry.NewRedactHandler(slog.NewJSONHandler(&buf, nil), telemetry.RedactConfig{PersonalData: true})),
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	require.NoError(t, err)
	require.True(t, events.Observed(obs.Logger()))
	obs.Logger().Warn("auth: token refused", "event", "auth_failed", "reason", "invalid_token",
		"authorization", "Bearer abcdefgh12345678", "client_ip", "203.0.113.7")
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == telemetry.MetricSecurityEvents {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					if v, _ := dp.Attributes.Value("reason"); v.AsString() == "invalid_token" {
						n += dp.Value
					}
				}
			}
		}
	}
	require.Equal(t, int64(1), n)
	out := buf.String()
	require.Contains(t, out, `"event":"auth_failed","reason":"invalid_token"`)
	require.NotContains(t, out, "abcdefgh12345678")
	require.NotContains(t, out, "203.0.113.7")
	require.Contains(t, out, "203.0.113.0/24")

	// Put over the observer's handler instead, it keeps the logger observed.
	over := slog.New(telemetry.NewRedactHandler(obs.Logger().Handler(), telemetry.RedactConfig{}))
	require.True(t, events.Observed(over))
}

func TestNewRedactHandlerPanicsOnNilNext(t *testing.T) {
	require.Panics(t, func() { telemetry.NewRedactHandler(nil, telemetry.RedactConfig{}) })
}

// Many goroutines log through one handler and its derived handlers.
func TestRedactHandlerConcurrent(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	h := telemetry.NewRedactHandler(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil), telemetry.RedactConfig{PersonalData: true})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			l := slog.New(h).With("worker", i)
			for range 50 {
				l.Info("req", "authorization", "Bearer abcdefgh12345678", "client_ip", "203.0.113.7")
			}
		})
	}
	wg.Wait()
	require.Equal(t, 16*50, strings.Count(buf.String(), "\n"))
	require.NotContains(t, buf.String(), "abcdefgh12345678")
	require.NotContains(t, buf.String(), "203.0.113.7")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
