// Package adopttest starts the legacy Node fixture apps of package adopt
// (internal/adopt/testdata/node) for tests: a Koa app with koa-session,
// either on koa-session-mongoose or cookie-only, and an Express app with
// express-session and connect-mongo. They are the real libraries, installed
// by `npm ci` from the committed lockfile the first time a test needs them
// (or when the lockfile changed since).
//
// The apps answer:
//
//	GET /login?user=<name>  stores a session as a login handler would
//	GET /whoami             the session as the app sees it (JSON)
//	GET /logout             destroys the session
//	GET /regenerate         (koa) a new session for user "bob"
//
// Nothing here skips: a missing node or npm is a test failure that says
// how to install them.
package adopttest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// App names a fixture app.
type App string

// The fixture apps.
const (
	// KoaMongoose is koa + koa-session + koa-session-mongoose.
	KoaMongoose App = "koa-mongoose"
	// KoaCookie is koa + koa-session in cookie-only mode.
	KoaCookie App = "koa-cookie"
	// Express is express + express-session + connect-mongo.
	Express App = "express"
)

// Options configure a fixture app.
type Options struct {
	// Keys are koa's app.keys or express-session's secret list, newest
	// first. Required.
	Keys []string
	// Cookie is the session cookie name; empty keeps the library default
	// (koa.sess, connect.sid).
	Cookie string
	// MongoURI and Database say where the store keeps sessions
	// (KoaMongoose and Express). The URI is passed in the environment,
	// never logged.
	MongoURI, Database string
	// MaxAge is the session lifetime in milliseconds as the library takes
	// it ("86400000"; koa also takes "session"). Empty keeps the default.
	MaxAge string
	// Algorithm is the HMAC hash koa's keygrip signs with ("sha256",
	// "sha512"); empty keeps keygrip's sha1. Koa only.
	Algorithm string
	// ObjectSession makes connect-mongo store the session as an object
	// (stringify: false) instead of a JSON string. Express only.
	ObjectSession bool
}

// startTimeout bounds how long a fixture may take to print its port.
const startTimeout = 60 * time.Second

// Dir returns the directory of the Node fixtures (with package.json and
// package-lock.json).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "node")
}

// Start starts app and returns its base URL (http://127.0.0.1:<port>).
// The process is stopped when the test ends.
func Start(t testing.TB, app App, o Options) string {
	t.Helper()
	if len(o.Keys) == 0 {
		t.Fatal("adopttest: Options.Keys is empty")
	}
	if err := Install(); err != nil {
		t.Fatalf("adopttest: %v", err)
	}
	script, env := "koa.js", []string{"KOA_KEYS=" + strings.Join(o.Keys, ",")}
	switch app {
	case KoaMongoose:
		env = append(env, "STORE=mongoose")
	case KoaCookie:
		env = append(env, "STORE=cookie")
	case Express:
		script, env = "express.js", []string{"EXPRESS_SECRETS=" + strings.Join(o.Keys, ",")}
		if o.ObjectSession {
			env = append(env, "STRINGIFY=false")
		}
	default:
		t.Fatalf("adopttest: unknown app %q", app)
	}
	if o.Cookie != "" {
		env = append(env, "COOKIE="+o.Cookie)
	}
	if o.Algorithm != "" {
		env = append(env, "ALGORITHM="+o.Algorithm)
	}
	if o.MaxAge != "" {
		env = append(env, "MAX_AGE="+o.MaxAge)
	}
	if o.MongoURI != "" {
		env = append(env, "MONGODB_URI="+o.MongoURI, "MONGODB_DB="+o.Database)
	}
	return run(t, script, env)
}

func run(t testing.TB, script string, env []string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("adopttest: node not found: install Node.js (scripts/deps.sh installs Debian's nodejs and npm)")
	}
	cmd := exec.Command(node, script)
	cmd.Dir = Dir()
	cmd.Env = append(os.Environ(), env...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("adopttest: starting node %s: %v", script, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				port <- p
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case p := <-port:
		return "http://127.0.0.1:" + p
	case <-done:
		t.Fatalf("adopttest: node %s exited before listening: %s", script, stderr.String())
	case <-time.After(startTimeout):
		t.Fatalf("adopttest: node %s did not listen within %v: %s", script, startTimeout, stderr.String())
	}
	return ""
}

var install struct {
	once sync.Once
	err  error
}

// Install runs `npm ci` in Dir when node_modules is missing or was
// installed from another package-lock.json. It runs at most once per test
// binary and holds a file lock, so parallel test binaries do not install
// over each other.
func Install() error {
	install.once.Do(func() { install.err = installLocked() })
	return install.err
}

func installLocked() error {
	dir := Dir()
	unlock, err := lockDir(filepath.Join(dir, ".install.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join(dir, "node_modules", ".adopttest-lock-sha256")
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("npm not found: install Node.js and npm (scripts/deps.sh installs Debian's nodejs and npm)")
	}
	cmd := exec.Command(npm, "ci", "--prefix", dir, "--no-audit", "--no-fund")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci --prefix %s: %v\n%s", dir, err, b)
	}
	return os.WriteFile(stamp, []byte(want), 0o644)
}

// lockedBuffer is a bytes.Buffer safe for the process writer and a
// reading test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
