package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/apiguard/apiguard/internal/events"
)

// Redacted replaces what [NewRedactHandler] removes from a record.
const Redacted = "[REDACTED]"

// DefaultRedactKeys returns the attribute keys whose values
// [NewRedactHandler] always replaces by [Redacted] (unless
// [RedactConfig.KeepKeys] names them). A fresh slice on every call.
func DefaultRedactKeys() []string {
	return []string{
		"authorization", "proxy_authorization", "cookie", "set_cookie",
		"password", "passwd", "pwd", "passphrase", "secret", "client_secret",
		"token", "access_token", "refresh_token", "id_token", "jwt",
		"api_key", "apikey", "private_key", "credential", "credentials",
		"session_id", "sessionid", "signature", "dpop", "proof", "assertion", "nonce",
	}
}

// RedactConfig configures [NewRedactHandler]. The zero value redacts the
// keys of [DefaultRedactKeys] and secret-shaped values, and keeps
// personal data.
type RedactConfig struct {
	// Keys are attribute keys redacted besides [DefaultRedactKeys]; a
	// key is matched by its last 64 bytes at most. Default: none.
	Keys []string
	// KeepKeys are keys of [DefaultRedactKeys] that are logged after all
	// (their values still go through the value rules). Default: none.
	KeepKeys []string
	// PersonalData truncates personal data in every string: an e-mail
	// address keeps its domain only (***@example.com), an IPv4 address
	// becomes its /24 and an IPv6 address its /48 (203.0.113.0/24,
	// 2001:db8:1::/48), so that abuse from one network still shows.
	// Every address is cut, the server's own and those in URLs included.
	// Default: false, personal data is logged as it is.
	PersonalData bool
}

// NewRedactHandler returns a slog.Handler that removes from every record
// what must never be logged, whatever the application passes, then hands
// the record to next:
//
//   - the value of an attribute whose key is a redacted key, at any depth
//     of groups, and every attribute under a group named by one;
//   - in every string (the message, string values, the text of errors and
//     of other values): the value after a redacted key and "=" or ":"
//     (password=..., "token":"..."), the credential after the Bearer, DPoP
//     or Basic scheme, an RFC 9421 signature or other byte sequence of 16
//     or more base64 characters between colons (sig1=:...:), and every
//     JWS or JWT (dot-separated base64url with a JSON header or payload),
//     which covers DPoP proofs;
//   - with [RedactConfig.PersonalData], e-mail and IP addresses, truncated.
//
// Keys are compared case-insensitively after mapping "-" to "_" and
// camelCase to snake_case, and match as a whole or as the last part of a
// dotted or underscored key: x-api-key, apiKey and
// http.request.header.authorization are all redacted. A secret with no
// recognisable shape under a key of no redacted name (an opaque token
// logged as "value") is not recognised: name it, or add its key.
//
// LogValuer values are resolved first. A value of any other type
// (slog.Any) is checked in its fmt "%+v" form (errors in their Error
// text) and replaced by the redacted string when that form held
// something to redact; a handler that renders it otherwise (a json tag,
// a field behind a pointer) may show what that form did not.
//
// Put it under the observer's log handler, which then counts security
// events before redaction (event, reason and policy are no redacted keys,
// and their fixed values pass unchanged either way):
//
//	redacting := telemetry.NewRedactHandler(slog.NewJSONHandler(os.Stderr, nil), telemetry.RedactConfig{PersonalData: true})
//	obs, err := telemetry.New(telemetry.Config{Logger: slog.New(redacting)})
//	logger := obs.Logger() // counts events, adds IDs, then redacts
//
// It never panics on a record's content. It panics if next is nil.
func NewRedactHandler(next slog.Handler, cfg RedactConfig) slog.Handler {
	if next == nil {
		panic("telemetry: nil slog.Handler")
	}
	r := &redactor{keys: make(map[string]struct{}), pii: cfg.PersonalData}
	add := func(k string) {
		n := normalKey(k)
		if len(n) > maxKeyLen {
			n = n[len(n)-maxKeyLen:]
		}
		r.maxKey = max(r.maxKey, len(n))
		r.keys[n] = struct{}{}
		r.keys[strings.ReplaceAll(n, "_", "")] = struct{}{}
	}
	keep := make(map[string]bool, len(cfg.KeepKeys))
	for _, k := range cfg.KeepKeys {
		keep[normalKey(k)] = true
	}
	for _, k := range DefaultRedactKeys() {
		if !keep[k] {
			add(k)
		}
	}
	for _, k := range cfg.Keys {
		if k != "" {
			add(k)
		}
	}
	return &redactHandler{next: next, r: r}
}

type redactHandler struct {
	next slog.Handler
	r    *redactor
	all  bool // inside a group named by a redacted key
}

// CountsEvents implements [events.Counter] for a next that does, so that
// a redacting handler put over the observer's logger keeps it observed.
func (h *redactHandler) CountsEvents() bool {
	c, ok := h.next.(events.Counter)
	return ok && c.CountsEvents()
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	msg := h.r.str(rec.Message)
	changed := msg != rec.Message
	var stack [16]slog.Attr
	attrs := stack[:0]
	rec.Attrs(func(a slog.Attr) bool {
		a2, ch := h.r.attr(a, h.all)
		attrs = append(attrs, a2)
		changed = changed || ch
		return true
	})
	if !changed {
		return h.next.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, msg, rec.PC)
	out.AddAttrs(attrs...)
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i], _ = h.r.attr(a, h.all)
	}
	h2 := *h
	h2.next = h.next.WithAttrs(out)
	return &h2
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.next = h.next.WithGroup(name)
	h2.all = h.all || h.r.secretKey(name)
	return &h2
}

// redactor holds the rules; it is read-only after NewRedactHandler.
type redactor struct {
	keys   map[string]struct{} // normalised keys, with and without "_"
	maxKey int                 // the length of the longest key
	pii    bool
}

// maxKeyLen bounds the keys that can be configured, and the part of a
// longer key that is compared, so that a record's cost stays linear.
const maxKeyLen = 64

// attr returns a with what must not be logged removed, and whether it
// changed; all redacts every value.
func (r *redactor) attr(a slog.Attr, all bool) (slog.Attr, bool) {
	if all || r.secretKey(a.Key) {
		return slog.String(a.Key, Redacted), true
	}
	v := a.Value
	if v.Kind() == slog.KindLogValuer {
		v = v.Resolve() // recovers a panicking LogValue
	}
	switch v.Kind() {
	case slog.KindString:
		s := v.String()
		if rs := r.str(s); rs != s {
			return slog.String(a.Key, rs), true
		}
	case slog.KindGroup:
		g := v.Group()
		var out []slog.Attr
		for i, ga := range g {
			ga2, ch := r.attr(ga, false)
			if ch && out == nil {
				out = make([]slog.Attr, len(g))
				copy(out, g[:i])
			}
			if out != nil {
				out[i] = ga2
			}
		}
		if out != nil {
			return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}, true
		}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = safeErrorText(x)
		case []byte:
			s = string(x)
		default:
			s = fmt.Sprintf("%+v", v.Any())
		}
		// A value whose Error or String method panics would panic in
		// next too: it is logged as fmt's account of the panic.
		if rs := r.str(s); rs != s || strings.Contains(s, "(PANIC=") {
			return slog.String(a.Key, rs), true
		}
	}
	if v.Kind() != a.Value.Kind() { // a resolved LogValuer
		return slog.Attr{Key: a.Key, Value: v}, true
	}
	return a, false
}

// safeErrorText returns err.Error(), or fmt's account of its panic.
func safeErrorText(err error) (s string) {
	defer func() {
		if recover() != nil {
			s = fmt.Sprintf("%v", err) // fmt reports the panic: "%!v(PANIC=Error method: ...)"
		}
	}()
	return err.Error()
}

// secretKey reports whether values under key k are redacted: k, in
// normal form, or its last part after a "." or "_", is a redacted key.
func (r *redactor) secretKey(k string) bool {
	if k == "" {
		return false
	}
	if plainKey(k) {
		_, ok := r.keys[k] // normal already, and no last part to try
		return ok
	}
	if len(k) > maxKeyLen {
		// Only the last part can match: keep it, with its separator.
		k = k[len(k)-maxKeyLen:]
	}
	var buf [2 * maxKeyLen]byte
	n, _ := appendNormalKey(buf[:0], k)
	return r.secretNormalKey(string(n)) // no allocation: string(n) only feeds map lookups
}

func (r *redactor) secretNormalKey(n string) bool {
	if _, ok := r.keys[n]; ok {
		return true
	}
	for i := max(len(n)-r.maxKey-1, 0); i < len(n); i++ {
		if n[i] == '.' || n[i] == '_' {
			if _, ok := r.keys[n[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// plainKey reports whether k is lower-case letters and digits only.
func plainKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if !isLower(k[i]) && !isDigit(k[i]) {
			return false
		}
	}
	return true
}

// normalKey returns k lower-cased, with "-" as "_" and a "_" before an
// upper-case letter that follows a lower-case letter or digit.
func normalKey(k string) string {
	b, _ := appendNormalKey(make([]byte, 0, len(k)+4), k)
	return string(b)
}

// appendNormalKey appends the normal form of k to dst; ok is false when
// it would outgrow dst's capacity.
func appendNormalKey(dst []byte, k string) ([]byte, bool) {
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'A' <= c && c <= 'Z':
			if i > 0 && (isLower(k[i-1]) || isDigit(k[i-1])) {
				if len(dst) == cap(dst) {
					return dst, false
				}
				dst = append(dst, '_')
			}
			c += 'a' - 'A'
		case c == '-':
			c = '_'
		}
		if len(dst) == cap(dst) {
			return dst, false
		}
		dst = append(dst, c)
	}
	return dst, true
}

// str returns s with secrets and, with r.pii, personal data removed. Each
// rule returns its input unchanged, without allocating, when it finds
// nothing, which is the common case.
func (r *redactor) str(s string) string {
	if len(s) < 5 {
		return s
	}
	s = r.keyValues(s)
	s = authSchemes(s)
	s = byteSequences(s)
	s = jwsLike(s)
	if r.pii {
		s = emails(s)
		s = ipv6s(s)
		s = ipv4s(s)
	}
	return s
}

func isLower(c byte) bool  { return 'a' <= c && c <= 'z' }
func isUpper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool  { return isLower(c) || isUpper(c) }
func isAlnum(c byte) bool  { return isAlpha(c) || isDigit(c) }
func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }
func isB64Std(c byte) bool { return isAlnum(c) || c == '+' || c == '/' || c == '=' }

// isToken68 reports the characters of an RFC 9110 token68, the '='
// padding aside.
func isToken68(c byte) bool { return isB64URL(c) || c == '.' || c == '~' || c == '+' || c == '/' }

func isKeyChar(c byte) bool { return isAlnum(c) || c == '_' || c == '-' || c == '.' }

// isValueEnd reports the characters that end an unquoted value.
func isValueEnd(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', ';', '&', '"', '\'', ')', '}', ']', '>', '<':
		return true
	}
	return false
}

// splice builds a string from s by replacing its spans; it is the single
// place where a rule allocates.
type splice struct {
	s    string
	b    strings.Builder
	last int
}

func (sp *splice) replace(from, to int, with string) {
	if sp.b.Len() == 0 && sp.last == 0 {
		sp.b.Grow(len(sp.s))
	}
	sp.b.WriteString(sp.s[sp.last:from])
	sp.b.WriteString(with)
	sp.last = to
}

func (sp *splice) result() string {
	if sp.last == 0 && sp.b.Len() == 0 {
		return sp.s
	}
	sp.b.WriteString(sp.s[sp.last:])
	return sp.b.String()
}

// keyValues redacts the value after a redacted key and "=" or ":".
func (r *redactor) keyValues(s string) string {
	if strings.IndexByte(s, '=') < 0 && strings.IndexByte(s, ':') < 0 {
		return s
	}
	sp := splice{s: s}
	for i := 0; i < len(s); i++ {
		if s[i] != '=' && s[i] != ':' {
			continue
		}
		j := i
		for j > sp.last && s[j-1] == ' ' {
			j--
		}
		if j > sp.last && (s[j-1] == '"' || s[j-1] == '\'') {
			j--
		}
		k := j
		for k > sp.last && isKeyChar(s[k-1]) {
			k--
		}
		if k == j || !r.secretKey(s[k:j]) {
			continue
		}
		v := i + 1
		for v < len(s) && s[v] == ' ' {
			v++
		}
		if strings.HasPrefix(s[v:], Redacted) {
			continue
		}
		if v < len(s) && s[v] == '[' {
			v++ // a Go slice in %v form: map[Authorization:[Bearer ...]]
		}
		var quote byte
		if v < len(s) && (s[v] == '"' || s[v] == '\'') {
			quote = s[v]
			v++
		}
		e := v
		if quote != 0 {
			for e < len(s) && s[e] != quote {
				if s[e] == '\\' {
					e++
				}
				e++
			}
			e = min(e, len(s))
		} else {
			for e < len(s) && !isValueEnd(s[e]) {
				e++
			}
		}
		if e == v || strings.HasPrefix(s[v:], Redacted) {
			continue
		}
		if quote == 0 && e < len(s) && s[e] == ' ' && isAuthScheme(s[v:e]) {
			continue // authSchemes redacts the credential, and the scheme stays readable
		}
		sp.replace(v, e, Redacted)
		i = e - 1
	}
	return sp.result()
}

func isAuthScheme(w string) bool {
	if len(w) < 4 || len(w) > 6 || (w[0]|0x20 != 'b' && w[0]|0x20 != 'd') {
		return false
	}
	return strings.EqualFold(w, "bearer") || strings.EqualFold(w, "dpop") || strings.EqualFold(w, "basic")
}

// authSchemes redacts a credential of 8 or more token68 characters after
// the Bearer, DPoP or Basic scheme. Auth parameters (Bearer realm="x")
// are not credentials and stay.
func authSchemes(s string) string {
	if strings.IndexByte(s, ' ') < 0 {
		return s
	}
	sp := splice{s: s}
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			continue
		}
		k := i
		for k > sp.last && isAlpha(s[k-1]) {
			k--
		}
		if !isAuthScheme(s[k:i]) {
			continue
		}
		v := i
		for v < len(s) && s[v] == ' ' {
			v++
		}
		e := v
		for e < len(s) && isToken68(s[e]) {
			e++
		}
		pad := e
		for e < len(s) && s[e] == '=' {
			e++
		}
		if e-v < 8 || (e > pad && e < len(s) && (isToken68(s[e]) || s[e] == '"')) {
			continue // too short, or an auth parameter: name=value
		}
		sp.replace(v, e, Redacted)
		i = e - 1
	}
	return sp.result()
}

// byteSequences redacts the content of a structured-field byte sequence
// of 16 or more base64 characters (RFC 8941 ":...:"), which is how RFC
// 9421 signatures travel.
func byteSequences(s string) string {
	first := strings.IndexByte(s, ':')
	if first < 0 || strings.IndexByte(s[first+1:], ':') < 0 {
		return s
	}
	sp := splice{s: s}
	for i := first; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		e := i + 1
		for e < len(s) && isB64Std(s[e]) {
			e++
		}
		if e < len(s) && s[e] == ':' && e-i-1 >= 16 {
			sp.replace(i+1, e, Redacted)
		}
		i = e - 1
	}
	return sp.result()
}

// jwsLike redacts a run of base64url characters and dots with two dots
// or more in which a segment other than the last starts like a base64url
// JSON object ("ey" or "ew"), is 10 characters or more and has an
// upper-case letter: a JWS or JWT, a DPoP proof, a JWE. The whole run
// goes, so that text glued to a token cannot shield it.
func jwsLike(s string) string {
	d := strings.IndexByte(s, '.')
	if d < 0 || strings.IndexByte(s[d+1:], '.') < 0 {
		return s
	}
	sp := splice{s: s}
	for i := 0; i < len(s); {
		if !isB64URL(s[i]) && s[i] != '.' {
			i++
			continue
		}
		e := i
		for e < len(s) && (isB64URL(s[e]) || s[e] == '.') {
			e++
		}
		if looksJWS(s[i:e]) {
			sp.replace(i, e, Redacted)
		}
		i = e
	}
	return sp.result()
}

func looksJWS(run string) bool {
	if strings.Count(run, ".") < 2 {
		return false
	}
	for {
		seg, rest, ok := strings.Cut(run, ".")
		if !ok {
			return false // the last segment
		}
		isUpperASCII := func(c rune) bool { return c < 128 && isUpper(byte(c)) } // #nosec G115 -- c < 128
		if len(seg) >= 10 && seg[0] == 'e' && (seg[1] == 'y' || seg[1] == 'w') && strings.IndexFunc(seg, isUpperASCII) >= 0 {
			return true
		}
		run = rest
	}
}

func isLocalChar(c byte) bool {
	return isAlnum(c) || c >= 0x80 || strings.IndexByte("._%+-!#$&*/=?^`{|}~'", c) >= 0
}

func isDomainChar(c byte) bool { return isAlnum(c) || c == '.' || c == '-' || c >= 0x80 }

// emails keeps the domain of an e-mail address: ***@example.com.
func emails(s string) string {
	if strings.IndexByte(s, '@') < 0 {
		return s
	}
	sp := splice{s: s}
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		k := i
		for k > sp.last && isLocalChar(s[k-1]) {
			k--
		}
		e := i + 1
		for e < len(s) && isDomainChar(s[e]) {
			e++
		}
		domain := strings.TrimRight(s[i+1:e], ".-")
		if k == i || s[k:i] == "***" || !strings.Contains(domain, ".") {
			continue
		}
		sp.replace(k, i, "***")
	}
	return sp.result()
}

// ipv4s truncates an IPv4 address, or an IPv4 prefix longer than /24, to
// its /24: 203.0.113.7 and 203.0.113.7/32 become 203.0.113.0/24.
func ipv4s(s string) string {
	if strings.IndexByte(s, '.') < 0 {
		return s
	}
	sp := splice{s: s}
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		e := i
		for e < len(s) && (isDigit(s[e]) || s[e] == '.') {
			e++
		}
		run := strings.TrimRight(s[i:e], ".")
		if a, ok := parseIPv4(run); ok {
			end := i + len(run)
			bits, pe := prefixLen(s, end, 32)
			bits = min(bits, 24)
			masked := netip.PrefixFrom(netip.AddrFrom4(a), bits).Masked().String()
			if s[i:pe] != masked {
				sp.replace(i, pe, masked)
			}
			e = max(e, pe)
		}
		i = e
	}
	return sp.result()
}

// parseIPv4 parses four decimal parts of 1 to 3 digits, each at most 255.
func parseIPv4(s string) ([4]byte, bool) {
	var a [4]byte
	for n := range 4 {
		part := s
		if n < 3 {
			var ok bool
			if part, s, ok = strings.Cut(s, "."); !ok {
				return a, false
			}
		}
		if len(part) == 0 || len(part) > 3 {
			return a, false
		}
		v := 0
		for j := 0; j < len(part); j++ {
			if !isDigit(part[j]) {
				return a, false
			}
			v = v*10 + int(part[j]-'0')
		}
		if v > 255 {
			return a, false
		}
		a[n] = byte(v)
	}
	return a, true
}

// prefixLen reads a "/bits" prefix length at s[i:] of at most maxBits
// and returns it with the index after it, or maxBits and i when there is
// none.
func prefixLen(s string, i, maxBits int) (int, int) {
	if i >= len(s) || s[i] != '/' {
		return maxBits, i
	}
	e := i + 1
	v := 0
	for e < len(s) && isDigit(s[e]) && e-i <= 3 {
		v = v*10 + int(s[e]-'0')
		e++
	}
	if e == i+1 || v > maxBits || (e < len(s) && isDigit(s[e])) {
		return maxBits, i
	}
	return v, e
}

func isHexOrColon(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') || c == ':' || c == '.'
}

// ipv6s truncates an IPv6 address, or an IPv6 prefix longer than /48, to
// its /48 (2001:db8:1::/48); an IPv4-mapped one becomes its IPv4 /24.
func ipv6s(s string) string {
	c := strings.IndexByte(s, ':')
	if c < 0 || strings.IndexByte(s[c+1:], ':') < 0 {
		return s
	}
	sp := splice{s: s}
	for i := 0; i < len(s); {
		if !isHexOrColon(s[i]) || (i > 0 && (isAlnum(s[i-1]) || s[i-1] == '_')) {
			i++
			continue
		}
		e := i
		for e < len(s) && isHexOrColon(s[e]) {
			e++
		}
		if e < len(s) && (isAlnum(s[e]) || s[e] == '_') || strings.Count(s[i:e], ":") < 2 {
			i = e
			continue
		}
		run := strings.TrimRight(s[i:e], ".")
		a, err := netip.ParseAddr(run)
		if err != nil && strings.HasSuffix(run, ":") {
			run = run[:len(run)-1]
			a, err = netip.ParseAddr(run)
		}
		if err == nil && a.Is6() {
			end := i + len(run)
			var masked string
			var pe int
			if a.Is4In6() {
				bits, p := prefixLen(s, end, 128)
				pe = p
				masked = netip.PrefixFrom(a.Unmap(), min(max(bits-96, 0), 24)).Masked().String()
			} else {
				bits, p := prefixLen(s, end, 128)
				pe = p
				masked = netip.PrefixFrom(a, min(bits, 48)).Masked().String()
			}
			if s[i:pe] != masked {
				sp.replace(i, pe, masked)
			}
			e = max(e, pe)
		}
		i = e
	}
	return sp.result()
}
