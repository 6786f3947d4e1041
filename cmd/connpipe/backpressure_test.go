package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// An outage run: send starts while its sink is down, with a queue far
// smaller than its input, so that the queue fills before anything can be
// delivered. feeder writes the input into send's stdin; its done channel
// is closed when all of it was taken, or when send stopped taking it.
type outageRun struct {
	sink   *testnet.Sink
	lines  []string
	fed    atomic.Int64 // bytes send has taken from the pipe
	done   chan error
	stderr *watched
}

func startOutageRun(t *testing.T, n int, args ...string) (*outageRun, func() int) {
	t.Helper()
	r := &outageRun{sink: testnet.NewSink(t, "tcp"), lines: numbered("pressure", n), done: make(chan error, 1)}
	r.sink.Stop()
	cmd := command(t, runTimeout, append(append([]string{"send", "-v", "-buffer", "4k", "-backoff-base", "20ms", "-backoff-max", "100ms"}, args...), "tcp://"+r.sink.Addr())...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	_, r.stderr = startWatched(t, cmd)
	go func() {
		input := []byte(joinLines(r.lines))
		for len(input) > 0 {
			n, err := stdin.Write(input[:min(len(input), 4096)])
			r.fed.Add(int64(n))
			if err != nil {
				r.done <- err
				return
			}
			input = input[n:]
		}
		r.done <- stdin.Close()
	}()
	return r, func() int {
		code := waitExit(t, cmd, runTimeout)
		r.stderr.wait(t, waitTimeout)
		return code
	}
}

// TestSendWaitsForRoomByDefault: with the sink down and the queue full,
// reading waits (nothing is dropped); once the sink is up every line
// arrives, in order, and send exits 0.
func TestSendWaitsForRoomByDefault(t *testing.T) {
	t.Parallel()
	r, wait := startOutageRun(t, 20_000) // 280 KiB: 70 times the queue
	// -v says when reading has waited for room for a while: by then the
	// queue is full, and the sink has never been up.
	r.stderr.waitFor(t, 0, regexp.MustCompile(`the 4\.0 KiB queue is full: reading waits for room; nothing is dropped`), waitTimeout)
	select {
	case err := <-r.done:
		t.Fatalf("all the input was taken (%v) while nothing could be delivered: reading did not wait", err)
	default:
	}
	if err := r.sink.Start(); err != nil {
		t.Fatal(err)
	}
	if err := <-r.done; err != nil {
		t.Fatalf("feeding send: %v", err)
	}
	if code := wait(); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, r.stderr.String())
	}
	if !r.sink.WaitLines(len(r.lines), waitTimeout) {
		t.Fatalf("the sink received %d of %d lines", r.sink.LineCount(), len(r.lines))
	}
	if got := received(r.sink); !slices.Equal(got, r.lines) {
		t.Errorf("received %d lines, not the %d sent in order; first difference at %d", len(got), len(r.lines), firstDiff(got, r.lines))
	}
	read, written, dropped, _ := summary(t, r.stderr.String())
	if read != len(r.lines) || written != len(r.lines) || dropped != 0 {
		t.Errorf("summary: %d read, %d written, %d dropped; want %d, %d, 0", read, written, dropped, len(r.lines), len(r.lines))
	}
}

// TestSendFullDrop is the same outage with -full drop: the input is read
// at once, what does not fit is dropped and counted, and send exits 1. It
// also shows that the outage of the test above does fill the queue.
func TestSendFullDrop(t *testing.T) {
	t.Parallel()
	r, wait := startOutageRun(t, 20_000, "-full", "drop")
	if err := <-r.done; err != nil { // send takes everything while the sink is down
		t.Fatalf("feeding send: %v", err)
	}
	r.stderr.waitFor(t, 0, regexp.MustCompile(`connection refused`), waitTimeout)
	if err := r.sink.Start(); err != nil {
		t.Fatal(err)
	}
	if code := wait(); code != 1 {
		t.Errorf("exit status %d, want 1; stderr:\n%s", code, r.stderr.String())
	}
	read, written, dropped, _ := summary(t, r.stderr.String())
	if read != len(r.lines) || dropped == 0 || written+dropped != read {
		t.Errorf("summary: %d read, %d written, %d dropped; want all %d read, and some dropped", read, written, dropped, len(r.lines))
	}
	want := fmt.Sprintf("%s of %s lines not delivered: %s dropped because the 4.0 KiB buffer was full", count(dropped), count(read), count(dropped))
	if !strings.Contains(r.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr.String())
	}
	if r.sink.WaitLines(written, waitTimeout); r.sink.LineCount() != written {
		t.Errorf("the sink received %d lines; the summary says %d were written", r.sink.LineCount(), written)
	}
	if strings.Contains(r.stderr.String(), "reading waits for room") {
		t.Errorf("with -full drop, reading waited:\n%s", r.stderr.String())
	}
}

// TestSendWaitLimit: -wait bounds the wait; a line that has waited that
// long for room is dropped and counted.
func TestSendWaitLimit(t *testing.T) {
	t.Parallel()
	// The queue holds about 200 of these lines (12 bytes each, and 8 of
	// bookkeeping): about 50 wait 50ms each, and are dropped.
	r, wait := startOutageRun(t, 250, "-wait", "50ms", "-close-timeout", "200ms")
	if err := <-r.done; err != nil { // each line waits 50ms at most: it all goes in the end
		t.Fatalf("feeding send: %v", err)
	}
	if code := wait(); code != 1 {
		t.Errorf("exit status %d, want 1; stderr:\n%s", code, r.stderr.String())
	}
	if !regexp.MustCompile(`250 of 250 lines not delivered: [1-9]\d* dropped because the 4\.0 KiB buffer was full for 50ms \(-wait\), [1-9]\d* still queued when the 200ms close timeout ran out`).MatchString(r.stderr.String()) {
		t.Errorf("stderr does not report the lines dropped after -wait:\n%s", r.stderr.String())
	}
}

// TestSendFileBackPressure: a file read faster than the sink takes it
// arrives whole with the default flags (the report: -file big.log to a
// slow sink dropped lines and exited 1).
func TestSendFileBackPressure(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "unix")
	lines := numbered("file", 100_000)
	path := filepath.Join(t.TempDir(), "big.log")
	if err := os.WriteFile(path, []byte(joinLines(lines)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, runTimeout, nil, "send", "-buffer", "16k", "-file", path, "unix://"+sink.Addr())
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	if read, written, dropped, _ := summary(t, r.stderr); read != len(lines) || written != len(lines) || dropped != 0 {
		t.Errorf("summary: %s", r.stderr)
	}
	if !sink.WaitLines(len(lines), waitTimeout) || !slices.Equal(received(sink), lines) {
		t.Errorf("the sink received %d of %d lines, or not in order", sink.LineCount(), len(lines))
	}
}
