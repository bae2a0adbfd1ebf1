// Package redistest starts real redis-server processes for tests. It is
// imported only by tests.
//
// A package's TestMain calls [Main], which starts one server that the
// package's tests share through [Shared] (emptied for each test); a test
// that stops, pauses or reconfigures its server gets one of its own from
// [Start], stopped at cleanup.
//
// When the redis-server binary is not on PATH the tests are skipped with
// a message saying how to install it, which even a plain go test ./...
// shows: Main skips the whole package and go test reports it as
// "ok ... [no tests to run]"; Start says so on stderr. Under
// APIGUARD_REQUIRE_REDIS=1 (as .ci/run sets) they fail instead: CI must
// never pass by skipping the store tests.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process on a loopback port. Its methods are
// safe for concurrent use by multiple goroutines.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	extra []string // further redis-server arguments
	// shared marks the server of [Main], which tests get from [Shared]
	// and must not stop, pause or restart.
	shared bool

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts redis-server on a free loopback port, waits until it
// answers PING, and registers its shutdown with t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, required, err := binary()
	if err != nil {
		skip(t, err.Error()+" to run this test", required)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// binary finds redis-server on PATH, and says whether its absence must
// fail rather than skip (APIGUARD_REQUIRE_REDIS=1, as .ci/run sets).
func binary() (bin string, required bool, err error) {
	required = os.Getenv("APIGUARD_REQUIRE_REDIS") == "1"
	if bin, err = exec.LookPath("redis-server"); err != nil {
		return "", required, errors.New("redis-server not found on PATH: install it (apt-get install -y redis-server)")
	}
	return bin, required, nil
}

// Main runs a package's tests and examples with one shared redis-server,
// whose address it stores in *addr before m.Run, for examples (which have
// no testing.T to call [Start] with); it returns m.Run's exit code for
// os.Exit. Without the binary it skips the whole package with a message,
// or fails it under APIGUARD_REQUIRE_REDIS=1.
func Main(m *testing.M, addr *string) int {
	bin, required, err := binary()
	if err != nil {
		fmt.Println("redistest:", err.Error()+"; skipping every test of the package")
		if required {
			fmt.Println("redistest: APIGUARD_REQUIRE_REDIS=1: failing instead")
			return 1
		}
		// The go command's own marker, so that even a plain
		// "go test ./..." says so: "ok ... [no tests to run]".
		fmt.Println("testing: warning: no tests to run")
		return 0
	}
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		fmt.Fprintln(os.Stderr, "redistest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	tb := mainTB{}
	s := &Server{t: tb, bin: bin, dir: dir, port: freePort(tb)}
	s.Restart()
	s.shared = true
	defer s.stop()
	*addr = s.Addr()
	sharedServer.Store(s)
	defer sharedServer.Store(nil)
	defer stopSharedCluster()
	return m.Run()
}

var sharedServer atomic.Pointer[Server]

// Shared returns the redis-server that [Main] started for the package,
// emptied (FLUSHALL), so that the package's tests share one process
// instead of starting one each. It is for tests that neither stop,
// pause, restart nor reconfigure the server, nor make it sleep (use
// [Start] for those; the shared server's Stop, Restart, Pause and Resume
// fail the test), and that do not run in parallel with other tests of
// the shared server. It fails the test when the package's TestMain does
// not call Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	s := sharedServer.Load()
	if s == nil {
		t.Fatal("redistest: Shared needs a TestMain that calls redistest.Main")
	}
	if _, err := s.Do("FLUSHALL"); err != nil {
		t.Fatalf("redistest: FLUSHALL on the shared server: %v", err)
	}
	return s
}

// skip skips t with msg, said on stderr too (go test shows it when run in
// one package's directory, and in -json), or fails t under
// APIGUARD_REQUIRE_REDIS=1.
func skip(t testing.TB, msg string, required bool) {
	t.Helper()
	if required {
		t.Fatal(msg)
	}
	fmt.Fprintf(os.Stderr, "redistest: SKIP %s: %s (APIGUARD_REQUIRE_REDIS=1 makes it fail)\n", t.Name(), msg)
	t.Skip(msg)
}

// mainTB stands in for a testing.TB outside any test, in [Main]: a fatal
// error ends the process.
type mainTB struct{ testing.TB }

func (mainTB) Helper() {}

func (mainTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// Addr is the server's "127.0.0.1:port". It stays the same across
// [Server.Stop] and [Server.Restart].
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the server and waits for it to exit. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	s.notShared("Stop")
	s.stop()
}

// notShared fails the test that calls method on the shared server.
func (s *Server) notShared(method string) {
	if s.shared {
		s.t.Fatalf("redistest: %s on the shared server: use redistest.Start for a server of the test's own", method)
	}
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause freezes the server's process (SIGSTOP) without closing its
// port: the kernel still accepts connections and commands get no answer,
// as from a hung Redis, until [Server.Resume]. Pausing a stopped server
// does nothing.
func (s *Server) Pause() {
	s.notShared("Pause")
	s.signal(syscall.SIGSTOP)
}

// Resume lets a paused server run again (SIGCONT): it answers what it
// was sent meanwhile.
func (s *Server) Resume() {
	s.notShared("Resume")
	s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal redis-server: %v", err)
	}
}

// Restart starts the server again on the same port, with an empty
// dataset, after stopping it if it runs.
func (s *Server) Restart() {
	s.t.Helper()
	s.notShared("Restart")
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--enable-debug-command", "local",
		"--protected-mode", "yes",
	}
	cmd := exec.Command(s.bin, append(args, s.extra...)...) // #nosec G204 -- a test helper: the binary comes from LookPath and every argument is ours
	cmd.Stdout = nil
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr()); err == nil {
			return
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			s.cmd = nil
			s.t.Fatalf("redistest: redis-server did not answer on %s: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do sends one command as an inline RESP request and returns the first
// line of the reply. It is for test set-up (FLUSHALL, DEBUG SLEEP 0.5),
// not for the code under test.
func (s *Server) Do(args ...string) (string, error) {
	c, r, err := s.send(30*time.Second, args)
	if err != nil {
		return "", err
	}
	defer c.Close()
	line, err := r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// send dials the server, writes args as one RESP request with a deadline
// of timeout for the whole exchange, and returns the connection (the
// caller closes it) and a reader for the reply.
func (s *Server) send(timeout time.Duration, args []string) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	return c, bufio.NewReader(c), nil
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Cluster is a local Redis Cluster of three masters, for tests that prove
// the stores' scripts are cluster safe (one key per call).
type Cluster struct {
	Nodes []*Server
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// StartCluster starts three cluster-enabled redis-server processes, joins
// them with redis-cli --cluster create, waits for the cluster to be ok,
// and stops them at cleanup. It skips (or fails under
// APIGUARD_REQUIRE_REDIS=1) when redis-server or redis-cli is missing.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, t.TempDir, t.Cleanup)
}

// sharedCluster is the cluster of [SharedCluster], and what stops it
// when [Main] returns.
var sharedCluster struct {
	mu   sync.Mutex
	c    *Cluster
	stop []func()
}

// SharedCluster returns the package's cluster, started on first use and
// stopped when [Main] returns, with every node emptied (FLUSHALL): the
// cluster tests of a package share one instead of starting three
// processes each. Without Main in the package's TestMain it is
// [StartCluster].
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	if sharedServer.Load() == nil {
		return StartCluster(t)
	}
	sharedCluster.mu.Lock()
	defer sharedCluster.mu.Unlock()
	if sharedCluster.c == nil {
		// The nodes outlive the test that starts them: their directories
		// and their stopping belong to Main.
		tempDir := func() string {
			dir, err := os.MkdirTemp("", "redistest-cluster")
			if err != nil {
				t.Fatalf("redistest: %v", err)
			}
			sharedCluster.stop = append(sharedCluster.stop, func() { _ = os.RemoveAll(dir) })
			return dir
		}
		sharedCluster.c = startCluster(t, tempDir, func(f func()) { sharedCluster.stop = append(sharedCluster.stop, f) })
		for _, n := range sharedCluster.c.Nodes {
			n.shared = true
		}
	}
	for _, n := range sharedCluster.c.Nodes {
		if _, err := n.Do("FLUSHALL"); err != nil {
			t.Fatalf("redistest: FLUSHALL on the shared cluster: %v", err)
		}
	}
	return sharedCluster.c
}

// stopSharedCluster stops the cluster of SharedCluster, if it started.
func stopSharedCluster() {
	sharedCluster.mu.Lock()
	defer sharedCluster.mu.Unlock()
	for i := len(sharedCluster.stop) - 1; i >= 0; i-- { // last registered first, as t.Cleanup
		sharedCluster.stop[i]()
	}
	sharedCluster.c, sharedCluster.stop = nil, nil
}

// startCluster starts a cluster in directories from tempDir, whose
// processes cleanup registers to stop.
func startCluster(t testing.TB, tempDir func() string, cleanup func(func())) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		skip(t, "redis-cli not found on PATH: install redis-tools to run the cluster tests", os.Getenv("APIGUARD_REQUIRE_REDIS") == "1")
	}
	c := &Cluster{}
	for range 3 {
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			skip(t, "redis-server not found on PATH: install it (apt-get install -y redis-server) to run this test", os.Getenv("APIGUARD_REQUIRE_REDIS") == "1")
		}
		s := &Server{t: t, bin: bin, dir: tempDir(), port: freePort(t), extra: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
		}}
		s.Restart()
		cleanup(s.stop)
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	// #nosec G204 -- a test helper: the binary comes from LookPath and
	// every argument is ours.
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok := true
		for _, n := range c.Nodes {
			info, err := n.Do("CLUSTER", "INFO")
			if err != nil || !strings.HasPrefix(info, "$") {
				ok = false
				break
			}
			body, err := n.bulk("CLUSTER", "INFO")
			if err != nil || !strings.Contains(body, "cluster_state:ok") {
				ok = false
				break
			}
		}
		if ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster did not become ok")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bulk sends a command and returns a bulk-string reply's body.
func (s *Server) bulk(args ...string) (string, error) {
	c, r, err := s.send(5*time.Second, args)
	if err != nil {
		return "", err
	}
	defer c.Close()
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "$") {
		return line, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 {
		return "", err
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
