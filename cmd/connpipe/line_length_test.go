package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// TestSendLongestLine: the longest line send takes is the buffer less the
// queue's overhead of a message, its newline included: that line is sent,
// one byte more is dropped, and the summary names the limit and that one
// reason alone.
func TestSendLongestLine(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	const buffer = 100
	longest := buffer - conn.MessageOverhead // 92 bytes with the newline
	fits := strings.Repeat("f", longest-1)
	over := strings.Repeat("o", longest)
	code, stderr := sendHere(t, "first\n"+fits+"\n"+over+"\n"+"last\n", "-buffer", strconv.Itoa(buffer), "tcp://"+sink.Addr())
	want := []string{"first", fits, "last"}
	if !sink.WaitLines(len(want), waitTimeout) || !slices.Equal(received(sink), want) {
		t.Errorf("received %q, want %q", received(sink), want)
	}
	if code != exitFailed {
		t.Errorf("exit status %d, want %d", code, exitFailed)
	}
	// The reasons end the line: nothing "still queued" besides.
	if want := "\nconnpipe: 1 of 4 lines not delivered: 1 longer than 92 B\n"; !strings.HasSuffix(stderr, want) {
		t.Errorf("stderr does not end with %q:\n%s", want, stderr)
	}
	if read, written, dropped, _ := summary(t, stderr); read != 4 || written != 3 || dropped != 1 {
		t.Errorf("summary: %s", stderr)
	}
}

// TestSendLinesLongerThanTheReadBuffer: lines longer than the input buffer
// (64 KiB) are assembled and sent whole when they fit, the longest that
// fits included, also over a stream where a datagram could not carry
// them; a longer one is skipped to its end, counted with all its bytes,
// and no piece of it is sent as a line of its own.
func TestSendLinesLongerThanTheReadBuffer(t *testing.T) {
	t.Parallel()
	t.Run("fit", func(t *testing.T) {
		t.Parallel()
		sink := testnet.NewSink(t, "tcp")
		longest := 2 * readBufferSize // with its newline
		big := strings.Repeat("b", 100<<10)
		edge := strings.Repeat("e", longest-1)
		over := strings.Repeat("o", longest)
		in := "first\n" + big + "\n" + edge + "\n" + over + "\n" + "last\n"
		code, stderr := sendHere(t, in, "-buffer", strconv.Itoa(longest+conn.MessageOverhead), "tcp://"+sink.Addr())
		want := []string{"first", big, edge, "last"}
		if !sink.WaitLines(len(want), waitTimeout) || !slices.Equal(received(sink), want) {
			t.Errorf("received %d lines, want %d: the long ones whole", sink.LineCount(), len(want))
		}
		if code != exitFailed || !strings.HasSuffix(stderr, "connpipe: 1 of 5 lines not delivered: 1 longer than 128 KiB\n") {
			t.Errorf("exit status %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("too long", func(t *testing.T) {
		t.Parallel()
		sink := testnet.NewSink(t, "tcp")
		// A line of one full input buffer and then 1000 bytes: its end,
		// read apart, would fit the 2 KiB buffer as a line.
		tail := strings.Repeat("t", 999)
		in := "first\n" + strings.Repeat("y", readBufferSize) + tail + "\n" + "last\n"
		code, stderr := sendHere(t, in, "-buffer", "2k", "tcp://"+sink.Addr())
		want := []string{"first", "last"}
		if !sink.WaitLines(len(want), waitTimeout) || !slices.Equal(received(sink), want) {
			t.Errorf("received %.60q, want %q", received(sink), want)
		}
		if code != exitFailed || !strings.HasSuffix(stderr, "connpipe: 1 of 3 lines not delivered: 1 longer than 2.0 KiB\n") {
			t.Errorf("exit status %d, stderr:\n%s", code, stderr)
		}
		if want := "3 lines read (" + bytesize(len(in)) + ")"; !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q: every byte read counts:\n%s", want, stderr)
		}
	})
}

// TestSendTooLongLastLineCountsTheBytesRead: a last line without its
// newline, one whole input buffer long, that does not fit with the newline
// send would add, is skipped, and the summary counts the bytes read, none
// added. The first line puts the total on the edge of the summary's
// rounding: one byte more would show as 64.1 KiB.
func TestSendTooLongLastLineCountsTheBytesRead(t *testing.T) {
	t.Parallel()
	sink := testnet.NewSink(t, "tcp")
	first := strings.Repeat("a", 50)
	in := first + "\n" + strings.Repeat("x", readBufferSize) // no newline
	if bytesize(len(in)) != "64.0 KiB" || bytesize(len(in)+1) != "64.1 KiB" {
		t.Fatalf("%d bytes are not on the edge of the rounding", len(in))
	}
	code, stderr := sendHere(t, in, "-buffer", strconv.Itoa(readBufferSize+conn.MessageOverhead), "tcp://"+sink.Addr())
	if !sink.WaitLines(1, waitTimeout) || !slices.Equal(received(sink), []string{first}) {
		t.Errorf("received %.60q, want the first line alone", received(sink))
	}
	if code != exitFailed || !strings.HasSuffix(stderr, "connpipe: 1 of 2 lines not delivered: 1 longer than 64.0 KiB\n") {
		t.Errorf("exit status %d, stderr:\n%s", code, stderr)
	}
	if want := "2 lines read (64.0 KiB)"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}
