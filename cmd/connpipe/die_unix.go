//go:build unix && !linux

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// dieBy ends the process by sig, with its default action. If the signal
// does not kill (it was ignored when the process started), or is not
// delivered before the process exits, the process exits with code.
func dieBy(sig os.Signal, code int) {
	if s, ok := sig.(syscall.Signal); ok {
		signal.Reset(s)
		_ = syscall.Kill(syscall.Getpid(), s)
	}
	os.Exit(code)
}
