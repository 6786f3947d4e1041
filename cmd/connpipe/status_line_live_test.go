package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// TestSendStatusLineOnlyWhenNobodyTypes: on a terminal, send draws a
// status line, and so leaves out the lines that it would show, unless the
// input is typed on a terminal too (stdin, not -file), where a status line
// would garble what is typed. Seen through the interrupt that comes with
// the end of the input: without a status line, a line says what is being
// flushed.
func TestSendStatusLineOnlyWhenNobodyTypes(t *testing.T) {
	t.Parallel()
	const flushing = "stopped reading; sending the 1 line queued"
	file := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(file, []byte("queued\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		flags      []string
		statusLine bool
	}{
		{"typed on stdin", nil, false},
		{"read from -file", []string{"-file", file}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, e, stderr := interruptedAtEndOfInput("queued\n")
			e.tty, e.typing = true, true
			args := append(append([]string{"send"}, tt.flags...), "-close-timeout", "50ms", "-backoff-base", "1m", "-backoff-max", "1m", "tcp://"+freePort(t))
			if code := run(ctx, args, e); code != exitStatusFor(os.Interrupt) {
				t.Errorf("exit status %d, want %d", code, exitStatusFor(os.Interrupt))
			}
			if got := strings.Contains(stderr.String(), flushing); got == tt.statusLine {
				t.Errorf("stderr says %q: %v; want %v (a status line: %v):\n%s", flushing, got, !tt.statusLine, tt.statusLine, stderr)
			}
			if !strings.Contains(stderr.String(), "1 of 1 line not delivered") {
				t.Errorf("no summary:\n%s", stderr)
			}
		})
	}
}

// statusLineRE matches a status line as it is drawn on a terminal.
var statusLineRE = regexp.MustCompile(`\r([^\r\n]* · ([\d,]+) dropped[^\r\n]*)`)

// TestSendIdleStatusSaysNothingOfWaiting: -v on a terminal, with input
// that keeps coming (or does not come) and room in the queue: no line
// about the queue being full, or reading resuming, comes with the status
// line.
func TestSendIdleStatusSaysNothingOfWaiting(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	r := startSendHere(t, context.Background(), &env{tty: true}, "-v", "tcp://"+sink.Addr())
	r.write(t, "one\n")
	if !sink.WaitLines(1, waitTimeout) {
		t.Fatalf("the sink received nothing; stderr:\n%s", r.stderr.String())
	}
	// Two status lines: two intervals, one with a line read, one without.
	_, end := r.stderr.waitFor(t, 0, statusLineRE, waitTimeout)
	r.write(t, "two\n")
	r.stderr.waitFor(t, end, statusLineRE, waitTimeout)
	code, stderr := r.end(t)
	if code != exitOK {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, exitOK, stderr)
	}
	for _, never := range []string{"queue is full", "reading resumed"} {
		if strings.Contains(stderr, never) {
			t.Errorf("stderr says %q, and reading never waited:\n%q", never, stderr)
		}
	}
}

// TestSendStatusCountsTooLongLines: the status line counts a line dropped
// as too long with the drops.
func TestSendStatusCountsTooLongLines(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	r := startSendHere(t, context.Background(), &env{tty: true}, "-buffer", "100", "tcp://"+sink.Addr())
	r.write(t, strings.Repeat("x", 200)+"\n")
	r.write(t, "delivered\n") // read once the long line is dealt with
	if !sink.WaitLines(1, waitTimeout) {
		t.Fatalf("the sink received nothing; stderr:\n%q", r.stderr.String())
	}
	m, _ := r.stderr.waitFor(t, len(r.stderr.String()), statusLineRE, waitTimeout)
	if m[2] != "1" {
		t.Errorf("status line %q: %s dropped, want 1", m[1], m[2])
	}
	r.end(t)
}

// TestSendVerboseSaysHowLongReadingWaited: -v says when reading has waited
// for room for two status intervals, and when it resumes, how long it
// waited: from the start of the first interval it waited, so at least
// three intervals when it resumes at the next one.
func TestSendVerboseSaysHowLongReadingWaited(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	sink.Stop()
	r := startSendHere(t, context.Background(), &env{}, "-v", "-buffer", "100", "-backoff-base", "1ms", "-backoff-max", "5ms", "tcp://"+sink.Addr())
	lines := numbered("line", 50) // the queue holds 6
	fed := make(chan error, 1)
	go func() {
		_, err := fmt.Fprint(r.in, joinLines(lines))
		fed <- err
	}()
	_, end := r.stderr.waitFor(t, 0, regexp.MustCompile(`the 100 B queue is full: reading waits for room; nothing is dropped`), waitTimeout)
	// Room, at once: reading resumes at the next interval, most likely.
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	m, _ := r.stderr.waitFor(t, end, regexp.MustCompile(`connpipe: reading resumed after waiting (\S+) for room`), waitTimeout)
	if err := <-fed; err != nil {
		t.Fatalf("feeding send: %v", err)
	}
	code, stderr := r.end(t)
	waited, err := time.ParseDuration(m[1])
	if err != nil || waited < 3*statusInterval {
		t.Errorf("reading waited %s (%v), want at least %v: it waited two intervals before it was said, and resumed at a later one", m[1], err, 3*statusInterval)
	}
	if code != exitOK || !sink.WaitLines(len(lines), waitTimeout) {
		t.Errorf("exit status %d, the sink received %d of %d lines; stderr:\n%s", code, sink.LineCount(), len(lines), stderr)
	}
}
