package telemetry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

// delimiters may stand between a planted secret and the text around it.
const delimiters = " \t\n,;()[]{}<>\"'&|"

// plant returns a secret of the given kind made from raw, and the text
// that carries it; the text is what an application might log.
func plant(kind byte, raw []byte) (secret, text string) {
	b64u := base64.RawURLEncoding.EncodeToString
	for len(raw) < 8 {
		raw = append(raw, 0x5a)
	}
	h := hex.EncodeToString(raw)
	switch kind % 9 {
	case 0:
		secret = b64u(raw)
		return secret, "Bearer " + secret
	case 1:
		secret = b64u([]byte(`{"alg":"ES256","kid":"`+h+`"}`)) + "." + b64u([]byte(`{"sub":"`+h+`"}`)) + "." + b64u(raw)
		return secret, secret
	case 2:
		secret = base64.StdEncoding.EncodeToString(append(raw, raw...))
		return secret, "sig1=:" + secret + ":"
	case 3:
		secret = "pw-" + h
		return secret, "password=" + secret
	case 4:
		secret = h
		return secret, `"client_secret":"` + secret + `"`
	case 5:
		secret = b64u(raw)
		return secret, "DPoP " + secret
	case 6: // e-mail address (PersonalData)
		local := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '+' || r == '-' {
				return r
			}
			return 'x'
		}, strings.ToLower(string(raw)))
		secret = local + "@example.com"
		return secret, secret
	case 7: // IPv4 address (PersonalData)
		a := netip.AddrFrom4([4]byte{raw[0], raw[1], raw[2], raw[3] | 1})
		return a.String(), a.String()
	default: // IPv6 address (PersonalData)
		var b [16]byte
		copy(b[:], append(raw, raw...))
		b[15] |= 1
		a := netip.AddrFrom16(b)
		if a.Is4In6() {
			a = a.Unmap()
		}
		return a.String(), a.String()
	}
}

// FuzzRedact plants a secret of every kind the handler recognises in text
// of the fuzzer's choosing, in the message, a string value, an error, a
// group and a LogValuer, and under a redacted key: the output must never
// contain the secret, and nothing may panic on any input.
func FuzzRedact(f *testing.F) {
	f.Add("note", "prefix", "suffix", []byte("0123456789abcdef"), byte(0), byte(0), byte(0))
	f.Add("Authorization", "GET /x", "", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, byte(1), byte(3), byte(1))
	f.Add("x", "a=", ":b", []byte("\xff\xfe\x00"), byte(2), byte(5), byte(2))
	f.Add("user", "login ", ".", []byte("Alice.Smith"), byte(6), byte(0), byte(3))
	f.Add("ip", "from ", ":443", []byte{203, 0, 113, 7}, byte(7), byte(1), byte(4))
	f.Add("ip", "[", "]:443", []byte{0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4}, byte(8), byte(2), byte(0))
	f.Add("correlation_id", "eyJ", "eyJ.", []byte("é\u2028"), byte(4), byte(8), byte(1))
	f.Fuzz(func(t *testing.T, key, prefix, suffix string, raw []byte, kind, sep, where byte) {
		secret, text := plant(kind, raw)
		d := delimiters[int(sep)%len(delimiters)]
		value := prefix + string(d) + text + string(d) + suffix
		if strings.Contains(prefix, secret) || strings.Contains(suffix, secret) || strings.Contains(key, secret) ||
			strings.Contains(Redacted, secret) || len(secret) < 8 {
			t.Skip()
		}
		pii := kind%9 >= 6
		var buf bytes.Buffer
		var capture textSink
		h := NewRedactHandler(fanOut{slog.NewJSONHandler(&buf, nil), &capture}, RedactConfig{PersonalData: pii})
		l := slog.New(h)
		switch where % 5 {
		case 0:
			l.Info(value, key, value)
		case 1:
			l.Info("m", key, errors.New(value))
		case 2:
			l.WithGroup(key).Info("m", slog.Group("g", slog.String(key, value)))
		case 3:
			l.With(key, value).Info("m", "v", valuer(value))
		default:
			l.Info("m", "token", secret, key, fmt.Errorf("wrapped: %w", errors.New(value)))
		}
		if got := capture.String(); strings.Contains(got, secret) {
			t.Fatalf("secret %q in %q", secret, got)
		}
	})
}

type valuer string

func (v valuer) LogValue() slog.Value { return slog.GroupValue(slog.String("inner", string(v))) }

// textSink keeps the message and every value of the records it handles,
// as text, resolved and flattened.
type textSink struct{ b strings.Builder }

func (c *textSink) String() string                           { return c.b.String() }
func (c *textSink) Enabled(context.Context, slog.Level) bool { return true }
func (c *textSink) Handle(_ context.Context, r slog.Record) error {
	c.b.WriteString(r.Message + "\n")
	r.Attrs(func(a slog.Attr) bool { c.add(a); return true })
	return nil
}
func (c *textSink) add(a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			c.add(g)
		}
		return
	}
	c.b.WriteString(fmt.Sprint(v.Any()) + "\n")
}
func (c *textSink) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		c.add(a)
	}
	return c
}
func (c *textSink) WithGroup(string) slog.Handler { return c }

// fanOut hands every record to each of its handlers.
type fanOut []slog.Handler

func (m fanOut) Enabled(context.Context, slog.Level) bool { return true }
func (m fanOut) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range m {
		if err := h.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}
func (m fanOut) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanOut, len(m))
	for i, h := range m {
		out[i] = h.WithAttrs(as)
	}
	return out
}
func (m fanOut) WithGroup(name string) slog.Handler {
	out := make(fanOut, len(m))
	for i, h := range m {
		out[i] = h.WithGroup(name)
	}
	return out
}
