package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn/relp/relptest"
)

// refuseMarked is a RELP server's answer that refuses the lines that say
// REFUSE.
func refuseMarked(msg []byte) (int, string) {
	if strings.Contains(string(msg), "REFUSE") {
		return 500, "refused by the test"
	}
	return 200, "OK"
}

// TestSendRELPRefusalAlone: when the only lines not acknowledged are the
// ones the server refused, the summary gives that reason alone: no line
// "not acknowledged" besides, and no connection's error, even when the
// connection is lost before the end.
func TestSendRELPRefusalAlone(t *testing.T) {
	t.Parallel()
	want := regexp.MustCompile(`\nconnpipe: 1 of 3 lines not acknowledged: 1 refused by the server \(the last: [^\n]*refused by the test[^\n;]*\)\n$`)
	t.Run("connected to the end", func(t *testing.T) {
		t.Parallel()
		s := relptest.NewServer(t, relptest.WithAnswer(refuseMarked))
		code, stderr := sendHere(t, "one\ntwo REFUSE\nthree\n", "relp://"+s.Addr())
		if code != exitFailed || !want.MatchString(stderr) {
			t.Errorf("exit status %d, stderr:\n%s", code, stderr)
		}
		if got := relpSummary(t, stderr); got != [5]int{3, 2, 0, 1, 0} {
			t.Errorf("summary counts %v, want 3 read, 2 acknowledged, 1 refused", got)
		}
	})
	t.Run("connection lost after the refusal", func(t *testing.T) {
		t.Parallel()
		s := relptest.NewServer(t, relptest.WithAnswer(refuseMarked))
		r := startSendHere(t, context.Background(), &env{}, "-v", "-backoff-base", "1m", "-backoff-max", "1m", "relp://"+s.Addr())
		r.write(t, "one\ntwo\nthree REFUSE\n")
		// The refusal is the answer to the last line: the others were
		// acknowledged before it.
		_, end := r.stderr.waitFor(t, 0, regexp.MustCompile(`the server refused a line`), waitTimeout)
		s.Close()
		r.stderr.waitFor(t, end, disconnectedRE, waitTimeout)
		code, stderr := r.end(t)
		if code != exitFailed || !regexp.MustCompile(`\nconnpipe: 1 of 3 lines not acknowledged: 1 refused by the server \(the last: [^\n]*refused by the test[^\n;]*\)\n$`).MatchString(stderr) {
			t.Errorf("exit status %d, stderr:\n%s", code, stderr)
		}
		if got := relpSummary(t, stderr); got != [5]int{3, 2, 0, 1, 0} {
			t.Errorf("summary counts %v, want 3 read, 2 acknowledged, 1 refused", got)
		}
	})
}
