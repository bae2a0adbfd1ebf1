// Package servertls is the server's half of transport security: a
// hardened *tls.Config (Mozilla's intermediate or modern profile) with
// certificates reloaded from files, HSTS and cleartext refusal, handshake
// failures counted by a bounded reason, expiry gauges, and a check of the
// served chain against the SPKI pins the mobile apps carry, published to
// them as a signed document.
//
//	g, err := servertls.New(servertls.Config{
//		Profile:  servertls.Intermediate,
//		CertFile: "/etc/tls/chain.pem", KeyFile: "/etc/tls/key.pem",
//		Pins:     servertls.PinSet{Version: 3, Current: []string{cur}, Backup: []string{bak}},
//		HSTS:     servertls.HSTS{IncludeSubDomains: true},
//	})
//	ln, err := net.Listen("tcp", ":443")
//	srv := &http.Server{Handler: g.Handler(mux), ErrorLog: g.ErrorLog(), ReadHeaderTimeout: 10 * time.Second}
//	go srv.Serve(g.Listener(ln))          // TLS, failures counted
//	go http.ListenAndServe(":80", g.Handler(mux)) // cleartext: refused
//
// [Guard.Handler] goes right inside telemetry, before every other check: a
// refused cleartext request is traced but reaches nothing else. It reads the scheme from the connection,
// or from one forwarding header written by Config.TrustedProxies only.
//
// # Events
//
// tls_handshake_failed (rate-limited, with the count suppressed),
// tls_certificate_changed, tls_certificate_reload_failed, pin_mismatch
// (Error level), pin_backup_in_use. Metrics: [MetricHandshakeFailures],
// [MetricCertificateExpiry], [MetricCertificateReloads].
//
// What stays the application's: the certificate's issuance and renewal,
// the private key's custody, and the apps' pin validation itself.
package servertls
