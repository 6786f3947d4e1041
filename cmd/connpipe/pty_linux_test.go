package main

import (
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// openPTY opens a pseudo-terminal of 250 columns (room for a whole status line) and returns its master
// and its slave, with the standard library alone: posix_openpt is opening
// /dev/ptmx, unlockpt and ptsname are ioctls.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var n uint32
	unlock := int32(0)
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	ws := struct{ row, col, x, y uint16 }{40, 250, 0, 0}
	if err := ioctl(slave, syscall.TIOCSWINSZ, unsafe.Pointer(&ws)); err != nil {
		t.Fatalf("setting the window size: %v", err)
	}
	return master, slave
}

func ioctl(f *os.File, req uint, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// A terminalRun is connpipe send with its stdout and stderr on a
// terminal, which is its controlling terminal (Ctrl-C typed on it sends
// SIGINT), and its stdin on a pipe: the lines of a producer.
type terminalRun struct {
	cmd    *exec.Cmd
	master *os.File
	screen *watched // what connpipe wrote to the terminal
	input  io.WriteCloser
}

func startOnTerminal(t *testing.T, args ...string) *terminalRun {
	t.Helper()
	master, slave := openPTY(t)
	cmd := command(t, runTimeout, args...)
	input, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { input.Close() })
	cmd.Stdout, cmd.Stderr = slave, slave
	// A session of its own, with the terminal (its stdout) as the
	// controlling terminal: its process group is in the foreground.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 1}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close() // the master's reads end when connpipe has gone
	r := &terminalRun{cmd: cmd, master: master, screen: watch(master), input: input}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("the terminal showed:\n%q", r.screen.String())
		}
	})
	return r
}

// ctrlC types Ctrl-C on the terminal.
func (r *terminalRun) ctrlC(t *testing.T) {
	t.Helper()
	if _, err := r.master.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
}

// countdownAt waits for a status line matching re, whose first group is
// a countdown ("2.4s", "58s"), and returns it and where the match ends.
func (r *terminalRun) countdownAt(t *testing.T, from int, re *regexp.Regexp) (time.Duration, int) {
	t.Helper()
	m, end := r.screen.waitFor(t, from, re, waitTimeout)
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return d, end
}

// TestTerminalDisconnectedThenCtrlC: the scenario of the report, on a
// terminal. While there is no connection the status line says why and
// counts down to the next dial; the first Ctrl-C stops reading and counts
// down the flush; the second stops at once with the summary; the process
// ends by SIGINT.
func TestTerminalDisconnectedThenCtrlC(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	r := startOnTerminal(t, "send", "-backoff-base", "4s", "-backoff-max", "4s", "-close-timeout", "1m", "tcp://"+addr)
	if _, err := io.WriteString(r.input, "queued while down\n"); err != nil {
		t.Fatal(err)
	}
	status := regexp.MustCompile(`\rdisconnected: connect: connection refused · next dial in (\d+\.\ds) \(attempt 2\) · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped · 1 queued`)
	first, at := r.countdownAt(t, 0, status)
	next, at := r.countdownAt(t, at, status)
	for next == first {
		next, at = r.countdownAt(t, at, status)
	}
	if next > first || first > 4*time.Second {
		t.Errorf("the countdown to the next dial went from %v to %v", first, next)
	}

	r.ctrlC(t)
	flushing := regexp.MustCompile(`\rinterrupted · flushing 1 line queued, giving up in (\d+s) · Ctrl-C again to stop now · disconnected: connect: connection refused · (next dial in \d+\.\ds|dialing) \(attempt \d+\) · 0 lines`)
	first, at = r.countdownAt(t, at, flushing)
	next, at = r.countdownAt(t, at, flushing)
	for next == first {
		next, at = r.countdownAt(t, at, flushing)
	}
	if next > first || first > time.Minute {
		t.Errorf("the countdown of the flush went from %v to %v", first, next)
	}

	r.ctrlC(t)
	code, sig := waitEnd(t, r.cmd, waitTimeout)
	screen := r.screen.wait(t, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, screen)
	r.screen.waitFor(t, at, regexp.MustCompile(`connpipe: 1 line read \(18 B\), 0 written, 1 dropped, 0 reconnects, \S+\r\n`+
		`connpipe: interrupted \(SIGINT\): stopped reading the input\r\n`+
		`connpipe: 1 of 1 line not delivered: 1 still queued when stopped by a second interrupt; last error: dial tcp `+regexp.QuoteMeta(addr)+`: connect: connection refused\r\n$`), waitTimeout)
}

// TestTerminalEndOfInputCtrlC: at the end of the input the flush is
// counted down too, and one Ctrl-C stops it.
func TestTerminalEndOfInputCtrlC(t *testing.T) {
	t.Parallel()
	r := startOnTerminal(t, "send", "-close-timeout", "1m", "tcp://"+freePort(t))
	if _, err := io.WriteString(r.input, "a\nb\n"); err != nil {
		t.Fatal(err)
	}
	r.input.Close()
	_, at := r.countdownAt(t, 0, regexp.MustCompile(`\rend of input · flushing 2 lines queued, giving up in (\d+s) · Ctrl-C to stop now · disconnected: connect: connection refused`))
	r.ctrlC(t)
	code, sig := waitEnd(t, r.cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, r.screen.wait(t, waitTimeout))
	r.screen.waitFor(t, at, regexp.MustCompile(`connpipe: interrupted \(SIGINT\): stopped the final flush\r\n`+
		`connpipe: 2 of 2 lines not delivered: 2 still queued when stopped by an interrupt;`), waitTimeout)
}

// TestTerminalNoSuchHost: a name that does not resolve is on the status
// line at once, and send keeps trying (the name may be registered later):
// it is still running when Ctrl-C ends it.
func TestTerminalNoSuchHost(t *testing.T) {
	t.Parallel()
	r := startOnTerminal(t, "send", "-dial-timeout", "5s", "-backoff-base", "30s", "tcp://nosuch.invalid:5000")
	// Without a resolver the lookup fails otherwise, but names the host.
	_, at := r.screen.waitFor(t, 0, regexp.MustCompile(`\rdisconnected: lookup nosuch\.invalid[^·]*· next dial in \d+(\.\d)?s \(attempt 2\)`), waitTimeout)
	if r.cmd.ProcessState != nil {
		t.Fatal("send ended; it should keep trying")
	}
	r.ctrlC(t)
	code, sig := waitEnd(t, r.cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, r.screen.wait(t, waitTimeout))
	r.screen.waitFor(t, at, regexp.MustCompile(`connpipe: 0 lines read \(0 B\), 0 written, 0 dropped, 0 reconnects, `), waitTimeout)
}

// TestTerminalCtrlCInAPipeline: Ctrl-C on "producer | connpipe send" kills
// the producer too, so send sees the end of its input as the signal comes,
// and may see it first. It was interrupted all the same: it ends by
// SIGINT, so the shell running the pipeline (bash, which waits to see how
// its child ended) stops there too. It exited 0, and the script went on.
func TestTerminalCtrlCInAPipeline(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	sink := testnet.NewSink(t, "tcp")
	master, slave := openPTY(t)
	script := `sleep 100 | "$0" send "$1"; echo "the script went on after status $?"`
	cmd := exec.CommandContext(t.Context(), bash, "-c", script, binary(t), "tcp://"+sink.Addr())
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	screen := watch(master)
	// send dials once it handles signals.
	if !sink.WaitAccepted(1, waitTimeout) {
		t.Fatal("send did not connect")
	}
	if _, err := master.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	code, sig := waitEnd(t, cmd, waitTimeout)
	out := screen.wait(t, waitTimeout)
	if sig != syscall.SIGINT || strings.Contains(out, "the script went on") {
		t.Errorf("bash ended with status %d, signal %v; want it stopped by SIGINT with send; the terminal showed:\n%q", code, sig, out)
	}
	// The same Ctrl-C kills sleep: send may see the end of its input
	// before the signal ("interrupted (SIGINT) as it was ending") or after
	// it ("interrupted (SIGINT): stopped reading ..."). Either way the
	// summary is printed and send dies by SIGINT.
	if !strings.Contains(out, "connpipe: 0 lines read (0 B), 0 written, 0 dropped, 0 reconnects, ") || !strings.Contains(out, "connpipe: interrupted (SIGINT)") {
		t.Errorf("the terminal showed:\n%q", out)
	}
}
