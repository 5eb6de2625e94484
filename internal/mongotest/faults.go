package mongotest

import (
	"testing"
)

// Kill kills the built-in FerretDB at once (SIGKILL: no shutdown, as in a
// crash). Its port and data directory are kept; call Restart to start it
// again on the same data. As with Stop, cleanup restarts it if the test
// does not, the test must not run in parallel with others of its package,
// and against MONGODB_URI the test is skipped.
func Kill(t testing.TB) {
	t.Helper()
	if External() {
		t.Skip("mongotest: killing the server needs the built-in FerretDB; unset " + EnvURI + " to run this test")
	}
	URI(t)
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.proc != nil {
		cmd, done := state.proc, state.done
		state.proc, state.done = nil, nil
		cmd.Process.Kill()
		<-done
	}
	restartAfter(t)
}

// Freeze stops the built-in FerretDB's process without ending it
// (SIGSTOP): connections stay open, requests queue in the kernel and are
// served, in whatever order, once Thaw lets it run again, as with a
// server that stalls. Cleanup thaws it if the test does not. Against
// MONGODB_URI the test is skipped.
func Freeze(t testing.TB) {
	t.Helper()
	if External() {
		t.Skip("mongotest: freezing the server needs the built-in FerretDB; unset " + EnvURI + " to run this test")
	}
	URI(t)
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.proc == nil {
		t.Fatal("mongotest: Freeze while the server is stopped")
	}
	if err := pause(state.proc); err != nil {
		t.Fatalf("mongotest: freezing FerretDB: %v", err)
	}
	t.Cleanup(func() { Thaw(t) })
}

// Thaw lets a frozen FerretDB run again (SIGCONT); it does nothing if the
// server is not frozen.
func Thaw(t testing.TB) {
	t.Helper()
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.proc == nil {
		return
	}
	if err := resume(state.proc); err != nil {
		t.Errorf("mongotest: thawing FerretDB: %v", err)
	}
}
