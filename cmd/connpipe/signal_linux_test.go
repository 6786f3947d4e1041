package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// feed writes lines to w and keeps it open: the input has not ended.
func feed(t *testing.T, w io.Writer, lines []string) {
	t.Helper()
	go io.WriteString(w, joinLines(lines)) // may block when send's reading waits
}

// TestSendInterruptDuringFirstDial: the first interrupt stops reading and
// flushes (saying so, without a terminal), the second stops at once,
// though the dial hangs and the close timeout is a minute; the summary
// counts the line that waited for room, and the process ends by SIGINT.
func TestSendInterruptDuringFirstDial(t *testing.T) {
	t.Parallel()
	hole := testnet.NewBlackhole(t)
	cmd := command(t, runTimeout, "send", "-v", "-buffer", "1k", "-dial-timeout", "1m", "-close-timeout", "1m", "tcp://"+hole.Addr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	_, stderr := startWatched(t, cmd)
	feed(t, stdin, numbered("line", 200))
	stderr.waitFor(t, 0, regexp.MustCompile(`the 1\.0 KiB queue is full: reading waits for room`), waitTimeout)
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	m, _ := stderr.waitFor(t, 0, regexp.MustCompile(`connpipe: interrupted \(SIGINT\): stopped reading; sending the (\d+) lines queued for up to 1m0s \(interrupt again to stop at once\)\n`), waitTimeout)
	queued := m[1]
	cmd.Process.Signal(os.Interrupt)
	code, sig := waitEnd(t, cmd, waitTimeout)
	out := stderr.wait(t, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, out)
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v after the first interrupt; the second should stop it at once", took)
	}
	var n int
	fmt.Sscan(queued, &n)
	for _, want := range []string{
		fmt.Sprintf("connpipe: %d lines read (", n+1),
		fmt.Sprintf("), 0 written, %d dropped, 0 reconnects, ", n+1),
		"connpipe: interrupted (SIGINT): stopped reading the input\n",
		fmt.Sprintf("connpipe: %d of %d lines not delivered: 1 read but not yet queued when the input was stopped, %d still queued when stopped by a second interrupt\n", n+1, n+1, n),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
}

// TestSendInterruptWhileDisconnected: one interrupt while there is no
// connection gives what is queued the close timeout, then ends by SIGINT.
func TestSendInterruptWhileDisconnected(t *testing.T) {
	t.Parallel()
	cmd := command(t, runTimeout, "send", "-v", "-close-timeout", "300ms", "-backoff-base", "50ms", "-backoff-max", "50ms", "tcp://"+freePort(t))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	_, stderr := startWatched(t, cmd)
	feed(t, stdin, []string{"a", "b"})
	stderr.waitFor(t, 0, regexp.MustCompile(`disconnected: dial tcp \S+: connect: connection refused; next dial in \S+ \(attempt 2\)`), waitTimeout)
	cmd.Process.Signal(os.Interrupt)
	code, sig := waitEnd(t, cmd, waitTimeout)
	out := stderr.wait(t, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, out)
	// The two lines were read before the interrupt, unless the machine is
	// very slow; the summary must add up either way.
	if !regexp.MustCompile(`connpipe: (\d) lines? read \(\d B\), 0 written, (\d) dropped, 0 reconnects`).MatchString(out) ||
		!strings.Contains(out, "still queued when the 300ms close timeout ran out; last error: dial tcp") &&
			!strings.Contains(out, "connpipe: 0 lines read") {
		t.Errorf("stderr:\n%s", out)
	}
}

// TestSendSIGTERM: SIGTERM is an interrupt too: what is queued is
// flushed, and the process ends by SIGTERM (a shell shows 143).
func TestSendSIGTERM(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	cmd := command(t, runTimeout, "send", "tcp://"+sink.Addr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	_, stderr := startWatched(t, cmd)
	feed(t, stdin, numbered("term", 10))
	if !sink.WaitLines(10, waitTimeout) {
		t.Fatalf("the sink received %d of 10 lines", sink.LineCount())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	code, sig := waitEnd(t, cmd, waitTimeout)
	out := stderr.wait(t, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGTERM, out)
	// The lines may still count as queued when the signal comes: the
	// writer accounts for a write once it has returned.
	if !regexp.MustCompile(`^(connpipe: interrupted \(SIGTERM\): stopped reading; sending the \d+ lines? queued for up to 10s \(interrupt again to stop at once\)\n)?` +
		`connpipe: 10 lines read \(\d+ B\), 10 written, 0 dropped, 0 reconnects, \S+\nconnpipe: interrupted \(SIGTERM\): stopped reading the input\n$`).MatchString(out) {
		t.Errorf("stderr:\n%s", out)
	}
}

// TestShellSeesInterruptStatus runs send as a script's background job,
// whose SIGINT is ignored from the start: connpipe still stops on it (it
// asks for it), and, the signal being unable to kill it, exits 130; SIGTERM
// kills it, and the shell reports 143.
func TestShellSeesInterruptStatus(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		sig  syscall.Signal
		want string
	}{{syscall.SIGINT, "status 130"}, {syscall.SIGTERM, "status 143"}} {
		sink := testnet.NewSink(t, "tcp")
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		script := `"$0" "$@" <&3 3<&- & pid=$!; exec 3<&-; echo "pid $pid"; wait $pid; echo "status $?"`
		cmd := exec.CommandContext(t.Context(), "sh", "-c", script, binary(t), "send", "tcp://"+sink.Addr())
		cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
		cmd.ExtraFiles = []*os.File{r}
		stdout, stderr := startWatched(t, cmd)
		r.Close()
		io.WriteString(w, "one\n")
		m, _ := stdout.waitFor(t, 0, regexp.MustCompile(`pid (\d+)\n`), waitTimeout)
		if !sink.WaitLines(1, waitTimeout) {
			t.Fatalf("the sink received nothing")
		}
		var pid int
		fmt.Sscan(m[1], &pid)
		syscall.Kill(pid, tt.sig)
		stdout.waitFor(t, 0, regexp.MustCompile(tt.want+"\n"), waitTimeout)
		if err := cmd.Wait(); err != nil {
			t.Errorf("sh: %v", err)
		}
		w.Close()
		if !strings.Contains(stderr.wait(t, waitTimeout), "connpipe: 1 line read (4 B), 1 written, 0 dropped") {
			t.Errorf("%v: no summary:\n%s", tt.sig, stderr.String())
		}
	}
}
