package servertls

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apiguard/apiguard/internal/clientip"
	"github.com/apiguard/apiguard/internal/problem"
)

const maxHops = clientip.MaxHops

func hstsValue(h HSTS) (string, error) {
	if h.MaxAge < time.Second {
		return "", fmt.Errorf("servertls: Config.HSTS.MaxAge %v is under a second and would send max-age=0, which tells browsers to forget HSTS; write e.g. 365 * 24 * time.Hour", h.MaxAge)
	}
	secs := int64(h.MaxAge / time.Second)
	if h.Preload && (h.MaxAge < 365*24*time.Hour || !h.IncludeSubDomains) {
		return "", errors.New("servertls: Config.HSTS.Preload needs MaxAge of at least one year and IncludeSubDomains (hstspreload.org requirements)")
	}
	v := "max-age=" + strconv.FormatInt(secs, 10)
	if h.IncludeSubDomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v, nil
}

func validateRedirect(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("servertls: Config.RedirectCleartext %q must be https://host[:port]", s)
	}
	return nil
}

func validateProxies(ps []netip.Prefix, h ProxyHeader) ([]netip.Prefix, error) {
	if len(ps) == 0 {
		if h != 0 {
			return nil, errors.New("servertls: Config.ProxyHeader is set but Config.TrustedProxies is empty; list the proxies that write it")
		}
		return nil, nil
	}
	if h != HeaderForwarded && h != HeaderXForwardedProto {
		return nil, errors.New("servertls: Config.ProxyHeader is required with Config.TrustedProxies: servertls.HeaderForwarded or servertls.HeaderXForwardedProto")
	}
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("servertls: Config.TrustedProxies has an invalid prefix %q", p)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Check returns nil when r arrived over HTTPS, and [ErrCleartext]
// otherwise. The connection decides (r.TLS); ProxyHeader is read only when
// the peer is one of TrustedProxies, and a header that is missing or does
// not parse means cleartext.
func (g *Guard) Check(r *http.Request) error {
	if r.TLS != nil {
		return nil
	}
	if len(g.proxies) == 0 {
		return ErrCleartext
	}
	peer, err := clientip.PeerAddr(r.RemoteAddr)
	if err != nil || !g.trusted(peer) {
		return ErrCleartext
	}
	var proto string
	if g.cfg.ProxyHeader == HeaderForwarded {
		proto = g.forwardedProto(r.Header.Values("Forwarded"))
	} else {
		proto = lastXForwardedProto(r.Header.Values("X-Forwarded-Proto"))
	}
	if !strings.EqualFold(proto, "https") {
		return ErrCleartext
	}
	return nil
}

func (g *Guard) trusted(a netip.Addr) bool {
	for _, p := range g.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func lastXForwardedProto(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	last := lines[len(lines)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

// forwardedProto walks the Forwarded elements from the right, skipping
// those whose for= is a trusted proxy: the first other element describes
// the client's own connection. Every element trusted: the leftmost one.
// A line with a quoted string left open means cleartext: the client's
// open quote would swallow the separators of an element a proxy appended
// to the same line, and the client's proto= would be read instead.
func (g *Guard) forwardedProto(lines []string) string {
	proto, read := "", 0
	for i := len(lines) - 1; i >= 0; i-- {
		if !quotesClosed(lines[i]) {
			return ""
		}
		elems := splitQuoted(lines[i], ',')
		for j := len(elems) - 1; j >= 0; j-- {
			if read++; read > maxHops {
				return ""
			}
			var forAddr netip.Addr
			forOK := false
			proto = ""
			for _, pair := range splitQuoted(elems[j], ';') {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok {
					continue
				}
				v = strings.Trim(strings.TrimSpace(v), `"`)
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "proto":
					proto = v
				case "for":
					forAddr, forOK = parseForwardedFor(v)
				}
			}
			if !forOK || !g.trusted(forAddr) {
				return proto
			}
		}
	}
	return proto
}

func parseForwardedFor(v string) (netip.Addr, bool) {
	if strings.HasPrefix(v, "[") {
		if end := strings.IndexByte(v, ']'); end > 0 {
			v = v[1:end]
		}
	} else if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// quotesClosed reports whether every quoted string of s ends in s.
func quotesClosed(s string) bool {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		}
	}
	return !quoted
}

// splitQuoted splits s on sep outside quoted strings (RFC 7239 §4).
func splitQuoted(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// Handler refuses cleartext requests and adds Strict-Transport-Security
// to HTTPS responses. A cleartext GET or HEAD is redirected with 308 when
// RedirectCleartext is set; every other cleartext request goes to
// ErrorHandler with [ErrCleartext]. Handler panics if next is nil.
func (g *Guard) Handler(next http.Handler) http.Handler {
	if next == nil {
		panic("servertls: Handler(nil)")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Check(r); err != nil {
			if g.cfg.RedirectCleartext != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				target := strings.TrimSuffix(g.cfg.RedirectCleartext, "/") + redirectPath(r.URL)
				http.Redirect(w, r, target, http.StatusPermanentRedirect) // #nosec G710 -- the host is Config.RedirectCleartext; only path and query come from the request (redirectPath)
				return
			}
			if g.cfg.ErrorHandler != nil {
				g.cfg.ErrorHandler(w, r, err)
				return
			}
			WriteError(w, r, err)
			return
		}
		w.Header().Set("Strict-Transport-Security", g.hsts)
		next.ServeHTTP(w, r)
	})
}

// redirectPath is the path and query of u for the redirect, always
// starting with "/": an opaque request target ("GET http:@evil.example")
// would otherwise be pasted after the configured host and turn it into
// userinfo or a label of another domain. Such a target redirects to "/".
func redirectPath(u *url.URL) string {
	p := u.EscapedPath()
	if u.Opaque != "" || !strings.HasPrefix(p, "/") {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}

var cleartextBody = problem.Marshal(problem.Problem{
	Type:   problem.TypeBase + "cleartext-refused",
	Title:  "HTTPS required",
	Status: http.StatusForbidden,
	Detail: "This API is served over HTTPS only.",
})

// WriteError is the default ErrorHandler: 403 with an
// application/problem+json body of fixed text.
func WriteError(w http.ResponseWriter, _ *http.Request, _ error) {
	problem.WriteEncoded(w, http.StatusForbidden, cleartextBody)
}
