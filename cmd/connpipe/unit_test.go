package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
	if got := plural(1, "line"); got != "1 line" {
		t.Errorf("plural(1) = %q", got)
	}
	if got := plural(uint64(2000), "line"); got != "2,000 lines" {
		t.Errorf("plural(2000) = %q", got)
	}
}

func TestBytesize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 4 << 20: "4.0 MiB", 200 << 20: "200 MiB", 3 << 40: "3072 GiB"} {
		if got := bytesize(n); got != want {
			t.Errorf("bytesize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"65536": 65536, "64k": 64 << 10, "64K": 64 << 10, "64KiB": 64 << 10, "4M": 4 << 20, "4MB": 4 << 20, "1G": 1 << 30, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, n := range []int{1, 1000, 1024, 4 << 20, 1 << 30, 1<<20 + 1, maxSize} {
		s := sizeFlag(n)
		var back sizeFlag
		if err := back.Set(s.String()); err != nil || back != s {
			t.Errorf("sizeFlag(%d).String() = %q, which parses as %d, %v", n, s.String(), back, err)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5M", "4X", "M", "99999999999999G", strconv.Itoa(maxSize) + "0", "2048G"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestDemoLine(t *testing.T) {
	for _, seq := range []int64{0, 1, 25, 26, 32, 33, 123456789} {
		line := demoLine(nil, seq)
		if !bytes.HasSuffix(line, []byte("\n")) {
			t.Fatalf("demoLine(%d) = %q", seq, line)
		}
		got, ok := parseDemoLine(line[:len(line)-1])
		if !ok || got != seq {
			t.Errorf("parseDemoLine(demoLine(%d)) = %d, %v", seq, got, ok)
		}
		// Any cut, or two lines spliced, is not a demo line.
		next := demoLine(nil, seq+1)
		for i := 1; i < len(line)-1; i++ {
			if _, ok := parseDemoLine(line[:i]); ok {
				t.Errorf("the first %d bytes of %q pass for a line", i, line)
			}
			if i >= len(next) {
				continue
			}
			spliced := append(append([]byte(nil), line[:i]...), next[i:]...)
			if _, ok := parseDemoLine(spliced[:len(spliced)-1]); ok && !bytes.Equal(spliced, line) && !bytes.Equal(spliced, next) {
				t.Errorf("%q spliced from two lines passes for one", spliced)
			}
		}
	}
}

func TestConsole(t *testing.T) {
	var b strings.Builder
	c := newConsole(&b, true)
	c.Status("status one")
	c.Printf("event %d", 1)
	c.Status("two")
	c.ClearStatus()
	// Erasing covers two more columns: a "^C" the terminal echoed.
	want := "\rstatus one" + "\r            \r" + "event 1\n" + "status one" + "\rtwo         \rtwo" + "\r     \r"
	if b.String() != want {
		t.Errorf("console wrote %q, want %q", b.String(), want)
	}
	// A status line leaves room for "^C" at the end of the terminal's line,
	// so that the echo does not wrap it.
	b.Reset()
	c = newConsole(&b, true)
	c.width = 20
	c.Status(strings.Repeat("x", 30))
	if want := "\r" + strings.Repeat("x", 16) + "…"; b.String() != want {
		t.Errorf("in 20 columns, console wrote %q, want %q", b.String(), want)
	}
	b.Reset()
	c = newConsole(&b, false)
	c.Status("not a terminal")
	c.Printf("line")
	if b.String() != "line\n" {
		t.Errorf("console wrote %q without a terminal", b.String())
	}
}

// TestRunUsageErrors runs the command line in-process: a mistake is one
// line on stderr and status 2, before anything is started.
func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nope"}, {"send"}, {"send", "htp://x:1"}, {"send", "-x", "h:1"}, {"listen", "h"}, {"demo", "extra"},
	} {
		var stdout, stderr strings.Builder
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
		if code := run(context.Background(), args, e); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d", args, code, exitUsage)
		}
		if strings.Count(stderr.String(), "\n") != 1 || stdout.Len() != 0 {
			t.Errorf("run(%q): stdout %q, stderr %q", args, stdout.String(), stderr.String())
		}
	}
}

func TestRateString(t *testing.T) {
	for f, want := range map[float64]string{0: "0", 999.4: "999", 1500: "1.5k", 99949: "99.9k", 240000: "240k", 1.2e6: "1.20M"} {
		if got := rateString(f); got != want {
			t.Errorf("rateString(%v) = %q, want %q", f, got, want)
		}
	}
	if got := elapsed(1234 * time.Millisecond); got != "1.23s" {
		t.Errorf("elapsed = %q", got)
	}
}

// TestWaitForRoom: by default reading waits for room without a limit, not
// for some long time after which a line would be dropped.
func TestWaitForRoom(t *testing.T) {
	var cfg sendConfig
	fs := sendFlags(&cfg)
	if _, err := fs.parse([]string{"tcp://h:1"}); err != nil {
		t.Fatal(err)
	}
	if cfg.full != "wait" || cfg.waitForRoom() != time.Duration(math.MaxInt64) {
		t.Errorf("by default -full %s, and a line waits %v for room; want wait, with no limit", cfg.full, cfg.waitForRoom())
	}
	if _, err := fs.parse([]string{"-wait", "2s", "tcp://h:1"}); err != nil || cfg.waitForRoom() != 2*time.Second {
		t.Errorf("-wait 2s: a line waits %v for room (%v)", cfg.waitForRoom(), err)
	}
}

func TestCountdown(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", time.Millisecond: "0.1s", 2340 * time.Millisecond: "2.4s", 9950 * time.Millisecond: "10.0s",
		10 * time.Second: "10s", 10*time.Second + time.Millisecond: "11s", time.Minute: "1m0s", 89500 * time.Millisecond: "1m30s",
	} {
		if got := countdown(d); got != want {
			t.Errorf("countdown(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestStatusLine: what the status line says in each phase.
func TestStatusLine(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	ep := endpoint{Scheme: "tcp", Network: "tcp", Address: "logs:5000", Host: "logs", Port: 5000}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	lost := errors.New("write: broken pipe")
	for _, tt := range []struct {
		name string
		v    statusView
		want string
	}{
		{"connecting", statusView{state: conn.Connecting},
			"connecting to tcp://logs:5000 · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
		{"connected", statusView{state: conn.Connected, written: 1234, bytes: 2048, lps: 1500, bps: 4096, reconnects: 1, queued: 3},
			"connected · 1,234 lines 2.0 KiB · 1.5k/s 4.0 KiB/s · 1 reconnect · 0 dropped · 3 queued"},
		{"disconnected, next dial later", statusView{state: conn.Disconnected, lastErr: refused,
			event: &seenEvent{Event: conn.Event{State: conn.Disconnected, Err: refused, Attempt: 2, Wait: 4 * time.Second}, at: now.Add(-1500 * time.Millisecond)}, queued: 7, waiting: true},
			"disconnected: connect: connection refused · next dial in 2.5s (attempt 3) · queue full: reading waits · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped · 7 queued"},
		{"disconnected, dialing", statusView{state: conn.Disconnected, lastErr: refused,
			event: &seenEvent{Event: conn.Event{State: conn.Disconnected, Err: refused, Attempt: 1, Wait: time.Second}, at: now.Add(-2 * time.Second)}},
			"disconnected: connect: connection refused · dialing (attempt 2) · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
		{"lost, redialing at once", statusView{state: conn.Disconnected, lastErr: lost,
			event: &seenEvent{Event: conn.Event{State: conn.Disconnected, Err: lost}, at: now}},
			"disconnected: write: broken pipe · dialing · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
		{"the hook has not seen the change", statusView{state: conn.Disconnected, lastErr: lost,
			event: &seenEvent{Event: conn.Event{State: conn.Connected}, at: now}},
			"disconnected: write: broken pipe · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
		{"interrupted", statusView{state: conn.Connected, queued: 12, flush: &flushState{end: interrupted, deadline: now.Add(9500 * time.Millisecond)}},
			"interrupted · flushing 12 lines queued, giving up in 9.5s · Ctrl-C again to stop now · connected · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
		{"end of input", statusView{state: conn.Connected, queued: 1, flush: &flushState{end: endOfInput, deadline: now.Add(30 * time.Second)}},
			"end of input · flushing 1 line queued, giving up in 30s · Ctrl-C to stop now · connected · 0 lines 0 B · 0/s 0 B/s · 0 reconnects · 0 dropped"},
	} {
		tt.v.now, tt.v.ep = now, ep
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}
