package auth

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/apiguard/apiguard/internal/testkit"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/stretchr/testify/require"
)

// TestRefusalsNameTheFix: a refusal an operator can fix by configuration
// names the setting, in the returned error and in the log; an unknown
// issuer is logged beside the configured ones. The client still gets the
// one fixed text, and no part of the token reaches a response or the log.
func TestRefusalsNameTheFix(t *testing.T) {
	clk := testkit.NewClock(t0)
	es := newSigner(t, jwa.ES256, "es-1")
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"iss": testIssuer, "aud": testAudience, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix()}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	hostileIss := "https://evil.example/\n{\"event\":\"forged\"}\x1b[31m\u202e" + strings.Repeat("A", 500)
	tests := []struct {
		name    string
		token   string
		want    error
		wantMsg []string // in the error and the log
		notMsg  []string // in neither
	}{
		{
			name:    "untyped_access_token_typ_jwt",
			token:   es.sign(t, map[string]any{"typ": "JWT", "kid": "es-1"}, claims(nil)),
			want:    ErrType,
			wantMsg: []string{`typ "JWT" is not at+jwt`, `issuer "` + testIssuer + `"`, "Issuer.InsecureAllowJWTType"},
		},
		{
			name:    "typ_missing",
			token:   es.sign(t, map[string]any{"kid": "es-1"}, claims(nil)),
			want:    ErrType,
			wantMsg: []string{`typ "" is not at+jwt`, "Issuer.InsecureAllowJWTType"},
		},
		{
			name:    "dpop_proof_as_access_token",
			token:   es.sign(t, map[string]any{"typ": "dpop+jwt", "kid": "es-1"}, claims(nil)),
			want:    ErrType,
			wantMsg: []string{`typ "dpop+jwt" is neither at+jwt nor JWT`, "Issuer.InsecureAllowJWTType"},
		},
		{
			name:    "id_token_as_access_token",
			token:   es.sign(t, map[string]any{"typ": "JWT", "kid": "es-1"}, claims(map[string]any{"nonce": "n"})),
			want:    ErrType,
			wantMsg: []string{"an ID token (it carries nonce, at_hash or c_hash)"},
		},
		{
			name:    "month_long_token",
			token:   es.token(t, map[string]any{"exp": t0.Add(30 * 24 * time.Hour).Unix()}),
			want:    ErrLifetime,
			wantMsg: []string{"exp - iat is 720h0m0s, over Config.MaxTokenLifetime (1h0m0s)"},
		},
		{
			name:    "token_without_iat",
			token:   es.token(t, map[string]any{"iat": nil}),
			want:    ErrLifetime,
			wantMsg: []string{"no iat, so Config.MaxTokenLifetime (1h0m0s) cannot be checked"},
		},
		{
			name:    "foreign_issuer",
			token:   es.token(t, map[string]any{"iss": "https://evil.example/"}),
			want:    ErrIssuer,
			wantMsg: []string{`token iss "https://evil.example/" is none of the configured issuers ["` + testIssuer + `" "https://second.example/"]`},
		},
		{
			name:  "issuer_log_injection",
			token: es.token(t, map[string]any{"iss": hostileIss}),
			want:  ErrIssuer,
			// Control and format characters go; the rest is capped at
			// maxUntrusted bytes.
			wantMsg: []string{`token iss "https://evil.example/{\"event\":\"forged\"}[31m` + strings.Repeat("A", maxUntrusted-len("https://evil.example/\n{\"event\":\"forged\"}\x1b[31m\u202e")) + `"... is none`},
			notMsg:  []string{"\n", "\x1b", "\u202e", strings.Repeat("A", maxUntrusted)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, logs := newTestVerifier(t, clk, func(c *Config) {
				c.Issuers = append(c.Issuers, Issuer{Issuer: "https://second.example/", Audience: []string{testAudience}, Keys: jwkSet(t, es)})
			}, es)
			_, err := v.VerifyToken(t.Context(), tt.token)
			require.ErrorIs(t, err, tt.want)
			require.True(t, strings.HasPrefix(err.Error(), tt.want.Error()+": "), err.Error())
			for _, m := range tt.wantMsg {
				require.Contains(t, err.Error(), m)
			}
			for _, m := range tt.notMsg {
				require.NotContains(t, err.Error(), m)
			}
			require.False(t, strings.ContainsFunc(err.Error(), unicode.IsControl), "no control character in %q", err)

			rec, reached, _ := call(v.Handler, bearer(tt.token))
			require.False(t, reached)
			require.JSONEq(t, `{"type":"urn:apiguard:problem:invalid-token","title":"Invalid token","status":401,"detail":"The access token is invalid."}`, rec.Body.String(), "the client learns nothing of the fix")
			log := logs.String()
			require.Contains(t, log, `"reason":"`+reason(tt.want)+`"`)
			for _, m := range tt.wantMsg {
				require.Contains(t, log, jsonText(m), "the log names it too")
			}
			require.Equal(t, 1, strings.Count(log, "\n"), "one log record, no forged line")
			for i, part := range strings.Split(tt.token, ".") {
				probe := part[:min(len(part), 16)]
				require.NotContains(t, log, probe, "part %d of the token logged", i)
				require.NotContains(t, rec.Body.String()+fmt.Sprint(rec.Header()), probe, "part %d of the token answered", i)
			}
		})
	}
}

// jsonText is s as it appears inside a JSON string of a log record.
func jsonText(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// A Verifier whose logger counts no security events says so at New, naming
// the fix, so that auth_failed never vanishes from the metrics unnoticed.
func TestNewWarnsWhenEventsUncounted(t *testing.T) {
	es := newSigner(t, jwa.ES256, "es-1")
	logs := &logSink{}
	_, err := New(Config{
		Issuers: []Issuer{{Issuer: testIssuer, Audience: []string{testAudience}, Keys: jwkSet(t, es)}},
		Logger:  logs.logger(),
	})
	require.NoError(t, err)
	require.Contains(t, logs.String(), `"level":"WARN"`)
	require.Contains(t, logs.String(), "auth: Config.Logger does not count security events")
	require.Contains(t, logs.String(), "Logger()")
}
