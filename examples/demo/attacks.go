package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// withAttacks serves POST /demo/attacks beside the API (-serve -attacks):
// each call runs the client's script once against base and answers with
// its table, so that a dashboard can be watched filling and the alert
// rules in ops/ can be tested against the real server (ops/e2e_test.go).
// Calls run one at a time. Each round dials from a loopback address of its
// own (127.0.0.2, .3, ...) where the system routes all of 127.0.0.0/8
// (Linux), as a farm of clients would, so that per-address limits do not
// stop later rounds; elsewhere every round comes from 127.0.0.1. Each
// round signs in as an account of its own (client.account), so it never
// meets the per-user limit or the risk history an earlier round left.
// Where rounds share 127.0.0.1, quick ones share its per-address limit
// too (burst 200, about 60 requests a round): rows of a later round may
// then say NO, which the answer's status does not reflect.
func withAttacks(next http.Handler, a *api, base string) http.Handler {
	var (
		mu    sync.Mutex
		round int
	)
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.Handle("POST /demo/attacks", a.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		round++
		c, err := newClient(base, a)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		c.http = &http.Client{Timeout: 5 * time.Second, Transport: roundTransport(c, round)}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = report(w, c.script(r.Context()))
	})))
	return mux
}

// roundTransport dials from 127.0.0.(2 + round%250) when that address can
// be bound, and from the default address otherwise (where the system
// routes only 127.0.0.1, such as macOS).
func roundTransport(c *client, round int) http.RoundTripper {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+round%250))} // #nosec G115 -- 2..251 for any round >= 0
	ln, err := net.ListenTCP("tcp", src)
	if err != nil {
		return c.transport(nil)
	}
	_ = ln.Close()
	return c.transport((&net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}).DialContext)
}
