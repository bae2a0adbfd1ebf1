package ratelimit

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

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

// KeyJoin keys requests by every key of fns together, such as an account
// and the client's address or device, so that a budget or limit applies
// to the pair: a failure budget keyed by account alone lets anyone lock
// that account out by failing on purpose, while one keyed by account and
// address (or device) locks out only the address that fails. Each part
// is length-prefixed, so that no two different tuples give one key. A
// request without a key for one of fns has no key.
//
//	Key: ratelimit.KeyJoin(account, ratelimit.KeyByIP(proxies...))
//
// It panics at wiring time when fns is empty or holds a nil KeyFunc.
func KeyJoin(fns ...KeyFunc) KeyFunc {
	if len(fns) == 0 || slices.ContainsFunc(fns, func(f KeyFunc) bool { return f == nil }) {
		panic("ratelimit: KeyJoin needs KeyFuncs")
	}
	fns = slices.Clone(fns)
	return func(r *http.Request) (string, error) {
		var buf [128]byte
		b := buf[:0]
		for _, fn := range fns {
			k, err := fn(r)
			if err != nil {
				return "", err
			}
			b = strconv.AppendInt(b, int64(len(k)), 10)
			b = append(b, ':')
			b = append(b, k...)
		}
		return string(b), nil
	}
}
