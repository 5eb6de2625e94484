//go:build unix

package mongotest

import (
	"os/exec"
	"syscall"
)

func pause(cmd *exec.Cmd) error  { return cmd.Process.Signal(syscall.SIGSTOP) }
func resume(cmd *exec.Cmd) error { return cmd.Process.Signal(syscall.SIGCONT) }
