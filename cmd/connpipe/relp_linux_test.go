package main

// The tests of send relp:// that run on Linux only: the exit status and the
// summary's counts when nothing is acknowledged, on SIGTERM, and with -window 1.

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn/relp/relptest"
)

func TestSendRELPEveryLineRefused(t *testing.T) {
	const lines = 50
	s := relptest.NewServer(t, relptest.WithAnswer(func([]byte) (int, string) { return 503, "full" }))
	r := runBinary(t, time.Minute, strings.NewReader(joinLines(numbered("line", lines))), "send", "relp://"+s.Addr())
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitFailed {
		t.Errorf("exit status %d, want %d", r.code, exitFailed)
	}
	if got, want := relpSummary(t, r.stderr), [5]int{lines, 0, 0, lines, 0}; got != want {
		t.Errorf("summary counts %v, want %v", got, want)
	}
	if got := s.Stats().Messages; got != lines {
		t.Errorf("the server read %d lines, want %d (a refused line is not sent again)", got, lines)
	}
}

// A server that answers the open and then closes every connection, before
// answering anything: nothing is ever acknowledged.
func TestSendRELPServerClosesAfterOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	var mu sync.Mutex
	opens := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			var txnr, n int
			var cmd string
			if _, err := fmt.Fscanf(br, "%d %s %d", &txnr, &cmd, &n); err == nil && cmd == "open" {
				buf := make([]byte, n+2)
				br.Read(buf)
				fmt.Fprintf(c, "1 rsp %d %s\n", len(relptest.DefaultOpenAnswer), relptest.DefaultOpenAnswer)
				mu.Lock()
				opens++
				mu.Unlock()
			}
			c.Close()
		}
	}()
	const lines = 20
	r := runBinary(t, time.Minute, strings.NewReader(joinLines(numbered("line", lines))), "send", "-close-timeout", "1s",
		"-backoff-base", "10ms", "-backoff-max", "100ms", "relp://"+ln.Addr().String())
	t.Logf("stderr:\n%s", r.stderr)
	if r.code != exitFailed {
		t.Errorf("exit status %d, want %d", r.code, exitFailed)
	}
	sum := relpSummary(t, r.stderr)
	if sum[0] != lines || sum[1] != 0 || sum[3] != 0 || sum[4] != lines {
		t.Errorf("summary counts %v, want %d read, 0 acknowledged, 0 refused, %d dropped", sum, lines, lines)
	}
	if want := fmt.Sprintf("connpipe: %d of %d lines not acknowledged: %d not acknowledged when the 1s close timeout ran out", lines, lines, lines); !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q", want)
	}
	if r.took > 10*time.Second {
		t.Errorf("took %v with a 1s close timeout", r.took)
	}
}

// SIGTERM mid-stream while lines flow: the process ends by the signal and
// the summary adds up: every line read is acknowledged, refused or
// dropped, and every acknowledged line reached the server.
func TestSendRELPTerminatedMidStream(t *testing.T) {
	for _, stall := range []bool{false, true} {
		t.Run(fmt.Sprint("stall=", stall), func(t *testing.T) {
			s := relptest.NewServer(t)
			cmd := command(t, runTimeout, "send", "-close-timeout", "500ms", "-window", "7", "relp://"+s.Addr())
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			_, stderr := startWatched(t, cmd)
			feed(t, stdin, numbered("line", 300))
			if err := s.WaitMessages(100, waitTimeout); err != nil {
				t.Fatal(err)
			}
			if stall {
				s.Stall()
			}
			cmd.Process.Signal(syscall.SIGTERM)
			code, sig := waitEnd(t, cmd, waitTimeout)
			out := stderr.wait(t, waitTimeout)
			t.Logf("stderr:\n%s", out)
			wantSignaled(t, code, sig, syscall.SIGTERM, out)
			sum := relpSummary(t, out)
			if sum[0] != sum[1]+sum[3]+sum[4] {
				t.Errorf("summary %v: read != acknowledged + refused + dropped", sum)
			}
			got := map[string]bool{}
			for _, m := range s.Messages() {
				got[m] = true
			}
			if len(got) < sum[1] {
				t.Errorf("%d lines acknowledged, the server has %d distinct", sum[1], len(got))
			}
			if stall && sum[4] == 0 {
				t.Errorf("a stalled server, and nothing dropped: %v", sum)
			}
		})
	}
}

// -window 1: one line at a time, each waiting for its answer; a reset
// costs at most one duplicate.
func TestSendRELPWindowOne(t *testing.T) {
	const lines = 300
	s := relptest.NewServer(t)
	cmd := command(t, time.Minute, "send", "-window", "1", "-backoff-base", "10ms", "-backoff-max", "50ms", "relp://"+s.Addr())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr := startWatched(t, cmd)
	go func() {
		for i := range lines {
			fmt.Fprintf(stdin, "line %d\n", i)
			if i == 100 || i == 200 {
				s.WaitMessages(i, waitTimeout)
				s.Reset()
			}
		}
		stdin.Close()
	}()
	code := waitExit(t, cmd, time.Minute)
	out := stderr.wait(t, waitTimeout)
	t.Logf("stderr:\n%s", out)
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	sum := relpSummary(t, out)
	if sum[0] != lines || sum[1] != lines || sum[3] != 0 || sum[4] != 0 || sum[2] > 2 {
		t.Errorf("summary %v; want all %d acknowledged, at most 2 replayed", sum, lines)
	}
	seen := map[string]int{}
	for _, m := range s.Messages() {
		seen[m]++
	}
	for i := range lines {
		if seen[fmt.Sprintf("line %d", i)] == 0 {
			t.Errorf("line %d lost", i)
		}
	}
}
