//go:build !unix

package mongotest

import (
	"errors"
	"os/exec"
)

var errNoFreeze = errors.New("freezing a process needs SIGSTOP (unix only)")

func pause(*exec.Cmd) error  { return errNoFreeze }
func resume(*exec.Cmd) error { return errNoFreeze }
