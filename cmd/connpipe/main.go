// Command connpipe is the command-line face of package conn: it ships lines
// to a network address over a connection that survives server restarts,
// idle timeouts and resets, and shows what the library does meanwhile.
//
//	connpipe send [flags] ADDRESS [ADDRESS...]
//	connpipe listen [flags] ADDRESS
//	connpipe demo [-duration 4s]
//
// send reads lines from standard input (or -file) and hands each one, whole,
// to a conn.BatchWriter over a conn.Manager: the connection is redialed with
// backoff, and lines queued during an outage go out in order on the next
// connection. When the queue (-buffer) is full, reading waits for room, for
// as long as it takes, so a fast producer is slowed to the pace of the
// connection and nothing is dropped; -full drop drops and counts the lines
// that find it full instead, for a producer that must never wait, and -wait
// bounds the wait. With -spool DIR every line goes to disk too, and stays
// there until it is delivered: an outage is read into DIR instead of
// waiting, and the next send with the same DIR sends what a killed one had
// read before any new input; a damaged record is named on standard error
// and skipped. At the end of the input it keeps trying to deliver what
// is queued for -close-timeout, then prints a summary on standard error. On
// a terminal a status line shows rates, totals, the connection state and,
// while there is no connection, the last error and the time to the next
// dial. Errors that retrying cannot fix (conn.IsPermanent: a certificate
// that does not verify, a server that does not speak TLS or refuses the
// handshake, a malformed address) end it at once; a name that does not
// resolve is retried. Several ADDRESSes are endpoints for the same lines:
// -policy priority (the default) fails over down the list and back to the
// first (probing every -probe), -policy spread spreads many senders over
// them; send then gives up only when each fails in a way retrying cannot
// fix.
//
// listen is a sink for trying send out: it prints the lines it receives on
// a TCP, TLS or unix socket, from any number of clients, whole lines at a
// time, or the datagrams it receives on UDP; with -count it prints rates
// instead. It prints the address it listens on to standard error, so port 0
// picks a free port. Over TLS without -cert it makes a self-signed
// certificate and writes it where send -ca can read it.
//
// demo needs nothing else: it streams numbered lines for a few seconds to an
// in-process server that closes idle connections and keeps restarting, then
// checks at the server that every line the library accepted arrived once,
// whole and in order, and reports what was dropped, lost and retried.
//
// ADDRESS is tcp://host:port, udp://host:port, unix:///path/to/socket (or
// unix://./relative/path), tls://host:port, relp://host:port, or host:port
// for TCP. Over relp:// (RELP, rsyslog's imrelp) the server acknowledges
// each line: send keeps a line until it is acknowledged and sends the
// unacknowledged ones again after a lost connection.
//
// SIGINT (Ctrl-C) and SIGTERM: the first stops a command gracefully (send
// stops reading and flushes what is queued, within -close-timeout, with a
// countdown on a terminal); the second stops it at once, still printing the
// summary; a third ends the process on the spot. An interrupted command
// ends by the signal, after its summary, so a shell shows status 130
// (SIGINT) or 143 (SIGTERM).
//
// Exit status: 0 on success (for send over relp://: every line was
// acknowledged; with -spool, those recovered from the spool too, and none
// is left in it); 1 when send could not deliver every line (it says how
// many; over relp://, a line refused or not acknowledged in time; with
// -spool, lines left in the spool or lost in a damaged record), could not
// use its -spool DIR, or gave up on an error that retrying cannot fix, when demo
// found a line lost or out of order, or on a runtime error such as a file
// that cannot be read; 2 for a usage error; 130 or 143 when interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // lines dropped or undelivered, or a runtime error
	exitUsage   = 2 // bad command line; nothing was sent
	programName = "connpipe"
	// Interrupted commands exit with 128 + the signal's number, or rather
	// end by the signal: see signals.go.
)

const usage = `connpipe ships lines to a network address over a connection that
reconnects by itself (github.com/seed44b27a20/conn).

Usage:
  connpipe send [flags] ADDRESS...  send stdin (or -file) to ADDRESS, one message per line
                                    (several: the first that accepts; -policy spread spreads)
  connpipe listen [flags] ADDRESS   print the lines received on ADDRESS
  connpipe demo [-duration 4s]      watch the library ride out a flaky server
  connpipe help [COMMAND]           this text, or the flags of COMMAND

ADDRESS:
  tcp://host:port   udp://host:port   unix:///path/to/socket (unix://./relative)
  tls://host:port   host:port (TCP)
  relp://host:port  RELP (rsyslog's imrelp): every line acknowledged, none lost

Examples:
  tail -F app.log | connpipe send tcp://logs.internal:5000
  tail -F app.log | connpipe send tcp://primary:514 tcp://standby:514
  connpipe send -file events.log -ca ca.pem tls://collector:6514
  tail -F app.log | connpipe send relp://collector:2514
  connpipe listen tcp://127.0.0.1:5000
  connpipe demo

Trying TLS locally, in two terminals:
  connpipe listen -cert-out cp.pem tls://127.0.0.1:6514
  connpipe send -ca cp.pem tls://127.0.0.1:6514

send queues lines in memory (-buffer) and they go out whole and in order as
soon as there is a connection. When the queue is full, reading waits for room:
nothing is dropped unless you ask for it with -full drop. With -spool DIR the
lines go to disk too: an outage is read into DIR (-spool-size) instead of
waiting, and what a killed send had read goes out first at the next send with
the same DIR. While there is no connection, the status line (on a terminal)
and -v say why and when the next attempt is; an error that retrying cannot
fix (a certificate that does not verify, say) ends it at once. It prints a
summary on stderr.

Ctrl-C (or SIGTERM): the first stops reading and flushes what is queued, within
-close-timeout, with a countdown; the second stops at once. The summary is
printed either way.

Exit status: 0 every line was written to a connection (relp://: acknowledged
by the server; -spool: those recovered from DIR too, none left there); 1 some
lines were dropped or not delivered (relp://: refused, or not acknowledged in
time; -spool: left in DIR, or lost in a damaged record; the summary says how
many), an error that retrying cannot fix, a file that cannot be read, or a
-spool DIR that cannot be used; 2 bad usage; 130 (SIGINT) or 143 (SIGTERM)
interrupted, after the summary.
`

// env is what a command runs with; tests substitute their own. The
// command's context is done at the first interrupt (see signals.go).
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	tty    bool // stderr is a terminal: draw live status lines
	typing bool // stdin is a terminal: someone types the input
	// abort is done at the second interrupt: stop at once. Nil: never.
	abort context.Context
	// signal returns the signal that interrupted the command; nil, or a
	// nil function, means SIGINT.
	signal func() os.Signal
	// settle, if not nil, makes sure that a signal already received has
	// ended the command's context when it returns.
	settle func()
}

// settled calls e.settle, if any, and reports whether the command was
// interrupted: whether ctx is done.
func (e *env) settled(ctx context.Context) bool {
	if e.settle != nil {
		e.settle()
	}
	return ctx.Err() != nil
}

// aborted returns a channel closed at the second interrupt.
func (e *env) aborted() <-chan struct{} {
	if e.abort == nil {
		return nil
	}
	return e.abort.Done()
}

// interrupted returns the exit status of a command stopped by an
// interrupt: 130 for SIGINT, 143 for SIGTERM.
func (e *env) interrupted() int {
	var sig os.Signal = os.Interrupt
	if e.signal != nil {
		if s := e.signal(); s != nil {
			sig = s
		}
	}
	return exitStatusFor(sig)
}

// signalName names the signal that interrupted the command.
func (e *env) signalName() string {
	if e.interrupted() == exitStatusFor(syscall.SIGTERM) {
		return "SIGTERM"
	}
	return "SIGINT"
}

// A usageError is a mistake on the command line: it is printed as one line
// and the exit status is 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

func main() {
	in := watchSignals()
	e := &env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		tty:    isTerminal(os.Stderr),
		typing: isTerminal(os.Stdin),
		abort:  in.second,
		signal: in.signal,
		settle: in.settle,
	}
	code := run(in.first, os.Args[1:], e)
	in.settle()
	if sig := in.signal(); sig != nil {
		// Interrupted, if only as the command was ending by itself (Ctrl-C
		// ends a producer in the same pipeline too, and its end of input
		// may come first): end the way the signal would have.
		if code != exitStatusFor(sig) {
			fmt.Fprintf(e.stderr, "%s: interrupted (%s) as it was ending\n", programName, e.signalName())
		}
		dieBy(sig, exitStatusFor(sig))
	}
	os.Exit(code)
}

// commands maps each command to its function and its usage text.
var commands = map[string]struct {
	run   func(context.Context, *env, []string) int
	usage func(io.Writer)
}{
	"send":   {runSend, func(w io.Writer) { sendFlags(new(sendConfig)).Usage(w) }},
	"listen": {runListen, func(w io.Writer) { listenFlags(new(listenConfig)).Usage(w) }},
	"demo":   {runDemo, func(w io.Writer) { demoFlags(new(demoConfig)).Usage(w) }},
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 {
		return fail(e, usagef("missing command: use send, listen or demo (connpipe -h for help)"))
	}
	switch name := args[0]; name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			if c, ok := commands[args[1]]; ok {
				c.usage(e.stdout)
				return exitOK
			}
			return fail(e, usagef("no help for %q: use send, listen or demo", args[1]))
		}
		fmt.Fprint(e.stdout, usage)
		return exitOK
	default:
		c, ok := commands[name]
		if !ok {
			if strings.HasPrefix(name, "-") {
				return fail(e, usagef("%s comes before a command: use connpipe send|listen|demo [flags] ADDRESS (connpipe -h for help)", name))
			}
			return fail(e, usagef("unknown command %q: use send, listen or demo (connpipe -h for help)", name))
		}
		return c.run(ctx, e, args[1:])
	}
}

// fail prints err as one line and returns its exit status: 2 for a usage
// error, 1 otherwise.
func fail(e *env, err error) int {
	fmt.Fprintf(e.stderr, "%s: %v\n", programName, err)
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailed
}

// A flagSet is a command's flags and its usage text.
type flagSet struct {
	*flag.FlagSet
	synopsis string // "connpipe send [flags] ADDRESS"
	about    string // what the command does, and examples
}

func newFlagSet(name, synopsis, about string) *flagSet {
	fs := flag.NewFlagSet(programName+" "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported as one line by parse
	return &flagSet{FlagSet: fs, synopsis: synopsis, about: about}
}

// Usage writes the command's usage text and flags to w.
func (fs *flagSet) Usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\nFlags:\n", fs.synopsis, fs.about)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses args, allowing flags after the positional arguments too
// ("connpipe send tcp://x:1 -file f"), and returns the positional ones. A
// request for help is returned as flag.ErrHelp; other errors are usage
// errors.
func (fs *flagSet) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v (%s -h for help)", err, fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// parseCommand parses the flags and the single ADDRESS of a command.
// It returns done when the command should end at once with code: after
// printing help, or on a usage error.
func parseCommand(fs *flagSet, e *env, args []string) (address string, code int, done bool) {
	positional, err := fs.parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage(e.stdout)
		return "", exitOK, true
	case err != nil:
		return "", fail(e, err), true
	case len(positional) == 0:
		return "", fail(e, usagef("missing ADDRESS: %s, e.g. %s tcp://localhost:5000", fs.synopsis, fs.Name())), true
	case len(positional) > 1:
		return "", fail(e, usagef("unexpected argument %q after ADDRESS %q: %s", positional[1], positional[0], fs.synopsis)), true
	}
	return positional[0], exitOK, false
}

// parseAddresses parses the flags and the ADDRESSes of a command that
// takes one or more, the first being the primary. It returns done when
// the command should end at once with code, as parseCommand does.
func parseAddresses(fs *flagSet, e *env, args []string) (addresses []string, code int, done bool) {
	positional, err := fs.parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage(e.stdout)
		return nil, exitOK, true
	case err != nil:
		return nil, fail(e, err), true
	case len(positional) == 0:
		return nil, fail(e, usagef("missing ADDRESS: %s [flags] ADDRESS, e.g. %s tcp://localhost:5000", fs.Name(), fs.Name())), true
	}
	return positional, exitOK, false
}
