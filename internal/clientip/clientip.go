// Package clientip finds the address of the client that sent a request,
// trusting forwarding headers only from configured proxies.
//
// With no trusted proxies the answer is always the TCP peer address,
// whatever the headers say: forwarding headers are the first thing an
// attacker forges. With trusted proxies, the chosen header (RFC 7239
// Forwarded or X-Forwarded-For) is read only when the peer itself is a
// trusted proxy, and walked from right to left: each trusted hop is
// skipped, and the first untrusted address is the client. Entries left of
// it are client-supplied and never read.
package clientip

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Header names which forwarding header a [Resolver] reads.
type Header int

const (
	// XForwardedFor reads X-Forwarded-For, as written by most proxies and
	// load balancers.
	XForwardedFor Header = iota
	// Forwarded reads RFC 7239 Forwarded, using the for= parameter.
	Forwarded
)

// ErrNoClientIP reports that the request carries no usable client address:
// the peer address does not parse, or a trusted proxy wrote a hop that is
// not an IP address (RFC 7239 "unknown" or an obfuscated identifier).
var ErrNoClientIP = errors.New("clientip: no client address")

// MaxHops bounds how many forwarding entries are read from one request.
// An entry further left than this is never reached, so a request with a
// huge header costs no more than a normal one.
const MaxHops = 32

// Resolver resolves client addresses. The zero value trusts no proxy and
// returns the peer address. A Resolver is safe for concurrent use by
// multiple goroutines.
type Resolver struct {
	trusted []netip.Prefix
	header  Header
}

// New returns a Resolver that trusts the given proxy prefixes and reads
// header from them. It returns an error for an invalid prefix.
func New(header Header, trusted ...netip.Prefix) (*Resolver, error) {
	if header != XForwardedFor && header != Forwarded {
		return nil, fmt.Errorf("clientip: unknown header %d", header)
	}
	ps := make([]netip.Prefix, 0, len(trusted))
	for _, p := range trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("clientip: invalid trusted proxy prefix %q", p)
		}
		ps = append(ps, p.Masked())
	}
	return &Resolver{trusted: ps, header: header}, nil
}

// ClientIP returns the client's address for r, unmapped (IPv4-mapped IPv6
// becomes IPv4) and without zone. It returns [ErrNoClientIP] when no
// address can be found.
func (res *Resolver) ClientIP(r *http.Request) (netip.Addr, error) {
	peer, err := PeerAddr(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, err
	}
	if res == nil || !res.isTrusted(peer) {
		return peer, nil
	}
	var hops []string
	var name string
	if res.header == Forwarded {
		name = "Forwarded"
	} else {
		name = "X-Forwarded-For"
	}
	lines := r.Header.Values(name)
	// Walk the header lines from the last one, and each line's entries
	// from the right.
	client := peer
	read := 0
	for i := len(lines) - 1; i >= 0; i-- {
		hops = splitHops(lines[i], hops[:0])
		for j := len(hops) - 1; j >= 0; j-- {
			if read == MaxHops {
				return netip.Addr{}, ErrNoClientIP
			}
			read++
			var a netip.Addr
			var ok bool
			if res.header == Forwarded {
				a, ok = forwardedFor(hops[j])
			} else {
				a, ok = parseAddr(strings.TrimSpace(hops[j]))
			}
			if !ok {
				return netip.Addr{}, ErrNoClientIP
			}
			client = a
			if !res.isTrusted(a) {
				return a, nil
			}
		}
	}
	// Every hop was a trusted proxy: the leftmost is the best we know.
	return client, nil
}

func (res *Resolver) isTrusted(a netip.Addr) bool {
	for _, p := range res.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// PeerAddr parses an http.Request.RemoteAddr ("ip:port", "[ip6]:port" or a
// bare address), unmapped and without zone.
func PeerAddr(remote string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return normalize(ap.Addr()), nil
	}
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	a, ok := parseAddr(host)
	if !ok {
		return netip.Addr{}, ErrNoClientIP
	}
	return a, nil
}

func normalize(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// parseAddr parses a bare IP address, or one in brackets, with an optional
// port as X-Forwarded-For entries sometimes carry.
func parseAddr(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr()), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return normalize(a), true
		}
	}
	return netip.Addr{}, false
}

// splitHops splits a header line on commas outside quoted strings.
func splitHops(line string, dst []string) []string {
	start, quoted := 0, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			dst = append(dst, line[start:i])
			start = i + 1
		}
	}
	return append(dst, line[start:])
}

// forwardedFor returns the address of the for= parameter of one RFC 7239
// forwarded-element ("for=192.0.2.60;proto=http;by=203.0.113.43").
func forwardedFor(elem string) (netip.Addr, bool) {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "for") {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = strings.ReplaceAll(v[1:len(v)-1], `\`, "")
		}
		return parseAddr(v)
	}
	return netip.Addr{}, false
}
