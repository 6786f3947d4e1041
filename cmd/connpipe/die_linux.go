package main

import (
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// dieBy ends the process by sig, with its default action: the signal is
// sent to this very thread, so it is handled before the call returns. If
// the signal does not kill (it was ignored when the process started), the
// process exits with code.
func dieBy(sig os.Signal, code int) {
	if s, ok := sig.(syscall.Signal); ok {
		signal.Reset(s)
		runtime.LockOSThread()
		_ = syscall.Tgkill(syscall.Getpid(), syscall.Gettid(), s)
	}
	os.Exit(code)
}
