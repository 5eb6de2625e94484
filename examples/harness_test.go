package examples

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessiongate/caddy-session/internal/mongotest"
)

// caddyBin is the xcaddy-built Caddy every test runs: $CADDY_BIN, or ../caddy
// as built by ../xcaddy.sh in TestMain.
var caddyBin string

func TestMain(m *testing.M) {
	bin, err := buildCaddy()
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples:", err)
		os.Exit(1)
	}
	caddyBin = bin
	// Main stops the FerretDB that TestDemo/mongodb may have started.
	mongotest.Main(m)
}

func buildCaddy() (string, error) {
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("CADDY_BIN: %w", err)
		}
		return abs, nil
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	// xcaddy.sh skips the build when ./caddy is up to date, so this is cheap
	// on a second run. Its output goes to stderr, where go test shows it.
	cmd := exec.Command("bash", filepath.Join(root, "xcaddy.sh"))
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("../xcaddy.sh failed (set CADDY_BIN to use a prebuilt Caddy): %w", err)
	}
	return filepath.Join(root, "caddy"), nil
}

// proc is a process started by a test, stopped (with its children) when the
// test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  string        // file holding its stdout and stderr
}

// start runs args in dir with env added to the environment. The process gets
// its own process group, so stopping it also stops what it started (php-fpm
// workers under run-fpm.sh).
func start(t *testing.T, name, dir string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child keeps its own descriptor

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Setpgid: one signal stops the whole group. Pdeathsig: if the test
	// binary itself is killed, the child does not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output (%s) ---\n%s", name, strings.Join(args, " "), tail(logPath, 6000))
		}
	})
	return p
}

// stop sends SIGTERM to the process group, then SIGKILL if it is still
// running after a few seconds.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Workers that outlived their parent are still in the group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitDial waits until network/addr accepts connections, failing the test
// if the process exits first or 20 s pass.
func (p *proc) waitDial(t *testing.T, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before listening on %s:\n%s", p.name, addr, tail(p.log, 6000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after 20s: %v\n%s", p.name, addr, err, tail(p.log, 6000))
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

// need returns the path of the first of the commands found, or fails the
// test saying how to install it: a missing tool is a failure, not a skip.
func need(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if strings.Contains(n, "*") {
			// Debian installs php-fpm as /usr/sbin/php-fpmX.Y.
			if m, _ := filepath.Glob(n); len(m) > 0 {
				return m[len(m)-1]
			}
			continue
		}
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found: install the test dependencies with scripts/deps.sh", names[0])
	return ""
}

// pythonWithJWT is a python3 that can import PyJWT (Debian's python3-jwt):
// the one on PATH, else Debian's own.
func pythonWithJWT(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(py); err == nil && exec.Command(p, "-c", "import jwt").Run() == nil {
			return p
		}
	}
	t.Fatal("no python3 with PyJWT: install the test dependencies with scripts/deps.sh (python3-jwt)")
	return ""
}

// npmCI installs dir's npm packages from its package-lock.json (npm ci),
// unless node_modules was installed from this very lockfile already.
func npmCI(t *testing.T, dir string) {
	t.Helper()
	npmOnce.Do(func() { npmErr = npmInstall(need(t, "npm"), dir) })
	if npmErr != nil {
		t.Fatal(npmErr)
	}
}

var (
	npmOnce sync.Once
	npmErr  error
)

func npmInstall(npm, dir string) error {
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join(dir, "node_modules", ".lock-sha256")
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return nil
	}
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s (needs the npm registry): %v\n%s", dir, err, out)
	}
	return os.WriteFile(stamp, []byte(want), 0o644)
}

// site is an example app with Caddy in front of it.
type site struct {
	base     string // Caddy's URL
	caddy    *proc
	upstream string // the app's address: host:port, or unix/<socket> for php-fpm
}

// example runs one example app and Caddy with the example's own Caddyfile.
func example(t *testing.T, lang string) site {
	t.Helper()
	return serve(t, lang, filepath.Join(lang, "Caddyfile"))
}

// serve runs one example app and Caddy with caddyfile in front of it; env is
// added to Caddy's environment.
func serve(t *testing.T, lang, caddyfile string, env ...string) site {
	t.Helper()
	dir, err := filepath.Abs(lang)
	if err != nil {
		t.Fatal(err)
	}
	if caddyfile, err = filepath.Abs(caddyfile); err != nil {
		t.Fatal(err)
	}

	// Caddy's port first: the app fetches the gateway's keys from it.
	caddyPort := strconv.Itoa(freePort(t))
	appEnv := []string{"ASSERTION_JWKS_URL=http://127.0.0.1:" + caddyPort + "/.well-known/caddy-session/jwks.json"}
	var upstream string
	switch lang {
	case "python", "node":
		port := strconv.Itoa(freePort(t))
		var args []string
		if lang == "node" {
			npmCI(t, dir)
			args = []string{need(t, "node", "nodejs"), "server.js"}
		} else {
			args = []string{pythonWithJWT(t), "app.py"}
		}
		app := start(t, lang, dir, append(appEnv, "APP_PORT="+port), args...)
		upstream = "127.0.0.1:" + port
		app.waitDial(t, "tcp", upstream)
	case "php":
		need(t, "php-fpm", "/usr/sbin/php-fpm*")
		sock := filepath.Join(t.TempDir(), "fpm.sock")
		fpm := start(t, "php-fpm", dir, append(appEnv, "FPM_LISTEN="+sock), "bash", "run-fpm.sh")
		fpm.waitDial(t, "unix", sock)
		upstream = "unix/" + sock
	default:
		t.Fatalf("unknown example %q", lang)
	}

	port := caddyPort
	data := t.TempDir()
	caddy := start(t, "caddy", dir, append([]string{
		"PORT=" + port,
		"UPSTREAM=" + upstream,
		"DOCROOT=" + filepath.Join(dir, "public"),
		// A free admin port, so examples run side by side.
		"CADDY_ADMIN=127.0.0.1:" + strconv.Itoa(freePort(t)),
		// Caddy's storage (where the generated cookie key is kept) in a
		// fresh directory, not the user's.
		"XDG_DATA_HOME=" + data, "XDG_CONFIG_HOME=" + data,
	}, env...), caddyBin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	caddy.waitDial(t, "tcp", "127.0.0.1:"+port)
	return site{base: "http://127.0.0.1:" + port, caddy: caddy, upstream: upstream}
}
