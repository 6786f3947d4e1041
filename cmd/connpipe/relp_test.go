package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/relp/relptest"
)

// The tests of send relp:// run against relp/relptest's server.

var relpSummaryRE = regexp.MustCompile(`connpipe: ([\d,]+) lines? read \([^)]*\), ([\d,]+) acknowledged, ([\d,]+) replayed, ([\d,]+) refused, ([\d,]+) dropped, `)

// relpSummary returns the counts of the summary: read, acknowledged,
// replayed, refused, dropped.
func relpSummary(t *testing.T, stderr string) [5]int {
	t.Helper()
	m := relpSummaryRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no RELP summary in stderr:\n%s", stderr)
	}
	var n [5]int
	for i := range n {
		n[i], _ = strconv.Atoi(strings.ReplaceAll(m[i+1], ",", ""))
	}
	return n
}

func TestSendRELPClean(t *testing.T) {
	const lines = 1000
	s := relptest.NewServer(t)
	r := runBinary(t, time.Minute, strings.NewReader(joinLines(numbered("line", lines))), "send", "relp://"+s.Addr())
	if r.code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	if got, want := relpSummary(t, r.stderr), [5]int{lines, lines, 0, 0, 0}; got != want {
		t.Errorf("summary counts %v, want %v; stderr:\n%s", got, want, r.stderr)
	}
	got := s.Messages()
	if len(got) != lines {
		t.Fatalf("the server read %d lines, want %d", len(got), lines)
	}
	for i, l := range got {
		if want := fmt.Sprintf("line %d", i); l != want { // sent without its newline
			t.Fatalf("line %d at the server is %q, want %q", i, l, want)
		}
	}
}

func TestSendRELPRefused(t *testing.T) {
	const lines = 100
	s := relptest.NewServer(t, relptest.WithAnswer(func(msg []byte) (int, string) {
		if strings.Contains(string(msg), "REFUSE") {
			return 500, "refused by the test"
		}
		return 200, "OK"
	}))
	in := strings.Replace(joinLines(numbered("line", lines)), "line 50\n", "line 50 REFUSE\n", 1)
	r := runBinary(t, time.Minute, strings.NewReader(in), "send", "relp://"+s.Addr())
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitFailed {
		t.Fatalf("exit status %d, want %d", r.code, exitFailed)
	}
	if got, want := relpSummary(t, r.stderr), [5]int{lines, lines - 1, 0, 1, 0}; got != want {
		t.Errorf("summary counts %v, want %v", got, want)
	}
	if want := "connpipe: 1 of 100 lines not acknowledged: 1 refused by the server (the last: "; !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "refused by the test") {
		t.Errorf("stderr does not say %q with the server's answer", want)
	}
	if strings.Contains(r.stderr, "last error") {
		t.Errorf("stderr blames a connection's error for a refusal")
	}
	if got := s.Stats().Messages; got != lines {
		t.Errorf("the server read %d lines, want %d: the refused one is not sent again", got, lines)
	}
}

// TestSendRELPResetMidStream resets the connection while the server holds
// back its answers to lines it has read: those come again on the next
// connection, and nothing is lost.
func TestSendRELPResetMidStream(t *testing.T) {
	const (
		before  = 500 // lines answered before the reset
		stalled = 50  // lines read and not answered when it comes
		after   = 500
	)
	s := relptest.NewServer(t)
	cmd := command(t, time.Minute, "send", "-v", "-backoff-base", "10ms", "-backoff-max", "50ms", "relp://"+s.Addr())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr := startWatched(t, cmd)
	feed := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if _, err := fmt.Fprintf(in, "line %d\n", i); err != nil {
				t.Fatalf("writing to connpipe: %v", err)
			}
		}
	}
	wait := func(n int) {
		t.Helper()
		if err := s.WaitMessages(n, 30*time.Second); err != nil {
			t.Fatalf("%v\nstderr:\n%s", err, stderr)
		}
	}
	feed(0, before)
	wait(before)
	s.Stall()
	feed(before, stalled)
	wait(before + stalled)
	s.Reset()
	s.Release()
	feed(before+stalled, after)
	in.Close()
	code := waitExit(t, cmd, time.Minute)
	out := stderr.wait(t, 10*time.Second)
	t.Logf("stderr:\n%s", out)
	const lines = before + stalled + after
	if code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	sum := relpSummary(t, out)
	if sum[0] != lines || sum[1] != lines || sum[3] != 0 || sum[4] != 0 {
		t.Errorf("summary counts %v, want %d read and acknowledged, none refused or dropped", sum, lines)
	}
	seen := map[string]int{}
	dup := 0
	for _, l := range s.Messages() {
		if seen[l]++; seen[l] > 1 {
			dup++
		}
	}
	for i := range lines {
		if seen[fmt.Sprintf("line %d", i)] == 0 {
			t.Errorf("line %d lost", i)
		}
	}
	// The lines read and not answered come again: duplicates, each one
	// replayed (the replay may hold more: sent, and not read before the
	// reset).
	if dup < stalled || dup > sum[2] {
		t.Errorf("%d duplicates; want from %d (read, not answered) to %d (replayed)", dup, stalled, sum[2])
	}
	// The reset's reconnect, and no other: the BatchWriter's Close ends
	// the RELP session without making the Manager redial.
	if !regexp.MustCompile(`, 1 reconnect, `).MatchString(out) {
		t.Errorf("the summary does not count the reconnect")
	}
}

func TestSendRELPUnacknowledgedAtTheEnd(t *testing.T) {
	s := relptest.NewServer(t)
	s.Stall()
	r := runBinary(t, time.Minute, strings.NewReader(joinLines(numbered("line", 10))), "send", "-close-timeout", "300ms", "relp://"+s.Addr())
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitFailed {
		t.Fatalf("exit status %d, want %d", r.code, exitFailed)
	}
	if want := "connpipe: 10 of 10 lines not acknowledged: 10 not acknowledged when the 300ms close timeout ran out"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr does not say %q", want)
	}
}

func TestSendRELPUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "-window", "8", "tcp://127.0.0.1:1"}, `connpipe: -window applies only to relp:// addresses, not "tcp://127.0.0.1:1"`},
		{[]string{"send", "-window", "0", "relp://127.0.0.1:1"}, "connpipe: -window must be at least 1, not 0"},
		{[]string{"send", "relp://127.0.0.1:1", "tcp://127.0.0.1:2"}, "mixed schemes"},
		{[]string{"listen", "relp://127.0.0.1:0"}, "connpipe: listen does not speak RELP"},
	} {
		r := runBinary(t, time.Minute, strings.NewReader(""), c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("connpipe %s: exit status %d, stderr %q; want %d and %q", strings.Join(c.args, " "), r.code, r.stderr, exitUsage, c.want)
		}
	}
}
