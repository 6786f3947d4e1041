package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// How connpipe answers SIGINT (Ctrl-C) and SIGTERM, the same for both:
//
//   - The first stops the command gracefully: send stops reading and sends
//     what is queued, within -close-timeout; listen closes its sockets; demo
//     stops writing and reports.
//   - The second stops it at once: send drops what is still queued. The
//     summary is printed all the same.
//   - The third ends the process on the spot, with no summary: a way out
//     should anything hang.
//
// A command that was interrupted ends, after its summary, by the signal
// itself (its default action, restored), as a program without a handler
// would: a shell shows status 130 for SIGINT and 143 for SIGTERM, a shell
// script's loop around it stops at Ctrl-C, and a service manager sees a
// stop by the signal it sent. Where the signal cannot kill (it was ignored
// when connpipe started, as for a background job of a script), connpipe
// exits with status 128 + the signal's number instead.

// interrupts follows the signals that stop connpipe.
type interrupts struct {
	first   context.Context // done at the first signal
	second  context.Context // done at the second
	stopNow func()          // ends first
	seen    chan os.Signal  // gets the first signal, and keeps it: see settle

	mu  sync.Mutex
	sig os.Signal // the first signal; nil until then
}

// watchSignals starts following SIGINT and SIGTERM for the life of the
// process.
func watchSignals() *interrupts {
	c := make(chan os.Signal, 3)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	first, stopNow := context.WithCancel(context.Background())
	second, stopAtOnce := context.WithCancel(context.Background())
	in := &interrupts{first: first, second: second, stopNow: stopNow, seen: make(chan os.Signal, 1)}
	signal.Notify(in.seen, os.Interrupt, syscall.SIGTERM)
	go func() {
		in.record(<-c)
		<-c
		stopAtOnce()
		sig := <-c
		dieBy(sig, exitStatusFor(sig))
	}()
	return in
}

// record notes sig as the first signal, unless one was noted already, and
// ends the first context.
func (in *interrupts) record(sig os.Signal) {
	in.mu.Lock()
	if in.sig == nil {
		in.sig = sig
	}
	in.mu.Unlock()
	in.stopNow()
}

// settle makes sure that a signal the process has already received has
// been noted, and the first context ended, when it returns. A signal goes
// from the runtime's handler to the channels through goroutines, and a
// command may end meanwhile: Ctrl-C on "producer | connpipe send" ends the
// producer too, and send may see the end of its input, and finish, before
// the signal has reached the watcher. signal.Stop returns only once every
// signal received has been passed to the channels, seen among them.
func (in *interrupts) settle() {
	probe := make(chan os.Signal, 1)
	signal.Notify(probe, os.Interrupt, syscall.SIGTERM)
	signal.Stop(probe)
	select {
	case sig := <-in.seen:
		in.record(sig)
	default:
	}
}

// signal returns the first signal received, or nil.
func (in *interrupts) signal() os.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig
}

// exitStatusFor is the conventional status of a process ended by sig:
// 128 + its number (130 for SIGINT, 143 for SIGTERM).
func exitStatusFor(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 128 + int(syscall.SIGINT)
}
