// Command demo starts an API protected by apiguard on a loopback port, over
// HTTPS with a throwaway CA made at start (servertls; a second port
// refuses cleartext), runs a scripted mobile client against it over real
// HTTP, and prints what
// happened to each request: the happy path and the attacks from real
// incidents, each with the status, the reason and the correlation ID. It
// exits non-zero if an attack got through or the happy path failed.
//
// The client enrols hardware device keys: an Android Keystore key with its
// Key Attestation chain, and a Secure Enclave key vouched for by an App
// Attest assertion; each then signs a payment (RFC 9421,
// ecdsa-p256-sha256). Where an answer does not say why a request was
// refused (an attestation or a revoked key is one 401 to the client, on
// purpose), the row adds the reason the API logged for it.
//
//	go run ./examples/demo
//	go run ./examples/demo -serve   # keep the API up for curl
//	go run ./examples/demo -http    # plain HTTP, as behind a TLS-terminating proxy (ops/, load tests)
//
// Several instances: -redis puts every store in Redis, and a master
// secret shared by the instances (-secret-file FILE, or the environment
// variable APIGUARD_DEMO_SECRET; base64 of 32 bytes or more, e.g. from
// `openssl rand -base64 32`) gives them the same rate-limit key secret,
// device master and token-signing key, each derived from it with HKDF.
// Instances started so share one rate limit, one replay cache and one
// token issuer:
//
//	export APIGUARD_DEMO_SECRET=$(openssl rand -base64 32)
//	go run ./examples/demo -serve -http -redis localhost:6379 -addr 127.0.0.1:8081 &
//	go run ./examples/demo -serve -http -redis localhost:6379 -addr 127.0.0.1:8082 &
//
// Without the secret every process makes its own (as a single instance
// needs), and -redis warns that instances will share no tokens or limits.
// Enrolled device keys, used Android enrolment challenges and signature
// nonces are in Redis too, and the enrolment challenges are MACed with a
// key derived from the secret, so any instance accepts another's. What
// stays per instance: the PKCE codes of the demo's authorization server
// (authorize and redeem at one instance), the throwaway TLS CA without
// -http (trust each instance's ca.pem) and the test roots that stand in
// for Apple's App Attest root and Google's Key Attestation roots.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/apiguard/apiguard/attest"
	"github.com/apiguard/apiguard/attest/androidkey"
	"github.com/apiguard/apiguard/attest/appattest"
	"github.com/apiguard/apiguard/attest/attesttest"
	"github.com/apiguard/apiguard/auth"
	"github.com/apiguard/apiguard/ratelimit"
	"github.com/apiguard/apiguard/servertls"
	"github.com/apiguard/apiguard/signing"
	"github.com/apiguard/apiguard/telemetry"
	"go.opentelemetry.io/otel/metric"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run is main without the process: flags in, table out, an error when the
// demo failed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	serve := fs.Bool("serve", false, "keep the API running and print curl commands instead of running the client")
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	plain := fs.Bool("http", false, "serve plain HTTP instead of HTTPS with a throwaway CA (load tests of the chain, ops/)")
	verbose := fs.Bool("v", false, "print the API's security log to stderr")
	redisAddr := fs.String("redis", "", "Redis address (host:port): every store becomes a redisstore one, as several instances would share")
	loadTest := fs.Bool("loadtest", false, "with -serve: raise the rate limits out of the way, for load tests of the chain")
	secretFile := fs.String("secret-file", "", "file holding the base64 master secret that instances share (default: $"+secretEnv+"; neither: random per process)")
	attacks := fs.Bool("attacks", false, "with -serve: also serve POST /demo/attacks, which runs the client's attacks once per call (for dashboards and ops/)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	logOut := io.Discard
	if *verbose || *serve {
		logOut = stderr
	}
	sec, err := loadSecrets(*secretFile)
	if err != nil {
		return err
	}
	if *redisAddr != "" && !sec.shared {
		fmt.Fprintf(stderr, "demo: no shared secret (-secret-file or %s): this instance shares Redis but no tokens or limits with others\n", secretEnv)
	}
	metrics, err := newMetrics()
	if err != nil {
		return err
	}
	d, err := start(startOptions{addr: *addr, plain: *plain, logger: newLogger(logOut, slog.LevelInfo), redisAddr: *redisAddr, secrets: sec,
		meters: metrics.provider, metrics: metrics.handler, loadTest: *loadTest, attacks: *serve && *attacks})
	if err != nil {
		return err
	}
	defer d.close()

	if *serve {
		tok, err := d.api.issuer.mint(map[string]any{"scope": "orders:read"}, time.Now(), 5*time.Minute)
		if err != nil {
			return err
		}
		base, curl := d.base, "curl"
		fmt.Fprintf(stdout, "apiguard demo API on %s\n", base)
		if d.pki != nil {
			fmt.Fprintf(stdout, "throwaway CA certificate: %s\n", d.pki.caFile)
			fmt.Fprintf(stdout, "cleartext port (refuses every request): %s\n", d.cleartext)
			fmt.Fprintln(stdout, d.pki.pinLine())
			curl = "curl --cacert " + d.pki.caFile
		}
		fmt.Fprintln(stdout)
		fmt.Fprintf(stdout, "  %s -i -H 'Authorization: Bearer %s' %s/v1/orders\n", curl, tok, base)
		fmt.Fprintf(stdout, "  %s -i %s/v1/orders                      # no token: 401\n", curl, base)
		fmt.Fprintf(stdout, "  %s -i -H 'X-Request-ID: my-trace-1' %s/v1/orders\n", curl, base)
		fmt.Fprintf(stdout, "  %s -i -H 'Content-Type: application/reports+json' --data '[{\"type\":\"pinning-failure\",\"age\":0,\"url\":\"https://api.example.com/\",\"user_agent\":\"curl\",\"body\":{}}]' %s/v1/reports\n", curl, base)
		fmt.Fprintf(stdout, "  %s -s %s/metrics | grep apiguard_security_events   # the security events counting up\n", curl, base)
		fmt.Fprintf(stdout, "  %s -s %s/healthz                                   # the same server without the chain (for load tests)\n", curl, base)
		if d.pki != nil {
			fmt.Fprintf(stdout, "  curl -i %s/v1/orders   # cleartext: 403\n", d.cleartext)
			fmt.Fprintf(stdout, "  %s --tls-max 1.1 %s/healthz   # an old TLS client: alert protocol version\n", curl, base)
			fmt.Fprintf(stdout, "  %s --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-SHA %s/healthz   # CBC only: alert handshake failure\n", curl, base)
		}
		hints, cleanup, err := cliHints(d)
		if err != nil {
			return err
		}
		defer cleanup()
		fmt.Fprintf(stdout, "\nwrite paths with the apiguard CLI (go install ./cmd/apiguard):\n  %s\n", strings.Join(hints, "\n  "))
		fmt.Fprintln(stdout, "\nThe token above lives 5 minutes. Security events are logged to stderr. Ctrl-C stops.")
		sig, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM) // and the throwaway CA's files go
		defer stop()
		<-sig.Done()
		return nil
	}

	c, err := newClient(d.base, d.api)
	if err != nil {
		return err
	}
	results := c.script(ctx)
	if err := report(stdout, results); err != nil {
		return err
	}
	if d.pki != nil {
		fmt.Fprintf(stdout, "\ntransport: HTTPS on %s (servertls, intermediate profile: TLS 1.2 and 1.3, AEAD suites), throwaway CA made at start;\n", d.base)
		fmt.Fprintf(stdout, "  cleartext port %s refuses every request\n", d.cleartext)
		fmt.Fprintln(stdout, "  "+d.pki.pinLine())
	}
	printEvents(ctx, stdout, d.base, c.http)
	return nil
}

// newLogger is the demo's log: JSON, with secrets removed and personal
// data truncated by telemetry's redacting handler before a record is
// written. The observer puts its own handler over it (Observer.Logger),
// so that events are counted from the records as logged.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	json := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(telemetry.NewRedactHandler(json, telemetry.RedactConfig{PersonalData: true}))
}

type startOptions struct {
	addr      string
	plain     bool
	logger    *slog.Logger
	redisAddr string
	secrets   *secrets // nil: random per process
	meters    metric.MeterProvider
	metrics   http.Handler
	loadTest  bool
	attacks   bool
}

// demo is the API listening: on HTTPS and a cleartext port that refuses
// everything, or on plain HTTP alone (-http).
type demo struct {
	base, cleartext string // cleartext: "" with -http
	api             *api
	pki             *pki // nil with -http
	closers         []func()
}

func (d *demo) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// start listens on o.addr and serves the API there.
func start(o startOptions) (_ *demo, err error) {
	d := &demo{}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { _ = ln.Close() })
	d.base = "http://" + ln.Addr().String()
	var clearLn net.Listener
	if !o.plain {
		if d.pki, err = newPKI(ln.Addr().(*net.TCPAddr).IP); err != nil {
			return nil, err
		}
		d.closers = append(d.closers, d.pki.close)
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		if clearLn, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return nil, err
		}
		d.closers = append(d.closers, func() { _ = clearLn.Close() })
		d.base = "https://" + ln.Addr().String()
		d.cleartext = "http://" + clearLn.Addr().String()
	}
	if o.secrets == nil {
		if o.secrets, err = randomSecrets(); err != nil {
			return nil, err
		}
	}
	d.api, err = newAPI(apiOptions{base: d.base, logger: o.logger, redisAddr: o.redisAddr, secrets: o.secrets, meters: o.meters, metrics: o.metrics,
		loadTest: o.loadTest, pki: d.pki, cleartext: d.cleartext})
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, d.api.close)
	handler := d.api.handler
	if o.attacks {
		handler = withAttacks(handler, d.api, d.base)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	d.closers = append(d.closers, func() { _ = srv.Close() })
	if d.api.guard == nil {
		go func() { _ = srv.Serve(ln) }()
		return d, nil
	}
	// The TLS port, handshakes counted; the cleartext port answers every
	// request with the guard's refusal (its handler is the same chain).
	srv.ErrorLog = d.api.guard.ErrorLog()
	clear := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: d.api.guard.ErrorLog()}
	d.closers = append(d.closers, func() { _ = clear.Close() })
	go func() { _ = srv.Serve(d.api.guard.Listener(ln)) }()
	go func() { _ = clear.Serve(clearLn) }()
	return d, nil
}

// api is the protected service with its in-process identity provider.
type api struct {
	handler      http.Handler
	issuer       *issuer
	ca           *attesttest.CA        // the test root standing in for Apple's
	androidCA    *attesttest.AndroidCA // the test root standing in for Google's
	deviceKeys   deviceKeyStore        // enrolled device keys (the support desk revokes lost phones here)
	why          *whyLog               // refusal reasons by correlation ID, for the table
	deviceMaster []byte                // the master each device's signing secret derives from
	verifier     *auth.Verifier
	guard        *servertls.Guard // nil with -http
	pki          *pki
	cleartext    string
	closers      []func()
}

func (a *api) close() {
	_ = a.verifier.Close()
	if a.guard != nil {
		_ = a.guard.Close()
	}
	for _, c := range a.closers {
		c()
	}
}

// secure puts h behind the guard: cleartext refused, HSTS added.
func (a *api) secure(h http.Handler) http.Handler {
	if a.guard == nil {
		return h
	}
	return a.guard.Handler(h)
}

type apiOptions struct {
	base      string
	logger    *slog.Logger
	redisAddr string
	secrets   *secrets
	meters    metric.MeterProvider
	metrics   http.Handler
	loadTest  bool
	pki       *pki   // HTTPS with this chain; nil: plain HTTP
	cleartext string // the cleartext port's base URL
}

// newAPI wires the packages the way DESIGN.md recommends: telemetry
// outermost, an IP limiter before any cryptography, then per route the
// access-token check, the signature check, per-subject limits and the
// risk assessment.
func newAPI(o apiOptions) (*api, error) {
	base, logger := o.base, o.logger
	// The issuer's name is the same on every instance, and so is its key
	// with a shared secret: a token minted by one verifies at all.
	is, err := newIssuer(demoIssuer, "https://api.demo.example", o.secrets.issuerKey)
	if err != nil {
		return nil, err
	}
	st, err := newStores(o.redisAddr, o.secrets.limitKey)
	if err != nil {
		return nil, err
	}
	// The client sends its device model, so that signature mismatches
	// from one model (an emulator farm) stand out on the metrics.
	// whyLog keeps each request's refusal reason for the demo's table.
	why := newWhyLog(logger.Handler())
	obs, err := telemetry.New(telemetry.Config{Logger: slog.New(why), MeterProvider: o.meters, DeviceModelHeader: "X-Device-Model"})
	if err != nil {
		return nil, err
	}
	// Every package logs through the observer's logger, so that events
	// outside a request (key-set refreshes, store failures) are counted on
	// the demo's meter provider too.
	logger = obs.Logger()
	// The key set is fetched from the demo itself: over HTTPS, trusting
	// the throwaway CA.
	var jwksClient *http.Client
	if o.pki != nil {
		jwksClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: o.pki.roots}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	v, err := auth.New(auth.Config{
		Issuers: []auth.Issuer{{
			Issuer:   is.url,
			Audience: []string{is.audience},
			JWKSURL:  base + "/.well-known/jwks.json",
		}},
		DPoP:        auth.DPoPAllowed,
		DPoPURL:     base,
		ReplayStore: st.authReplay,
		HTTPClient:  jwksClient,
		Logger:      logger,
	})
	if err != nil {
		return nil, err
	}
	// Each device signs with its own secret, derived from one master secret
	// at enrolment (HKDF); the API keeps only the master.
	sig, err := signing.New(signing.Config{
		Keys:        signing.DerivedKeys(o.secrets.deviceMaster, demoSalt),
		ReplayStore: st.signingReplay,
		Scheme:      scheme(base), // https, or http with -http
		Logger:      logger,
	})
	if err != nil {
		return nil, err
	}
	// Per client address, before any cryptography: shields the checks.
	perIP, err := ratelimit.New(ratelimit.Config{
		Name:      "ip",
		Limit:     scaled(o.loadTest, ratelimit.Limit{Requests: 600, Per: time.Minute, Burst: 200}),
		Key:       ratelimit.KeyByIP(), // no proxy in front of the demo
		Store:     st.limits,
		KeySecret: st.keySecret,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	// Per subject, after auth: reads the verified claims.
	perUser, err := ratelimit.New(ratelimit.Config{
		Name:  "user",
		Limit: scaled(o.loadTest, ratelimit.Limit{Requests: 30, Per: time.Minute, Burst: 5}),
		Key: func(r *http.Request) (string, error) {
			if c, ok := auth.ClaimsFrom(r.Context()); ok {
				return "sub:" + c.Subject, nil
			}
			return "", ratelimit.ErrNoKey
		},
		Store:     st.limits,
		KeySecret: st.keySecret,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	// Failures per account and client address on the password login:
	// credential stuffing. Keyed by the account alone, anyone could lock
	// its owner out by failing on purpose (SECURITY.md); the account is
	// normalised the way the login compares it.
	stuffing, err := ratelimit.NewFailureBudget(ratelimit.FailureConfig{
		Name: "login",
		Key: ratelimit.KeyJoin(func(r *http.Request) (string, error) {
			return strings.ToLower(strings.TrimSpace(r.FormValue("username"))), nil
		}, ratelimit.KeyByIP()),
		Budget:    3,
		Per:       15 * time.Minute,
		Lockout:   time.Minute,
		Store:     st.failures,
		KeySecret: st.keySecret,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	is.routes(mux)
	mux.Handle("POST /v1/login", stuffing.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.FormValue("username")
		if user == demoUser && r.FormValue("password") == "correct horse battery staple" {
			writeJSON(w, map[string]string{"status": "signed in"})
			return
		}
		// Who failed, from where: personal data, truncated in the log by
		// the redacting handler (***@shop.example, 127.0.0.0/24).
		logger.WarnContext(r.Context(), "login failed", "user", user, "client_ip", r.RemoteAddr)
		w.WriteHeader(http.StatusUnauthorized)
	})))
	pay := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		device, _ := signing.KeyIDFrom(r.Context())
		var p struct{ Amount int }
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		logger.InfoContext(r.Context(), "payment", "device", device, "amount", p.Amount)
		writeJSON(w, map[string]any{"paid": p.Amount, "device": device})
	})
	mux.Handle("POST /v1/pay", v.Require("payments")(sig.Handler(pay)))
	mux.Handle("GET /v1/orders", v.Require("orders:read")(perUser.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := auth.ClaimsFrom(r.Context())
		logger.InfoContext(r.Context(), "orders listed", "sub", claims.Subject)
		writeJSON(w, map[string]any{"orders": []string{"A-1001", "A-1002"}, "sub": claims.Subject})
	}))))
	mux.Handle("POST /v1/orders", v.Require("orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	mux.Handle("POST /v1/reports", obs.ReportHandler())

	// The premium endpoint: App Attest and the risk assessment. No real
	// device is here, so the attestation root is a test CA of attesttest.
	ca, err := attesttest.NewCA(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	appAttest, err := appattest.New(appattest.Config{
		AppIDs: []string{demoAppID}, Roots: ca.Roots(),
		Keys: st.attestKeys, Challenges: st.attestChallenges, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	risk, err := attest.New(attest.Config{
		AppAttest: appAttest,
		Subject: func(r *http.Request) (string, error) {
			if c, ok := auth.ClaimsFrom(r.Context()); ok {
				return c.Subject, nil
			}
			return "", nil
		},
		// The demo's client plays the CDN that adds geo headers: loopback is trusted.
		Locator:   &attest.HeaderLocator{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		History:   st.attestHistory,
		StepUpACR: []string{"urn:demo:mfa"},
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	mux.Handle("POST /v1/attest/challenge", appAttest.ChallengeHandler())
	mux.Handle("POST /v1/attest/enroll", v.Handler(enrollHandler(appAttest)))
	mux.Handle("POST /v1/premium", v.Require("payments")(risk.Require(attest.Thresholds{Monitor: 20, StepUp: 50, Deny: 90})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rk, _ := attest.RiskFrom(r.Context())
			writeJSON(w, map[string]any{"premium": "content", "risk": rk.Score})
		}))))

	// Device keys: a key made in Android Keystore, proven by Key
	// Attestation to live in the TEE of a locked, verified device, or a
	// Secure Enclave key vouched for by an App Attest assertion, enrolled
	// as the ecdsa-p256-sha256 key that signs the device's payments. No
	// phone is here either: the Android root is a test root of
	// attesttest, and the revocation status list the application's own
	// (empty; a real service leaves Roots and StatusList unset).
	androidCA, err := attesttest.NewAndroidCA(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	android, err := androidkey.New(androidkey.Config{
		Packages: []string{demoAndroidPackage}, SignatureDigests: [][]byte{demoAndroidSigner[:]},
		Roots: androidCA.Roots(), StatusList: []byte(`{"entries":{}}`), Nonces: st.androidNonces, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() { _ = android.Close() })
	challenges := enrolChallenges{key: o.secrets.enrolKey, ttl: 5 * time.Minute}
	androidEnrol, err := android.EnrolHandler(androidkey.Enrolment{Challenge: challenges.challenge, Enrol: enrol(st.deviceKeys, true)})
	if err != nil {
		return nil, err
	}
	iosEnrol, err := appAttest.EnrolHandler(appattest.Enrolment{Enrol: enrol(st.deviceKeys, false)})
	if err != nil {
		return nil, err
	}
	// A verifier of its own for device keys: an HMAC device ID and an
	// enrolled key ID never meet in one key space.
	deviceSig, err := signing.New(signing.Config{Keys: signingKeys(st.deviceKeys), ReplayStore: st.deviceReplay, Scheme: scheme(base), Logger: logger})
	if err != nil {
		return nil, err
	}
	mux.Handle("POST /v1/device-keys/challenge", v.Handler(challenges.issue()))
	mux.Handle("POST /v1/device-keys/android", v.Handler(androidEnrol))
	mux.Handle("POST /v1/device-keys/ios", v.Handler(iosEnrol))
	mux.Handle("POST /v1/pay/device", v.Require("payments")(deviceSig.Handler(pay)))

	a := &api{issuer: is, ca: ca, androidCA: androidCA, deviceKeys: st.deviceKeys, why: why, deviceMaster: o.secrets.deviceMaster, verifier: v, pki: o.pki, cleartext: o.cleartext, closers: st.closers}
	if o.pki != nil {
		// The transport: Mozilla's intermediate profile, the throwaway
		// chain checked against the apps' pins before anything is served.
		a.guard, err = servertls.New(servertls.Config{
			Profile:  servertls.Intermediate,
			CertFile: o.pki.certFile, KeyFile: o.pki.keyFile,
			Pins:          o.pki.pins,
			MeterProvider: o.meters,
			Logger:        logger,
		})
		if err != nil {
			a.close()
			return nil, err
		}
	}
	// The guard sits right inside telemetry: a refused cleartext request
	// gets a correlation ID and reaches nothing else.
	root := http.NewServeMux()
	root.Handle("/", obs.Handler(a.secure(perIP.Handler(mux))))
	root.Handle("GET /healthz", a.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })))
	// Readiness for the orchestrator, and the dependency gauges on /metrics.
	root.Handle("GET /readyz", a.secure(obs.Health(
		telemetry.Check{Name: "jwks", Ready: v},
		telemetry.Check{Name: "ratelimit-ip", Ready: perIP},
		telemetry.Check{Name: "ratelimit-user", Ready: perUser},
		telemetry.Check{Name: "android-key-status", Ready: android},
	)))
	if o.metrics != nil {
		root.Handle("GET /metrics", a.secure(o.metrics))
	}
	a.handler = root
	return a, nil
}

// scheme is the scheme of base: the one clients sign.
func scheme(base string) string {
	s, _, _ := strings.Cut(base, "://")
	return s
}

// scaled lifts a limit out of the way of a load test.
func scaled(loadTest bool, l ratelimit.Limit) ratelimit.Limit {
	if loadTest {
		return ratelimit.Limit{Requests: 1 << 30, Per: time.Second, Burst: 1 << 20}
	}
	return l
}

// The demo's master secret and salt for device keys, when no shared secret
// is given (then the master derives from it). A real service loads the
// master from its secret store.
var (
	demoMaster = []byte("apiguard-demo-master-secret-0123456789")
	demoSalt   = []byte("apiguard-demo")
)

// demoIssuer is the authorization server's issuer identifier, on every
// instance (its key set is served by each at /.well-known/jwks.json).
const demoIssuer = "https://id.demo.example/"

// demoUser is the account of the password login.
const demoUser = "alice@shop.example"

// demoAppID is the App Attest App ID of the demo's iOS app.
const demoAppID = "DEMO123456.dev.apiguard.demo"

// demoAndroidPackage and demoAndroidSigner are the package name and the
// SHA-256 digest of the signing certificate of the demo's Android app.
const demoAndroidPackage = "dev.apiguard.demo"

var demoAndroidSigner = sha256.Sum256([]byte("the demo Android app's signing certificate (DER)"))

// result is one row of the table.
type result struct {
	name   string
	attack bool
	expect int
	status int
	reason string
	id     string
	body   string // the answer's body, up to 64 KiB
	err    error
}

func (r result) ok() bool { return r.err == nil && r.status == r.expect }

func report(out io.Writer, results []result) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tEXPECTED\tSTATUS\tREASON\tCORRELATION ID\tOK")
	failed, stopped, attacks := 0, 0, 0
	for _, r := range results {
		mark := "yes"
		if !r.ok() {
			mark = "NO"
			failed++
		}
		if r.attack {
			attacks++
			if r.ok() {
				stopped++
			}
		}
		reason := r.reason
		if r.err != nil {
			reason = r.err.Error()
		}
		kind := "happy path"
		if r.attack {
			kind = "attack"
		}
		expect, status := strconv.Itoa(r.expect), strconv.Itoa(r.status)
		if r.expect == 0 && r.status == 0 { // refused in the handshake: no HTTP status
			expect, status = "-", "-"
		}
		fmt.Fprintf(tw, "%s: %s\t%s\t%s\t%s\t%s\t%s\n", kind, r.name, expect, status, reason, r.id, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nsummary: %d of %d requests answered as expected; %d of %d attacks stopped\n",
		len(results)-failed, len(results), stopped, attacks)
	if failed > 0 {
		return fmt.Errorf("%d of %d requests did not get the expected answer", failed, len(results))
	}
	return nil
}
