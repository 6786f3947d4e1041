package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestListenStopDoesNotPrintATornLine: a line cut short by the stop is not
// printed as if it were whole; stderr shows its start. A client's last line
// ended by closing the connection is whole, and printed with a newline.
func TestListenStopDoesNotPrintATornLine(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	out := watch(stdout)
	closed, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(closed, "first\nlast, unterminated"); err != nil {
		t.Fatal(err)
	}
	closed.Close()
	cut, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	if _, err := io.WriteString(cut, "whole\npartial, still coming"); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, 0, regexp.MustCompile(`(?m)^whole\n`), waitTimeout)
	out.waitFor(t, 0, regexp.MustCompile(`(?m)^last, unterminated\n`), waitTimeout)
	// The partial line has been read too, unless the kernel is slow to
	// hand it over; either way it must not be printed.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGINT, stderr.String())
	got := strings.Split(out.wait(t, waitTimeout), "\n")
	slices.Sort(got)
	if want := []string{"", "first", "last, unterminated", "whole"}; !slices.Equal(got, want) {
		t.Errorf("stdout lines %q, want %q (and each ending in a newline)", got, want)
	}
	errText := stderr.wait(t, waitTimeout)
	if strings.Contains(errText, "partial") &&
		!regexp.MustCompile(`connpipe: a line from 127\.0\.0\.1:\d+ was cut short when listen was stopped; not printed: "partial, still coming"\n`).MatchString(errText) {
		t.Errorf("stderr does not say properly that the partial line was not printed:\n%s", errText)
	}
	if !regexp.MustCompile(`connpipe: stopped \(SIGINT\): received 3 lines \(\d+ B\) from 2 clients(; 1 line cut short)?\n$`).MatchString(errText) {
		t.Errorf("stderr does not end with the summary:\n%s", errText)
	}
}

// TestListenResetMidLine: a client that resets its connection in the
// middle of a line gets that line reported, not printed.
func TestListenResetMidLine(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	out := watch(stdout)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "one\ntwo, cut"); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, 0, regexp.MustCompile(`^one\n`), waitTimeout)
	c.(*net.TCPConn).SetLinger(0)
	c.Close() // RST
	stderr.waitFor(t, 0, regexp.MustCompile(`a line from 127\.0\.0\.1:\d+ was cut short when the connection failed \(.*connection reset by peer\); not printed: "two, cut"`), waitTimeout)
	cmd.Process.Signal(syscall.SIGTERM)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGTERM, stderr.String())
	if got := out.wait(t, waitTimeout); got != "one\n" {
		t.Errorf("stdout %q, want only the whole line", got)
	}
}

// TestListenLongLineIsNotInterleaved: a line longer than listen holds back
// is printed as it comes, and no other client's line lands inside it.
func TestListenLongLineIsNotInterleaved(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	out := watch(stdout)
	long, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	start := bytes.Repeat([]byte("a"), maxListenLine+maxListenLine/2)
	if _, err := long.Write(start); err != nil {
		t.Fatal(err)
	}
	// Its first MiB is printed before its end has come.
	if !out.until(func(s string) bool { return len(s) >= maxListenLine }, waitTimeout) {
		t.Fatalf("listen printed %d bytes of the long line, want its first %d before its end", len(out.String()), maxListenLine)
	}
	other, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := io.WriteString(other, "other line\n"); err != nil {
		t.Fatal(err)
	}
	// A wait for something that must not happen: the other line printed
	// inside the long one.
	out.until(func(s string) bool { return strings.Contains(s, "other") }, 300*time.Millisecond)
	if _, err := io.WriteString(long, "end\n"); err != nil {
		t.Fatal(err)
	}
	want := string(start) + "end\nother line\n"
	out.waitFor(t, 0, regexp.MustCompile(`other line\n`), waitTimeout)
	if got := out.String(); got != want {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Errorf("stdout differs from the long line then the other at byte %d: %q", i, got[max(i-10, 0):min(i+30, len(got))])
	}
	cmd.Process.Signal(syscall.SIGTERM)
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGTERM, stderr.String())
}

// TestListenStdoutClosed: when its reader goes (connpipe listen | head -1),
// listen ends by SIGPIPE, as cat would, and quietly.
func TestListenStdoutClosed(t *testing.T) {
	t.Parallel()
	cmd, addr, stdout, stderr := startListenRaw(t, "tcp://127.0.0.1:0")
	stdout.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "nobody reads this\n"); err != nil {
		t.Fatal(err)
	}
	code, sig := waitEnd(t, cmd, waitTimeout)
	wantSignaled(t, code, sig, syscall.SIGPIPE, stderr.String())
}
