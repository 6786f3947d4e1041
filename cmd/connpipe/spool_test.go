package main

// The tests of send -spool that run everywhere: an outage longer than the
// memory queue read onto disk and delivered by the next send, one send per
// directory, a full spool under -full drop, the flags, and what the status
// line says. The tests that kill connpipe are in spool_linux_test.go.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

var spoolSummaryRE = regexp.MustCompile(`connpipe: ([\d,]+) lines? read \([^)]*\), ([\d,]+) recovered from the spool, ([\d,]+) (?:written|acknowledged), (?:[\d,]+ replayed, [\d,]+ refused, )?([\d,]+) dropped, ([\d,]+) left in the spool, `)

// spoolSummary returns the counts of the summary of send -spool: lines
// read, recovered from the spool, delivered (written, or acknowledged),
// dropped, and left in the spool.
func spoolSummary(t *testing.T, stderr string) [5]int {
	t.Helper()
	m := spoolSummaryRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no -spool summary on stderr:\n%s", stderr)
	}
	var n [5]int
	for i := range n {
		n[i], _ = strconv.Atoi(strings.ReplaceAll(m[i+1], ",", ""))
	}
	return n
}

// segments returns the spool's segment files in dir.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "seg-*.spool"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// spoolFileBytes returns the bytes of the spool's segment files in dir.
func spoolFileBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, seg := range segments(t, dir) {
		if fi, err := os.Stat(seg); err == nil { // a segment delivered may go meanwhile
			n += fi.Size()
		}
	}
	return n
}

// recordBytes is what lines take in the spool's files, at least: each
// line, its newline, and a record header of 20 bytes (conn.WithSpool).
func recordBytes(lines []string) int64 {
	var n int64
	for _, l := range lines {
		n += int64(len(l)) + 1 + 20
	}
	return n
}

// waitSpooled waits until the spool's files in dir hold at least n bytes,
// for timeout: the lines are then with the operating system, which a kill
// of connpipe does not lose. There is no signal for it: it polls.
func waitSpooled(t *testing.T, dir string, n int64, timeout time.Duration) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for spoolFileBytes(t, dir) < n {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the spool's files hold %d bytes after %v, want at least %d", spoolFileBytes(t, dir), timeout, n)
		}
	}
}

// feedAll writes lines to w and closes it, in a goroutine; the channel
// gets the outcome once send has taken it all, or stopped taking it.
func feedAll(w io.WriteCloser, lines []string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := io.WriteString(w, joinLines(lines))
		done <- errors.Join(err, w.Close())
	}()
	return done
}

// TestSendSpoolReadsAnOutageOntoDisk: with the sink down, send -spool
// reads an input 15 times its memory queue without waiting (without
// -spool reading waits for room: TestSendWaitsForRoomByDefault), keeps it
// in the spool's files when the close timeout runs out, and exits 1 saying
// so; the next send with the same directory, the sink up, sends it all, in
// order, and exits 0.
func TestSendSpoolReadsAnOutageOntoDisk(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	sink.Stop()
	dir := t.TempDir()
	lines := numbered("old", 100_000) // 1.1 MB; the queue holds 64 KiB
	cmd := command(t, runTimeout, "send", "-spool", dir, "-buffer", "64k", "-close-timeout", "1s",
		"-backoff-base", "20ms", "-backoff-max", "100ms", "tcp://"+sink.Addr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr := startWatched(t, cmd)
	start := time.Now()
	select {
	case err := <-feedAll(stdin, lines):
		if err != nil {
			t.Fatalf("feeding send: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("send did not take its input within %v with the sink down: reading waited; stderr:\n%s", waitTimeout, stderr)
	}
	took := time.Since(start)
	if code := waitExit(t, cmd, runTimeout); code != exitFailed {
		t.Errorf("exit status %d, want %d: nothing was delivered", code, exitFailed)
	}
	out := stderr.wait(t, waitTimeout)
	t.Logf("the input taken in %v; stderr:\n%s", took, out)
	if got, want := spoolSummary(t, out), [5]int{len(lines), 0, 0, 0, len(lines)}; got != want {
		t.Errorf("summary counts %v, want %v", got, want)
	}
	for _, want := range []string{
		"connpipe: 100,000 of 100,000 lines not delivered: 100,000 still queued when the 1s close timeout ran out, kept in the spool for the next send",
		"connpipe: spool " + dir + ": 100,000 lines left, ",
		"; the next send -spool " + dir + " sends them first\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if got, want := spoolFileBytes(t, dir), recordBytes(lines); got < want {
		t.Errorf("the spool's files hold %d bytes, want at least %d", got, want)
	}
	if sink.Accepted() != 0 {
		t.Fatalf("the sink, stopped, accepted %d connections", sink.Accepted())
	}

	// The next send, the sink up, with no input of its own.
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, runTimeout, strings.NewReader(""), "send", "-spool", dir, "tcp://"+sink.Addr())
	t.Logf("the next send, in %v; stderr:\n%s", r.took, r.stderr)
	if r.code != 0 {
		t.Errorf("the next send: exit status %d, want 0", r.code)
	}
	if got, want := spoolSummary(t, r.stderr), [5]int{0, len(lines), len(lines), 0, 0}; got != want {
		t.Errorf("the next send: summary counts %v, want %v", got, want)
	}
	if !regexp.MustCompile(`connpipe: spool `+regexp.QuoteMeta(dir)+` holds \d+\.\d MiB from an earlier send, the oldest record \S+ old: sending it before any new input\n`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "connpipe: spool "+dir+": empty\n") {
		t.Errorf("the next send does not say what the spool held, and that it is empty")
	}
	if !sink.WaitLines(len(lines), waitTimeout) {
		t.Fatalf("the sink received %d of %d lines", sink.LineCount(), len(lines))
	}
	if got := received(sink); !slices.Equal(got, lines) {
		t.Errorf("received %d lines, not the %d spooled in order; first difference at %d", len(got), len(lines), firstDiff(got, lines))
	}
}

// TestSendSpoolDirectoryHasOneSender: while a send holds a spool
// directory, another send on it fails at once, with status 1 and one line
// that says why, and connects to nothing; a directory that cannot be made
// fails so too.
func TestSendSpoolDirectoryHasOneSender(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	dir := t.TempDir()
	first := command(t, runTimeout, "send", "-v", "-spool", dir, "tcp://"+sink.Addr())
	stdin, err := first.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr := startWatched(t, first)
	stderr.waitFor(t, 0, regexp.MustCompile(`connpipe: spooling to `+regexp.QuoteMeta(dir)+`: at most 1\.0 GiB on disk, synced every 250ms\n`), waitTimeout)
	if !sink.WaitAccepted(1, waitTimeout) {
		t.Fatal("the first send did not connect")
	}

	r := runBinary(t, runTimeout, strings.NewReader("second\n"), "send", "-spool", dir, "tcp://"+sink.Addr())
	t.Logf("the second send, in %v: %q", r.took, r.stderr)
	want := "connpipe: cannot use -spool " + dir + ": "
	if r.code != exitFailed || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "in use") {
		t.Errorf("the second send: exit status %d, stderr %q; want %d and one line starting %q, saying the directory is in use", r.code, r.stderr, exitFailed, want)
	}
	if r.took > 10*time.Second {
		t.Errorf("the second send took %v to fail", r.took)
	}
	// A path that cannot be a directory.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runBinary(t, runTimeout, strings.NewReader("third\n"), "send", "-spool", filepath.Join(file, "spool"), "tcp://"+sink.Addr())
	if r.code != exitFailed || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "connpipe: cannot use -spool "+filepath.Join(file, "spool")+": ") {
		t.Errorf("a spool under a file: exit status %d, stderr %q; want %d and one line", r.code, r.stderr, exitFailed)
	}
	// This wait is for something that must not happen: the sends that
	// failed have exited, and a connection of theirs would be in by now.
	if sink.WaitAccepted(2, 200*time.Millisecond) {
		t.Errorf("the sink accepted %d connections: a send whose spool did not open connected", sink.Accepted())
	}

	io.WriteString(stdin, "first\n")
	stdin.Close()
	if code := waitExit(t, first, runTimeout); code != 0 {
		t.Errorf("the first send: exit status %d, want 0; stderr:\n%s", code, stderr.wait(t, waitTimeout))
	}
	if !sink.WaitLines(1, waitTimeout) || !slices.Equal(sink.Lines(), []string{"first"}) {
		t.Errorf("the sink received %q, want only the first send's line", sink.Lines())
	}
}

// TestSendSpoolFullDrops: with the sink down, a spool of 64 KiB fills,
// and -full drop drops and counts the lines that find it full; what it
// holds is kept for the next send.
func TestSendSpoolFullDrops(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	sink.Stop()
	dir := t.TempDir()
	lines := numbered("full", 20_000) // about 580 KB in the spool's files
	r := runBinary(t, runTimeout, strings.NewReader(joinLines(lines)), "send", "-spool", dir, "-spool-size", "64k", "-full", "drop",
		"-close-timeout", "300ms", "tcp://"+sink.Addr())
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitFailed {
		t.Errorf("exit status %d, want %d", r.code, exitFailed)
	}
	n := spoolSummary(t, r.stderr)
	read, dropped, left := n[0], n[3], n[4]
	if read != len(lines) || dropped == 0 || left == 0 || dropped+left != read || n[2] != 0 {
		t.Errorf("summary counts %v: want all %d read, some dropped, some left in the spool, none written", n, len(lines))
	}
	want := fmt.Sprintf("connpipe: %s of %s lines not delivered: %s dropped because the 64.0 KiB spool was full, %s still queued when the 300ms close timeout ran out, kept in the spool for the next send",
		count(read), count(read), count(dropped), count(left))
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q", want)
	}
	if got := spoolFileBytes(t, dir); got > 64<<10 {
		t.Errorf("the spool's files hold %d bytes, more than -spool-size 64k", got)
	}
}

// TestSendSpoolUsage: -spool needs a directory, -spool-size needs -spool
// and a size.
func TestSendSpoolUsage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-spool", "", "tcp://127.0.0.1:1"}, "connpipe: -spool needs a directory: -spool DIR"},
		{[]string{"-spool-size", "1M", "tcp://127.0.0.1:1"}, "connpipe: -spool-size applies only with -spool DIR"},
		{[]string{"-spool", t.TempDir(), "-spool-size", "4X", "tcp://127.0.0.1:1"}, `unknown unit "X"`},
		{[]string{"-spool", t.TempDir(), "-spool-size", "0", "tcp://127.0.0.1:1"}, "want a positive size"},
	} {
		code, stderr := sendHere(t, "must not be sent\n", tt.args...)
		if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("connpipe send %q: status %d, stderr %q; want %d and one line with %q", tt.args, code, stderr, exitUsage, tt.want)
		}
	}
	var cfg sendConfig
	fs := sendFlags(&cfg)
	if _, err := fs.parse([]string{"-spool", "d", "tcp://h:1"}); err != nil {
		t.Fatal(err)
	}
	if cfg.spoolSize != 1<<30 {
		t.Errorf("-spool-size is %v by default, want 1 GiB", cfg.spoolSize)
	}
	if _, err := fs.parse([]string{"-spool", "d", "-spool-size", "1536M", "tcp://h:1"}); err != nil || cfg.spoolSize != 1536<<20 {
		t.Errorf("-spool-size 1536M: %v, %v", cfg.spoolSize, err)
	}
}

// TestSpoolStatusLine: with -spool the status line ends with what the
// spool holds on disk and the age of its oldest record, and says when the
// spool, not the queue, is full.
func TestSpoolStatusLine(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	ep := endpoint{Scheme: "tcp", Network: "tcp", Address: "logs:5000", Host: "logs", Port: 5000}
	for _, tt := range []struct {
		name string
		v    statusView
		want string
	}{
		{"empty", statusView{state: conn.Connected, written: 10, bytes: 100, spool: &conn.SpoolStats{}},
			"connected · 10 lines 100 B · 0/s 0 B/s · 0 reconnects · 0 dropped · spool 0 B"},
		{"an outage", statusView{state: conn.Connecting, queued: 5000, spool: &conn.SpoolStats{Bytes: 3 << 20, OldestAge: 12300 * time.Millisecond}},
			"connecting to tcp://logs:5000 · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped · 5,000 queued · spool 3.0 MiB, oldest 13s"},
		{"full", statusView{state: conn.Connecting, queued: 5, waiting: true, spool: &conn.SpoolStats{Bytes: 1 << 30, OldestAge: 2 * time.Second, Err: errors.New("write seg: no space left on device")}},
			"connecting to tcp://logs:5000 · spool full: reading waits · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped · 5 queued · spool 1.0 GiB, oldest 2.0s (failing: write seg: no space left on device)"},
	} {
		tt.v.now, tt.v.ep = now, ep
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

// TestSpoolWatchNamesEachDamagedRegionOnce: the Manager's log lines that
// name a damaged region are printed, each once, whether the log or a drop
// report brings it first; other log lines are not.
func TestSpoolWatchNamesEachDamagedRegionOnce(t *testing.T) {
	var b strings.Builder
	sw := newSpoolWatch(newConsole(&b, false))
	sw.Log("level", "info", "msg", "connected", "endpoint", "a:1")
	sw.Log("level", "warn", "msg", "spool record damaged; skipped", "file", "/s/seg-1.spool", "from", int64(16), "to", int64(45), "reason", "checksum mismatch")
	sw.dropReport(conn.DropReport{Damaged: 2, Err: &conn.SpoolDamageError{File: "/s/seg-1.spool", From: 16, To: 45, Reason: "checksum mismatch"}})
	sw.dropReport(conn.DropReport{Damaged: 1, Err: &conn.SpoolDamageError{File: "/s/seg-1.spool", From: 90, To: 120, Reason: "cut short"}})
	sw.Log("level", "warn", "msg", "spool record damaged; skipped", "file", "/s/seg-1.spool", "from", int64(90), "to", int64(120), "reason", "cut short")
	sw.dropReport(conn.DropReport{Rejected: 1, Err: conn.ErrBufferFull})
	want := "connpipe: spool: damaged record skipped, its lines are lost: /s/seg-1.spool, bytes 16-45 (checksum mismatch)\n" +
		"connpipe: spool: damaged record skipped, its lines are lost: /s/seg-1.spool, bytes 90-120 (cut short)\n"
	if b.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", b.String(), want)
	}
}
