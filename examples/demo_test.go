package examples

import (
	"errors"
	"fmt"
	"io/fs"
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
		// A home and a temp folder of its own, to show that the demo leaves
		// nothing behind in either: Caddy's autosave.json and generated
		// signing key would go to $HOME/.config/caddy and
		// $HOME/.local/share/caddy, the demo's temp folder to $TMPDIR.
		home, tmp := t.TempDir(), t.TempDir()
		demo := startDemo(t, port, appPort, "HOME="+home, "TMPDIR="+tmp,
			"XDG_CONFIG_HOME=", "XDG_DATA_HOME=", "CADDY="+caddyBin)
		demo.waitLog(t, "Open http://localhost:"+strconv.Itoa(port)+"/")
		if !strings.Contains(tail(demo.log, 1<<20), "sessions in memory") {
			t.Errorf("demo.sh did not say the sessions are in memory")
		}
		// Caddy's state is in the demo's temp folder while it runs.
		if m, _ := filepath.Glob(filepath.Join(tmp, "caddy-session-demo.*", "config", "caddy", "autosave.json")); len(m) != 1 {
			t.Errorf("no autosave.json in the demo's temp folder under %s", tmp)
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
		for _, dir := range []string{home, tmp} {
			if left := filesUnder(t, dir); len(left) > 0 {
				t.Errorf("the demo left files behind in %s: %v", dir, left)
			}
		}
	})

	t.Run("MongoDB mode on the embedded FerretDB", func(t *testing.T) {
		t.Parallel()
		port := freePort(t)
		demo := startDemo(t, port, freePort(t), "FERRETDB=1")
		demo.waitLog(t, "Open http://localhost:"+strconv.Itoa(port)+"/")
		if !strings.Contains(tail(demo.log, 1<<20), "sessions in MongoDB") {
			t.Errorf("demo.sh did not say the sessions are in MongoDB:\n%s", tail(demo.log, 3000))
		}
		walk(t, "python", site{base: "http://127.0.0.1:" + strconv.Itoa(port), caddy: demo})
		demo.interruptGroup(t)
		demo.expectExit(t, 130)
	})

	// A taken port is named as such before anything starts: Caddy's own
	// message would not say which of its addresses it was.
	for _, tc := range []struct{ name, want string }{
		{"PORT", "demo.sh: port %d (PORT, where Caddy serves the demo) is taken"},
		{"APP_PORT", "demo.sh: port %d (APP_PORT, the Python app) is taken"},
		{"CADDY_ADMIN", "demo.sh: Caddy's admin endpoint 127.0.0.1:%d (CADDY_ADMIN; is another Caddy running?) is taken"},
	} {
		t.Run(tc.name+" in use", func(t *testing.T) {
			t.Parallel()
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			taken := busy.Addr().(*net.TCPAddr).Port
			port, appPort := freePort(t), freePort(t)
			var env []string
			switch tc.name {
			case "PORT":
				port = taken
			case "APP_PORT":
				appPort = taken
			default:
				env = append(env, "CADDY_ADMIN=127.0.0.1:"+strconv.Itoa(taken))
			}
			demo := startDemo(t, port, appPort, env...)
			demo.expectExit(t, 1)
			if want := fmt.Sprintf(tc.want, taken); !strings.Contains(tail(demo.log, 1<<20), want) {
				t.Errorf("demo.sh output lacks %q:\n%s", want, tail(demo.log, 3000))
			}
		})
	}
}

// filesUnder lists the files and folders under dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// startDemo starts ./scripts/demo.sh with Caddy on port and the app on
// appPort, sessions in memory, Caddy's admin endpoint its own; env is added
// last, so it overrides.
func startDemo(t *testing.T, port, appPort int, env ...string) *proc {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{
		"PORT=" + strconv.Itoa(port),
		"APP_PORT=" + strconv.Itoa(appPort),
		"MONGODB_URI=", // memory, even when the tests run against a MongoDB
		"CADDY_ADMIN=127.0.0.1:" + strconv.Itoa(freePort(t)),
	}
	// Without CADDY_BIN, TestMain built ../caddy with ../xcaddy.sh, and the
	// script's own ./xcaddy.sh finds it up to date.
	if os.Getenv("CADDY_BIN") != "" {
		base = append(base, "CADDY="+caddyBin)
	}
	return start(t, "demo.sh", root, append(base, env...), "bash", "scripts/demo.sh")
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
