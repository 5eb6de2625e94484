package examples

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoScript runs ./scripts/demo.sh itself, as the README tells a new
// user to, on free ports: TestDemo covers its Caddyfile, this covers the
// script that starts, watches and stops the app and Caddy.
func TestDemoScript(t *testing.T) {
	t.Parallel()
	need(t, "python3")

	t.Run("walk, then Ctrl-C", func(t *testing.T) {
		t.Parallel()
		port, appPort := freePort(t), freePort(t)
		demo := startDemo(t, port, appPort)
		demo.waitLog(t, "Open http://localhost:"+strconv.Itoa(port)+"/")
		if !strings.Contains(tail(demo.log, 1<<20), "sessions in memory") {
			t.Errorf("demo.sh did not say the sessions are in memory")
		}
		// The same walk as every example: home, login, account and its
		// counter, spoofed headers, a second login, logout.
		walk(t, "python", site{base: "http://127.0.0.1:" + strconv.Itoa(port), caddy: demo})

		// Ctrl-C in a terminal sends SIGINT to the whole foreground group.
		demo.interruptGroup(t)
		demo.expectExit(t, 130)
		if !strings.Contains(tail(demo.log, 1<<20), "demo.sh: stopped") {
			t.Errorf("demo.sh did not say it stopped")
		}
		expectClosed(t, port)
		expectClosed(t, appPort)
	})

	t.Run("port in use", func(t *testing.T) {
		t.Parallel()
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		port := busy.Addr().(*net.TCPAddr).Port
		demo := startDemo(t, port, freePort(t))
		demo.expectExit(t, 1)
		want := "demo.sh: Caddy exited (is port " + strconv.Itoa(port) + " free?)"
		if !strings.Contains(tail(demo.log, 1<<20), want) {
			t.Errorf("demo.sh output lacks %q:\n%s", want, tail(demo.log, 3000))
		}
	})
}

// startDemo starts ./scripts/demo.sh with Caddy on port and the app on
// appPort, sessions in memory, Caddy's admin endpoint and storage its own.
func startDemo(t *testing.T, port, appPort int) *proc {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	env := []string{
		"PORT=" + strconv.Itoa(port),
		"APP_PORT=" + strconv.Itoa(appPort),
		"MONGODB_URI=", // memory, even when the tests run against a MongoDB
		"CADDY_ADMIN=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"XDG_DATA_HOME=" + data, "XDG_CONFIG_HOME=" + data,
	}
	// Without CADDY_BIN, TestMain built ../caddy with ../xcaddy.sh, and the
	// script's own ./xcaddy.sh finds it up to date.
	if os.Getenv("CADDY_BIN") != "" {
		env = append(env, "CADDY="+caddyBin)
	}
	return start(t, "demo.sh", root, env, "bash", "scripts/demo.sh")
}

// waitLog waits until the process has printed want, failing the test if it
// exits first. The bound only keeps a broken script from hanging the suite.
func (p *proc) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(tail(p.log, 1<<20), want) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before printing %q:\n%s", p.name, want, tail(p.log, 6000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not printed %q:\n%s", p.name, want, tail(p.log, 6000))
		}
	}
}

// interruptGroup sends SIGINT to the process and everything it started.
func (p *proc) interruptGroup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatalf("SIGINT to %s: %v", p.name, err)
	}
}

// expectExit waits for the process to exit with code, then checks that
// nothing it started is left: its process group is empty.
func (p *proc) expectExit(t *testing.T, code int) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s still running a minute after it should have stopped:\n%s", p.name, tail(p.log, 6000))
	}
	if got := p.cmd.ProcessState.ExitCode(); got != code {
		t.Errorf("%s exited with %d, want %d:\n%s", p.name, got, code, tail(p.log, 6000))
	}
	// Signal 0 to the group checks for any member without touching it.
	if err := syscall.Kill(-p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("%s left processes behind in its group (kill -0: %v)", p.name, err)
	}
}

// expectClosed checks that nothing listens on the loopback port any more.
func expectClosed(t *testing.T, port int) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after the demo stopped", port)
	}
}
