package clientip

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	tests := []struct {
		name    string
		header  Header
		trusted []netip.Prefix
		remote  string
		xff     []string
		fwd     []string
		want    string
		wantErr error
	}{
		{name: "no_proxies_peer_only", remote: "203.0.113.7:5555", want: "203.0.113.7"},
		{name: "xff_spoofed_without_trusted_proxies", remote: "203.0.113.7:5555", xff: []string{"1.2.3.4"}, want: "203.0.113.7"},
		{name: "forwarded_spoofed_without_trusted_proxies", header: Forwarded, remote: "203.0.113.7:5555", fwd: []string{"for=1.2.3.4"}, want: "203.0.113.7"},
		{name: "xff_from_untrusted_peer_ignored", trusted: proxies, remote: "203.0.113.7:5555", xff: []string{"1.2.3.4"}, want: "203.0.113.7"},
		{name: "xff_from_trusted_proxy", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"198.51.100.9"}, want: "198.51.100.9"},
		{name: "xff_spoofed_leftmost", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"1.1.1.1, 198.51.100.9"}, want: "198.51.100.9"},
		{name: "xff_chain_of_trusted_proxies", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"6.6.6.6, 198.51.100.9, 10.9.9.9, 10.8.8.8"}, want: "198.51.100.9"},
		{name: "xff_split_over_lines", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"6.6.6.6, 198.51.100.9", "10.9.9.9"}, want: "198.51.100.9"},
		{name: "xff_all_trusted_leftmost", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"10.7.7.7, 10.9.9.9"}, want: "10.7.7.7"},
		{name: "xff_absent_trusted_peer", trusted: proxies, remote: "10.1.2.3:443", want: "10.1.2.3"},
		{name: "xff_garbage_from_proxy", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"1.1.1.1, not-an-ip"}, wantErr: ErrNoClientIP},
		{name: "xff_garbage_left_of_client_never_read", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"<script>, 198.51.100.9"}, want: "198.51.100.9"},
		{name: "xff_ipv4_mapped_ipv6_unmapped", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"::ffff:198.51.100.9"}, want: "198.51.100.9"},
		{name: "xff_zone_stripped", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"fe80::1%eth0"}, want: "fe80::1"},
		{name: "xff_with_port", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"198.51.100.9:1234"}, want: "198.51.100.9"},
		{name: "xff_bracketed_ipv6", trusted: proxies, remote: "10.1.2.3:443", xff: []string{"[2001:db8::1]"}, want: "2001:db8::1"},
		{name: "peer_ipv4_mapped_unmapped", remote: "[::ffff:203.0.113.7]:80", want: "203.0.113.7"},
		{name: "peer_ipv6_trusted_proxy", trusted: proxies, remote: "[2001:db8:ffff::5]:443", xff: []string{"2001:db8:1::9"}, want: "2001:db8:1::9"},
		{name: "peer_zone_stripped", remote: "[fe80::1%lo]:80", want: "fe80::1"},
		{name: "peer_bare_addr", remote: "192.0.2.1", want: "192.0.2.1"},
		{name: "peer_garbage", remote: "pipe", wantErr: ErrNoClientIP},
		{name: "forwarded_from_trusted_proxy", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", fwd: []string{`for=192.0.2.60;proto=http;by=203.0.113.43`}, want: "192.0.2.60"},
		{name: "forwarded_quoted_ipv6_port", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", fwd: []string{`for="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17"},
		{name: "forwarded_spoofed_leftmost", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", fwd: []string{`for=1.1.1.1, For=192.0.2.60`}, want: "192.0.2.60"},
		{name: "forwarded_quoted_comma", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", fwd: []string{`for="x,y", for=192.0.2.60`}, want: "192.0.2.60"},
		{name: "forwarded_unknown_from_proxy", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", fwd: []string{`for=unknown`}, wantErr: ErrNoClientIP},
		{name: "forwarded_obfuscated_from_proxy", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", fwd: []string{`for=_hidden`}, wantErr: ErrNoClientIP},
		{name: "forwarded_missing_for", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", fwd: []string{`proto=https`}, wantErr: ErrNoClientIP},
		{name: "forwarded_reader_ignores_xff", header: Forwarded, trusted: proxies, remote: "10.1.2.3:443", xff: []string{"1.1.1.1"}, want: "10.1.2.3"},
		{name: "xff_reader_ignores_forwarded", trusted: proxies, remote: "10.1.2.3:443", fwd: []string{"for=1.1.1.1"}, want: "10.1.2.3"},
		{name: "too_many_trusted_hops", trusted: proxies, remote: "10.1.2.3:443", xff: []string{strings.Repeat("10.0.0.1,", MaxHops) + "10.0.0.1"}, wantErr: ErrNoClientIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := New(tt.header, tt.trusted...)
			require.NoError(t, err)
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			for _, v := range tt.fwd {
				r.Header.Add("Forwarded", v)
			}
			got, err := res.ClientIP(r)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.String())
			require.Equal(t, tt.remote, r.RemoteAddr, "request not mutated")
		})
	}
}

func TestNilResolverIsPeerOnly(t *testing.T) {
	var res *Resolver
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "203.0.113.7:1"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	got, err := res.ClientIP(r)
	require.NoError(t, err)
	require.Equal(t, "203.0.113.7", got.String())
}

func TestNewRejectsInvalidPrefix(t *testing.T) {
	_, err := New(XForwardedFor, netip.Prefix{})
	require.ErrorContains(t, err, "invalid trusted proxy prefix")
	_, err = New(Header(9))
	require.ErrorContains(t, err, "unknown header")
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.1.2.3:443", "1.1.1.1, 198.51.100.9", `for="[2001:db8:cafe::17]:4711";proto=http`)
	f.Add("[::ffff:10.0.0.1]:1", "fe80::1%eth0", `for=unknown, for=_x`)
	f.Add("10.0.0.1:1", `"a,b",,`, `for="\"quoted\""`)
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	xff, _ := New(XForwardedFor, proxies...)
	fwd, _ := New(Forwarded, proxies...)
	f.Fuzz(func(t *testing.T, remote, x, fw string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", x)
		r.Header.Set("Forwarded", fw)
		for _, res := range []*Resolver{xff, fwd} {
			a, err := res.ClientIP(r)
			if err != nil {
				continue
			}
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("bad address %v", a)
			}
		}
	})
}
