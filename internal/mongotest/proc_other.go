//go:build !linux

package mongotest

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

func setProcAttr(cmd *exec.Cmd) {}

func terminate(cmd *exec.Cmd) {
	if runtime.GOOS == "windows" {
		cmd.Process.Signal(os.Kill)
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
}
