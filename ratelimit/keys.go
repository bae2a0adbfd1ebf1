package ratelimit

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/apiguard/apiguard/internal/clientip"
)

// KeyByIP keys requests by client address. With no trusted proxies the
// address is the TCP peer, whatever the headers say; with trusted proxy
// prefixes, X-Forwarded-For is read only when the peer itself is a trusted
// proxy, walked from right to left, and the first untrusted address is the
// client (see [KeyByForwarded] for RFC 7239 Forwarded). IPv6 addresses are
// grouped by /64, so a client cannot escape its limit by rotating
// addresses inside its own prefix. It panics at wiring time on an invalid
// prefix.
func KeyByIP(trustedProxies ...netip.Prefix) KeyFunc {
	return keyByIP(clientip.XForwardedFor, trustedProxies)
}

// KeyByForwarded is [KeyByIP] reading the RFC 7239 Forwarded field from
// the trusted proxies instead of X-Forwarded-For. Use the one your proxies
// write: a proxy that writes one but passes the other through unchanged
// lets clients forge it.
func KeyByForwarded(trustedProxies ...netip.Prefix) KeyFunc {
	return keyByIP(clientip.Forwarded, trustedProxies)
}

func keyByIP(h clientip.Header, trusted []netip.Prefix) KeyFunc {
	res, err := clientip.New(h, trusted...)
	if err != nil {
		panic(err.Error())
	}
	return func(r *http.Request) (string, error) {
		a, err := res.ClientIP(r)
		if err != nil {
			return "", ErrNoKey
		}
		// Built in a stack buffer: the key costs one allocation, its own.
		var buf [64]byte
		b := buf[:0]
		if a.Is6() {
			p, _ := a.Prefix(64)
			b = p.Addr().AppendTo(append(b, "ip6:"...))
		} else {
			b = a.AppendTo(append(b, "ip4:"...))
		}
		return string(b), nil
	}
}

// KeyByHeader keys requests by a request header's value, such as a device
// ID header set by a trusted client library. A request without the header
// has no key.
func KeyByHeader(name string) KeyFunc {
	canon := http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, error) {
		if v := r.Header[canon]; len(v) > 0 && v[0] != "" {
			return v[0], nil
		}
		return "", fmt.Errorf("%w: header %s absent", ErrNoKey, canon)
	}
}
