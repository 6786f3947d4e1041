package main

// The tests of send -spool that kill connpipe with SIGKILL, run on Linux:
// what it had read is sent by the next send on the same directory, first,
// over tcp:// and relp://; a record damaged meanwhile is named and
// skipped. And the status line on a terminal.

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/seed44b27a20/conn/internal/testnet"
	"github.com/seed44b27a20/conn/relp/relptest"
)

// sendKilled runs send -spool dir to address with lines on its stdin,
// which stays open, waits until the spool's files hold them all (with the
// operating system, which a kill does not lose; synced within 250 ms, for
// a crash of the machine), and kills it with SIGKILL.
func sendKilled(t *testing.T, dir, address string, lines []string) {
	t.Helper()
	cmd := command(t, runTimeout, "send", "-spool", dir, "-backoff-base", "20ms", "-backoff-max", "100ms", address)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	_, stderr := startWatched(t, cmd)
	feed(t, stdin, lines)
	waitSpooled(t, dir, recordBytes(lines), waitTimeout)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if code, sig := waitEnd(t, cmd, waitTimeout); sig != syscall.SIGKILL {
		t.Fatalf("send ended with status %d, signal %v; want it killed", code, sig)
	}
	if out := stderr.wait(t, waitTimeout); strings.Contains(out, "lines read") {
		t.Fatalf("a killed send printed a summary:\n%s", out)
	}
}

// TestSendSpoolSurvivesKill9: send -spool, killed with SIGKILL while its
// sink was down, loses nothing: the next send on the same directory sends
// what it had read before its own input, and exits 0 once all of it was
// delivered.
func TestSendSpoolSurvivesKill9(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	sink.Stop()
	dir := t.TempDir()
	old, fresh := numbered("old", 20_000), numbered("new", 1000)
	sendKilled(t, dir, "tcp://"+sink.Addr(), old)

	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(fresh)), "send", "-spool", dir, "tcp://"+sink.Addr())
	t.Logf("the next send, in %v; stderr:\n%s", r.took, r.stderr)
	if r.code != 0 {
		t.Errorf("exit status %d, want 0", r.code)
	}
	if got, want := spoolSummary(t, r.stderr), [5]int{len(fresh), len(old), len(old) + len(fresh), 0, 0}; got != want {
		t.Errorf("summary counts %v, want %v", got, want)
	}
	want := append(slices.Clone(old), fresh...)
	if !sink.WaitLines(len(want), waitTimeout) {
		t.Fatalf("the sink received %d of %d lines", sink.LineCount(), len(want))
	}
	if got := received(sink); !slices.Equal(got, want) {
		t.Errorf("received %d lines, not the %d spooled and the %d new in order; first difference at %d", len(got), len(old), len(fresh), firstDiff(got, want))
	}
}

// TestSendSpoolNamesADamagedRecord: a byte of a record changed after a
// kill: the next send names the record's file and byte range on stderr,
// skips it, delivers every other line in order, and exits 1: a line was
// lost.
func TestSendSpoolNamesADamagedRecord(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	sink.Stop()
	dir := t.TempDir()
	old, fresh := numbered("old", 2000), numbered("new", 10)
	sendKilled(t, dir, "tcp://"+sink.Addr(), old)

	const victim = "old 500"
	var (
		file string
		at   int
	)
	for _, seg := range segments(t, dir) {
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, []byte(victim+"\n")); i >= 0 {
			file, at = seg, i+len("old ")
			data[at] ^= 0xff
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if file == "" {
		t.Fatalf("no segment file in %s holds %q", dir, victim)
	}

	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(fresh)), "send", "-spool", dir, "tcp://"+sink.Addr())
	t.Logf("the next send, in %v; stderr:\n%s", r.took, r.stderr)
	if r.code != exitFailed {
		t.Errorf("exit status %d, want %d: a line was lost", r.code, exitFailed)
	}
	m := regexp.MustCompile(`connpipe: spool: damaged record skipped, its lines are lost: (\S+), bytes (\d+)-(\d+) \(checksum mismatch\)\n`).FindAllStringSubmatch(r.stderr, -1)
	if len(m) != 1 {
		t.Fatalf("%d damaged records named on stderr, want 1", len(m))
	}
	from, _ := strconv.Atoi(m[0][2])
	to, _ := strconv.Atoi(m[0][3])
	if m[0][1] != file || from > at || at >= to || to-from > 100 {
		t.Errorf("damage named in %s at bytes %d-%d; the byte changed is %d of %s", m[0][1], from, to, at, file)
	}
	if !strings.Contains(r.stderr, "connpipe: spool "+dir+": 1 damaged region skipped (") {
		t.Errorf("the summary does not count the damaged region")
	}
	if got, want := spoolSummary(t, r.stderr), [5]int{len(fresh), len(old) - 1, len(old) - 1 + len(fresh), 0, 0}; got != want {
		t.Errorf("summary counts %v, want %v", got, want)
	}
	want := append(slices.DeleteFunc(slices.Clone(old), func(l string) bool { return l == victim }), fresh...)
	if !sink.WaitLines(len(want), waitTimeout) {
		t.Fatalf("the sink received %d of %d lines", sink.LineCount(), len(want))
	}
	if got := received(sink); !slices.Equal(got, want) {
		t.Errorf("received %d lines, not the %d undamaged and new ones in order; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
}

// TestSendSpoolRELPSurvivesKill9: over relp://, lines sent to a server
// that never acknowledged them stay in the spool through a SIGKILL: the
// next send delivers them all to another server, acknowledged, before its
// own input, and exits 0.
func TestSendSpoolRELPSurvivesKill9(t *testing.T) {
	t.Parallel()
	stalled := relptest.NewServer(t)
	stalled.Stall()
	dir := t.TempDir()
	old, fresh := numbered("old", 2000), numbered("new", 100)
	sendKilledAfter := func() {
		cmd := command(t, runTimeout, "send", "-spool", dir, "relp://"+stalled.Addr())
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		_, stderr := startWatched(t, cmd)
		feed(t, stdin, old)
		waitSpooled(t, dir, recordBytes(old), waitTimeout)
		// A window of lines sent, and never to be acknowledged.
		if err := stalled.WaitMessages(100, waitTimeout); err != nil {
			t.Fatalf("%v; stderr:\n%s", err, stderr)
		}
		cmd.Process.Kill()
		if _, sig := waitEnd(t, cmd, waitTimeout); sig != syscall.SIGKILL {
			t.Fatalf("send ended by %v, want SIGKILL", sig)
		}
	}
	sendKilledAfter()

	s := relptest.NewServer(t)
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(fresh)), "send", "-spool", dir, "relp://"+s.Addr())
	t.Logf("the next send, in %v; stderr:\n%s", r.took, r.stderr)
	if r.code != 0 {
		t.Errorf("exit status %d, want 0", r.code)
	}
	if got, want := spoolSummary(t, r.stderr), [5]int{len(fresh), len(old), len(old) + len(fresh), 0, 0}; got != want {
		t.Errorf("summary counts %v (read, recovered, acknowledged, dropped, left), want %v", got, want)
	}
	if got, want := s.Messages(), append(slices.Clone(old), fresh...); !slices.Equal(got, want) {
		t.Errorf("the server has %d lines, not the %d spooled and the %d new in order; first difference at %d", len(got), len(old), len(fresh), firstDiff(got, want))
	}
}

// TestTerminalSpoolStatus: on a terminal, with the sink down and a queue
// of 4 KiB, the status line shows what the spool holds on disk and the age
// of its oldest record.
func TestTerminalSpoolStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := startOnTerminal(t, "send", "-spool", dir, "-buffer", "4k", "-close-timeout", "1s", "tcp://"+freePort(t))
	feed(t, r.input, numbered("line", 1000))
	r.screen.waitFor(t, 0, regexp.MustCompile(`· 1,000 queued · spool \d+\.\d KiB, oldest \d`), waitTimeout)
	r.input.Close()
	if code := waitExit(t, r.cmd, runTimeout); code != exitFailed {
		t.Errorf("exit status %d, want %d", code, exitFailed)
	}
	out := r.screen.wait(t, waitTimeout)
	if !regexp.MustCompile(`connpipe: spool ` + regexp.QuoteMeta(dir) + `: 1,000 lines left(, \S+ \S+ yet to be read from disk, the oldest record \S+ old)?; the next send -spool `).MatchString(out) {
		t.Errorf("the summary does not say what the spool keeps")
	}
}
