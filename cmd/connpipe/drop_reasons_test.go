package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn/internal/testnet"
)

var disconnectedRE = regexp.MustCompile(`connpipe: disconnected: `)

// TestSendDropReasonsAddUp: the reasons the summary gives for the lines
// not delivered count each line once: with -full drop and nothing to send
// to, those dropped because the buffer was full and those still queued at
// the close timeout add up to all the lines, and the connection's last
// error says why nothing went out.
func TestSendDropReasonsAddUp(t *testing.T) {
	t.Parallel()
	const lines = 20
	r := startSendHere(t, context.Background(), &env{}, "-v", "-full", "drop", "-buffer", "100", "-close-timeout", "100ms", "-backoff-base", "1m", "-backoff-max", "1m", "tcp://"+freePort(t))
	r.write(t, joinLines(numbered("line", lines)))
	r.stderr.waitFor(t, 0, disconnectedRE, waitTimeout)
	code, stderr := r.end(t)
	m := regexp.MustCompile(`\nconnpipe: 20 of 20 lines not delivered: (\d+) dropped because the 100 B buffer was full, (\d+) still queued when the 100ms close timeout ran out; last error: .+\n$`).FindStringSubmatch(stderr)
	if code != exitFailed || m == nil {
		t.Fatalf("exit status %d, stderr:\n%s", code, stderr)
	}
	full, _ := strconv.Atoi(m[1])
	queued, _ := strconv.Atoi(m[2])
	if full < 1 || queued < 1 || full+queued != lines {
		t.Errorf("%d dropped as the buffer was full and %d still queued: want some of each, %d in all", full, queued, lines)
	}
}

// TestSendLastErrorWithTheSummary: when lines were not delivered, the
// summary adds the connection's last error if the run ended without a
// connection, even if the lines were dropped for another reason (too
// long); when it ended connected, an earlier failure explains nothing and
// is left out.
func TestSendLastErrorWithTheSummary(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200) + "\n"
	t.Run("ended without a connection", func(t *testing.T) {
		t.Parallel()
		r := startSendHere(t, context.Background(), &env{}, "-v", "-buffer", "100", "-backoff-base", "1m", "-backoff-max", "1m", "tcp://"+freePort(t))
		r.write(t, long)
		r.stderr.waitFor(t, 0, disconnectedRE, waitTimeout)
		code, stderr := r.end(t)
		if code != exitFailed || !regexp.MustCompile(`\nconnpipe: 1 of 1 line not delivered: 1 longer than 92 B; last error: dial tcp .+\n$`).MatchString(stderr) {
			t.Errorf("exit status %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("ended connected", func(t *testing.T) {
		t.Parallel()
		sink := testnet.NewSink(t, "tcp")
		sink.Stop()
		r := startSendHere(t, context.Background(), &env{}, "-v", "-buffer", "100", "-backoff-base", "10ms", "-backoff-max", "50ms", "tcp://"+sink.Addr())
		r.write(t, long)
		_, end := r.stderr.waitFor(t, 0, disconnectedRE, waitTimeout)
		if err := sink.Start(); err != nil {
			t.Fatal(err)
		}
		r.stderr.waitFor(t, end, regexp.MustCompile(`connpipe: connected to `), waitTimeout)
		r.write(t, "delivered\n")
		if !sink.WaitLines(1, waitTimeout) {
			t.Fatalf("the sink received nothing; stderr:\n%s", r.stderr.String())
		}
		code, stderr := r.end(t)
		if code != exitFailed || !strings.HasSuffix(stderr, "\nconnpipe: 1 of 2 lines not delivered: 1 longer than 92 B\n") {
			t.Errorf("exit status %d, stderr:\n%s", code, stderr)
		}
	})
}
