// Command demo starts an API protected by apiguard on a loopback port, runs
// a scripted mobile client against it over real HTTP, and prints what
// happened to each request: the happy path and the attacks, each with the
// status, the reason and the correlation ID. It exits non-zero if an attack
// got through or the happy path failed.
//
//	go run ./examples/demo
//	go run ./examples/demo -serve   # keep the API up for curl
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apiguard/apiguard/telemetry"
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
	verbose := fs.Bool("v", false, "print the API's security log to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}

	logOut := io.Discard
	if *verbose || *serve {
		logOut = stderr
	}
	logger := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(logOut, nil)))
	api, err := newAPI(logger)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	if *serve {
		fmt.Fprintf(stdout, "apiguard demo API on %s\n\n", base)
		fmt.Fprintf(stdout, "  curl -i %s/v1/hello\n", base)
		fmt.Fprintf(stdout, "  curl -i -H 'X-Request-ID: my-trace-1' %s/v1/hello\n", base)
		fmt.Fprintf(stdout, "  curl -i -H 'Content-Type: application/reports+json' --data '[{\"type\":\"pinning-failure\",\"age\":0,\"url\":\"https://api.example.com/\",\"user_agent\":\"curl\",\"body\":{}}]' %s/v1/reports\n\n", base)
		fmt.Fprintln(stdout, "Security events are logged to stderr. Ctrl-C stops.")
		sig, stop := signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
		<-sig.Done()
		return nil
	}

	results := runClient(ctx, base)
	return report(stdout, results)
}

// newAPI wires the packages the way DESIGN.md recommends: telemetry
// outermost, then the routes.
func newAPI(logger *slog.Logger) (http.Handler, error) {
	obs, err := telemetry.New(telemetry.Config{Logger: logger})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/hello", func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "hello served")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"hello\":\"mobile\",\"correlation_id\":%q}\n", telemetry.IDFrom(r.Context()))
	})
	mux.Handle("POST /v1/reports", obs.ReportHandler())
	return obs.Handler(mux), nil
}

// result is one row of the table.
type result struct {
	name   string
	expect int
	status int
	reason string
	id     string
	err    error
}

func (r result) ok() bool { return r.err == nil && r.status == r.expect }

type step struct {
	name    string
	expect  int
	method  string
	path    string
	header  map[string]string
	body    string
	checkID func(sent, got string) error
}

func runClient(ctx context.Context, base string) []result {
	client := &http.Client{Timeout: 5 * time.Second}
	report := `[{"type":"pinning-failure","age":1200,"url":"https://api.example.com/v1/pay","user_agent":"Shop/5.2","body":{}}]`
	steps := []step{
		{name: "happy path: call with the app's correlation ID", expect: 200, method: "GET", path: "/v1/hello",
			header: map[string]string{"X-Request-ID": "app-7f3a-0001"},
			checkID: func(sent, got string) error {
				if got != sent {
					return fmt.Errorf("ID %q not kept", sent)
				}
				return nil
			}},
		{name: "happy path: client reports a pinning failure", expect: 204, method: "POST", path: "/v1/reports",
			header: map[string]string{"Content-Type": "application/reports+json"}, body: report},
		{name: "attack: header injection in X-Request-ID", expect: 200, method: "GET", path: "/v1/hello",
			header: map[string]string{"X-Request-ID": "x\"; Set-Cookie: session=attacker"},
			checkID: func(sent, got string) error {
				if got == sent || !telemetry.ValidID(got) {
					return errors.New("malicious ID echoed")
				}
				return nil
			}},
		{name: "attack: 10 KB correlation ID", expect: 200, method: "GET", path: "/v1/hello",
			header: map[string]string{"X-Request-ID": strings.Repeat("A", 10<<10)},
			checkID: func(sent, got string) error {
				if len(got) > telemetry.MaxIDLength {
					return errors.New("oversize ID echoed")
				}
				return nil
			}},
		{name: "attack: malformed client report", expect: 400, method: "POST", path: "/v1/reports",
			header: map[string]string{"Content-Type": "application/reports+json"}, body: `[{"type":"x","evil":true}]`},
		{name: "attack: oversize client report", expect: 413, method: "POST", path: "/v1/reports",
			header: map[string]string{"Content-Type": "application/reports+json"}, body: "[" + strings.Repeat(" ", 70<<10) + "]"},
		{name: "attack: report with the wrong media type", expect: 415, method: "POST", path: "/v1/reports",
			header: map[string]string{"Content-Type": "text/plain"}, body: report},
	}
	results := make([]result, 0, len(steps))
	for _, s := range steps {
		results = append(results, s.do(ctx, client, base))
	}
	return results
}

func (s step) do(ctx context.Context, client *http.Client, base string) result {
	res := result{name: s.name, expect: s.expect}
	var body io.Reader
	if s.body != "" {
		body = strings.NewReader(s.body)
	}
	req, err := http.NewRequestWithContext(ctx, s.method, base+s.path, body)
	if err != nil {
		res.err = err
		return res
	}
	for k, v := range s.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		res.err = err
		return res
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	res.id = resp.Header.Get("X-Request-ID")
	res.reason = reasonOf(resp)
	if s.checkID != nil {
		res.err = s.checkID(s.header["X-Request-ID"], res.id)
		if res.err == nil && s.expect == 200 && res.id != s.header["X-Request-ID"] {
			res.reason = "ID replaced"
		}
	}
	return res
}

// reasonOf returns the problem type of a problem+json answer, or the
// status text.
func reasonOf(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		if _, after, ok := strings.Cut(string(b), `"type":"urn:apiguard:problem:`); ok {
			if typ, _, ok := strings.Cut(after, `"`); ok {
				return typ
			}
		}
	}
	return http.StatusText(resp.StatusCode)
}

func report(out io.Writer, results []result) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tEXPECTED\tSTATUS\tREASON\tCORRELATION ID\tOK")
	failed := 0
	for _, r := range results {
		mark := "yes"
		if !r.ok() {
			mark = "NO"
			failed++
		}
		reason := r.reason
		if r.err != nil {
			reason = r.err.Error()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", r.name, r.expect, r.status, reason, r.id, mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nsummary: %d of %d requests answered as expected\n", len(results)-failed, len(results))
	if failed > 0 {
		return fmt.Errorf("%d of %d requests did not get the expected answer", failed, len(results))
	}
	return nil
}
