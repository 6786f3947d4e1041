//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildConnpipe builds cmd/connpipe from the module under test.
func buildConnpipe(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "connpipe")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/seed44b27a20/conn/cmd/connpipe").CombinedOutput()
	if err != nil {
		t.Fatalf("go build connpipe: %v\n%s", err, out)
	}
	return bin
}

func TestConnpipeIntoRsyslogAcrossARestart(t *testing.T) {
	const lines = 20_000
	bin := buildConnpipe(t)
	r := startRsyslog(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "send", "-backoff-base", "50ms", "-backoff-max", "500ms", "tcp://"+r.addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fed := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(stdin)
		for seq := range lines {
			w.Write(syslogLine(fmt.Sprintf("p0 %d end", seq)))
			if seq%100 == 99 { // about 2 s in all
				w.Flush()
				time.Sleep(10 * time.Millisecond)
			}
		}
		w.Flush()
		fed <- stdin.Close()
	}()
	time.Sleep(time.Second)
	r.stop()
	r.start()
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	summary := strings.TrimSpace(stderr.String())
	t.Logf("connpipe: %s", summary)
	if err != nil {
		t.Fatalf("connpipe send exited with %v, want 0", err)
	}
	if !strings.Contains(summary, "20,000 lines read") && !strings.Contains(summary, "20000 lines read") {
		t.Errorf("summary %q does not count the lines read", summary)
	}

	// connpipe has handed everything to its socket; wait until rsyslogd has
	// written what it read.
	last, stable := -1, time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Since(stable) < 500*time.Millisecond; time.Sleep(50 * time.Millisecond) {
		if n := len(r.lines()); n != last {
			last, stable = n, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("rsyslog's output kept growing for 30s")
		}
	}
	r.stop()
	received, torn := parse(r.lines())
	ok := [][]bool{make([]bool, lines)}
	for i := range ok[0] {
		ok[0][i] = true // exit 0: every line was written to a connection
	}
	o := tally("p", ok, received)
	t.Logf("connpipe send through one rsyslogd restart: %v; %d torn", o, len(torn))
	if len(torn) > 0 {
		t.Errorf("%d lines not whole, e.g. %q", len(torn), torn[0])
	}
	if o.lost > 200 {
		t.Errorf("%d lines missing, more than the in-flight window of one restart", o.lost)
	}
}

// TestConnpipeFastFileIntoRsyslog sends a file much faster than rsyslogd
// writes it out, with send's default flags: reading waits for room in the
// queue, so every line arrives and connpipe exits 0. (The report: -file
// big.log to a slow sink dropped lines, and exited 1.) -full drop, which
// reads without waiting, drops lines on the same file, showing that the
// file does outrun rsyslogd.
func TestConnpipeFastFileIntoRsyslog(t *testing.T) {
	const lines = 300_000
	bin := buildConnpipe(t)
	r := startRsyslog(t)
	var buf bytes.Buffer
	for seq := range lines {
		buf.Write(syslogLine(fmt.Sprintf("p0 %d end", seq)))
	}
	file := filepath.Join(t.TempDir(), "big.log")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"send", "-file", file}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("connpipe: %v", err)
		}
		return cmd.ProcessState.ExitCode(), strings.TrimSpace(stderr.String())
	}

	code, summary := run("tcp://" + r.addr)
	t.Logf("connpipe send -file: exit %d: %s", code, summary)
	if code != 0 || !strings.Contains(summary, "300,000 lines read") || !strings.Contains(summary, "300,000 written, 0 dropped") {
		t.Fatalf("exit status %d, summary %q; want 0, every line written", code, summary)
	}
	// connpipe has handed everything to its socket; rsyslogd writes it.
	deadline := time.Now().Add(time.Minute)
	for len(r.lines()) < lines && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // nothing signals rsyslogd's progress
	}
	received, torn := parse(r.lines())
	ok := [][]bool{make([]bool, lines)}
	for i := range ok[0] {
		ok[0][i] = true
	}
	if o := tally("p", ok, received); o.lost > 0 || o.duplicated > 0 || len(torn) > 0 {
		t.Errorf("rsyslog: %v; %d torn", o, len(torn))
	}

	// The control: the same file with -full drop and a queue of 64 KiB.
	code, summary = run("-full", "drop", "-buffer", "64k", "tcp://"+r.addr)
	t.Logf("connpipe send -full drop -buffer 64k -file: exit %d: %s", code, summary)
	if code != 1 || !strings.Contains(summary, "dropped because the 64.0 KiB buffer was full") {
		t.Errorf("-full drop: exit status %d, summary %q; want 1 and lines dropped: did the file not outrun rsyslogd?", code, summary)
	}
}
