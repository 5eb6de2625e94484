// Package mongotest gives tests a real MongoDB-wire server.
//
// When MONGODB_URI is set, tests use that server. Otherwise the first test
// that asks for a URI builds the nested module internal/ferretdb (FerretDB
// with its SQLite handler) and starts it on a free loopback port with a
// temporary data directory; the same server serves every test of the test
// binary and is stopped by Main when the tests are done. Either way every
// test gets its own database, dropped when the test ends, so tests never
// see each other's documents and a real server is left clean.
//
// A package whose tests use mongotest must route its TestMain through Main:
//
//	func TestMain(m *testing.M) { mongotest.Main(m) }
//
// Nothing here skips: a missing Go toolchain or a server that does not
// start is a test failure with a message saying what to do.
package mongotest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// EnvURI names the environment variable that points the tests at an
// existing MongoDB server instead of the built-in FerretDB.
const EnvURI = "MONGODB_URI"

// startTimeout bounds how long FerretDB may take to print its ready line
// and answer a ping once built. Building is bounded separately by the
// test binary's own -timeout, since a cold build compiles SQLite.
const startTimeout = 30 * time.Second

// state is the one server shared by all tests of a test binary.
var state struct {
	mu       sync.Mutex
	inMain   bool   // Main is running the tests
	started  bool   // setup ran (successfully or not)
	err      error  // setup error, reported to every test that asks
	uri      string // what tests connect to
	external bool   // uri came from MONGODB_URI
	client   *mongo.Client

	// FerretDB only.
	tmp  string // holds the binary and the data dir
	bin  string
	data string
	addr string // host:port, kept across restarts
	proc *exec.Cmd
	done chan struct{} // closed when proc has exited
}

// Main runs the tests of m and then stops the server mongotest started, if
// any, and exits with the tests' status. Call it from TestMain: a test
// helper cannot stop a server shared by several tests (t.Cleanup runs at
// the end of one test), so the test binary's main has to.
func Main(m *testing.M) {
	state.mu.Lock()
	state.inMain = true
	state.mu.Unlock()

	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "mongotest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// URI returns the URI of the shared test server, starting it on first use.
// The URI names no database; use Database for a per-test one.
func URI(t testing.TB) string {
	t.Helper()
	state.mu.Lock()
	defer state.mu.Unlock()
	if err := setupLocked(); err != nil {
		t.Fatalf("mongotest: %v", err)
	}
	return state.uri
}

// Client returns a client connected to the shared test server, for tests
// that inspect the database directly. It belongs to mongotest: do not
// disconnect it.
func Client(t testing.TB) *mongo.Client {
	t.Helper()
	URI(t)
	return state.client
}

// Database returns the server URI and the name of a database unique to
// this test (and to this run, so parallel test binaries against one
// MONGODB_URI do not collide). The database is dropped when the test ends.
func Database(t testing.TB) (uri, db string) {
	t.Helper()
	uri = URI(t)
	db = uniqueName(t.Name())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := state.client.Database(db).Drop(ctx); err != nil {
			t.Errorf("mongotest: dropping database %s: %v", db, err)
		}
	})
	return uri, db
}

// External reports whether the tests run against MONGODB_URI rather than
// the built-in FerretDB.
func External() bool {
	return os.Getenv(EnvURI) != ""
}

// Stop stops the built-in FerretDB so a test can watch clients fail. The
// server keeps its port and data; call Restart to bring it back. If the
// test ends without Restart, cleanup restarts it so later tests have a
// server. A test that calls Stop must not run in parallel with other
// tests of the package, since they share the server.
//
// Against MONGODB_URI there is no server mongotest may stop, so Stop skips
// the test; that only happens when the user asked for an external server.
func Stop(t testing.TB) {
	t.Helper()
	if External() {
		t.Skip("mongotest: stopping the server needs the built-in FerretDB; unset " + EnvURI + " to run this test")
	}
	URI(t)
	state.mu.Lock()
	defer state.mu.Unlock()
	if err := stopLocked(); err != nil {
		t.Fatalf("mongotest: stopping FerretDB: %v", err)
	}
	restartAfter(t)
}

// restartAfter starts the built-in FerretDB again when t ends, if the
// test stopped it and did not restart it.
func restartAfter(t testing.TB) {
	t.Cleanup(func() {
		state.mu.Lock()
		defer state.mu.Unlock()
		if state.proc == nil {
			if err := startLocked(); err != nil {
				t.Errorf("mongotest: restarting FerretDB after the test: %v", err)
			}
		}
	})
}

// Restart starts the built-in FerretDB again after Stop, on the same port
// with the same data, and waits until it answers a ping.
func Restart(t testing.TB) {
	t.Helper()
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.external || state.bin == "" {
		t.Fatal("mongotest: Restart without a built-in FerretDB (call Stop first)")
	}
	if state.proc != nil {
		return
	}
	if err := startLocked(); err != nil {
		t.Fatalf("mongotest: restarting FerretDB: %v", err)
	}
}

func setupLocked() error {
	if !state.inMain {
		return errors.New("the test binary must run its tests through mongotest.Main: add\n\tfunc TestMain(m *testing.M) { mongotest.Main(m) }")
	}
	if state.started {
		return state.err
	}
	state.started = true
	state.err = setup()
	return state.err
}

func setup() error {
	if uri := os.Getenv(EnvURI); uri != "" {
		state.uri = uri
		state.external = true
	} else {
		if err := buildFerretDB(); err != nil {
			return err
		}
		if err := startLocked(); err != nil {
			return err
		}
	}
	c, err := mongo.Connect(options.Client().ApplyURI(state.uri).SetServerSelectionTimeout(startTimeout))
	if err != nil {
		// The URI may hold a password: never print it.
		return fmt.Errorf("connecting to the test server (%s): %v", source(), redactURI(err, state.uri))
	}
	state.client = c
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("pinging the test server (%s): %v", source(), redactURI(err, state.uri))
	}
	return nil
}

func source() string {
	if state.external {
		return EnvURI
	}
	return "built-in FerretDB"
}

// moduleDir finds internal/ferretdb next to this source file, so the
// helper works from any package's test binary.
func moduleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate mongotest's source file")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "ferretdb")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("FerretDB module not found next to mongotest: %v", err)
	}
	return dir, nil
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	// A test binary runs with GOROOT set by go test.
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the go command is not on PATH: the MongoDB tests build FerretDB with it; install Go (https://go.dev/dl/) or set " + EnvURI + " to a MongoDB server")
}

func buildFerretDB() error {
	dir, err := moduleDir()
	if err != nil {
		return err
	}
	goBin, err := goTool()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mongotest-")
	if err != nil {
		return err
	}
	state.tmp = tmp
	state.bin = filepath.Join(tmp, "ferretdb")
	state.data = filepath.Join(tmp, "data")

	cmd := exec.Command(goBin, "build", "-o", state.bin, ".")
	cmd.Dir = dir
	// The nested module is built on its own: no workspace, and no flags a
	// caller meant for the main module.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("building FerretDB (go build in %s) failed: %v\n%s\nthe MongoDB tests need it unless %s is set (the first build downloads modules and compiles SQLite, give it a few minutes)", dir, err, out, EnvURI)
	}
	return nil
}

var readyLine = regexp.MustCompile(`^ferretdb ready mongodb://([^/]+)/`)

// startLocked starts FerretDB on state.addr (a free port the first time)
// and waits for its ready line and a ping.
func startLocked() error {
	addr := state.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// Warnings would repeat every error answer the tests provoke on
	// purpose; real trouble is logged at error level.
	cmd := exec.Command(state.bin, "-listen", addr, "-dir", state.data, "-log-level", "error")
	cmd.Stderr = os.Stderr
	setProcAttr(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting FerretDB: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		// Keep draining so FerretDB never blocks on a full pipe.
		io.Copy(io.Discard, stdout)
	}()

	kill := func() {
		cmd.Process.Kill()
		<-done
	}
	select {
	case line, ok := <-lines:
		m := readyLine.FindStringSubmatch(line)
		if !ok || m == nil {
			kill()
			return fmt.Errorf("FerretDB did not start (first output line %q); see its log above", line)
		}
		state.addr = m[1]
	case <-time.After(startTimeout):
		kill()
		return fmt.Errorf("FerretDB printed no ready line within %v", startTimeout)
	}
	state.proc = cmd
	state.done = done
	state.uri = "mongodb://" + state.addr + "/"

	// Restarts reuse the shared client, which reconnects by itself; ping
	// through it so the caller knows the server answers again. The first
	// pings may hit connections pooled before the restart (the driver
	// drops them on that error), so retry until the deadline.
	if state.client != nil {
		deadline := time.Now().Add(startTimeout)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := state.client.Ping(ctx, readpref.Primary())
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("FerretDB restarted but does not answer a ping: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// stopLocked sends SIGTERM and waits for FerretDB to exit, killing it if
// it takes too long.
func stopLocked() error {
	if state.proc == nil {
		return nil
	}
	cmd, done := state.proc, state.done
	state.proc, state.done = nil, nil
	terminate(cmd)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		return errors.New("FerretDB ignored SIGTERM for 10s and was killed")
	}
}

func shutdown() error {
	state.mu.Lock()
	defer state.mu.Unlock()
	var errs []error
	if state.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		state.client.Disconnect(ctx)
		cancel()
		state.client = nil
	}
	if err := stopLocked(); err != nil {
		errs = append(errs, err)
	}
	if state.tmp != "" {
		if err := os.RemoveAll(state.tmp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName makes a database name from the test name plus a random
// suffix. It keeps to [a-z0-9_] and well under MongoDB's 63-byte limit so
// every server (FerretDB included) accepts it.
func uniqueName(testName string) string {
	base := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if len(base) > 32 {
		base = base[:32]
	}
	var b [6]byte
	rand.Read(b[:])
	return "cst_" + base + "_" + hex.EncodeToString(b[:])
}

// redactURI keeps a MongoDB URI (which may hold a password) out of an
// error message.
func redactURI(err error, uri string) string {
	msg := err.Error()
	if uri != "" {
		msg = strings.ReplaceAll(msg, uri, "<uri>")
	}
	return msg
}
