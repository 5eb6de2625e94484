package mongotest

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel stop FerretDB if the test binary dies
// without running Main's shutdown (a panic, a -timeout kill), so no server
// outlives the tests.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

func terminate(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGTERM) }
