package main

import (
	"context"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// sendHere runs connpipe send in this process with input on stdin, and
// returns its exit status and what it wrote on stderr.
func sendHere(t *testing.T, input string, args ...string) (code int, stderr string) {
	t.Helper()
	var out, errs strings.Builder
	e := &env{stdin: strings.NewReader(input), stdout: &out, stderr: &errs}
	code = run(context.Background(), append([]string{"send"}, args...), e)
	if out.Len() != 0 {
		t.Errorf("connpipe send %s wrote %q on stdout", strings.Join(args, " "), out.String())
	}
	return code, errs.String()
}

// TestSendDurationFlagLimits: each duration flag of send on both sides of
// the least value it takes. Zero means "no limit" for -dial-timeout and
// -write-timeout and "one dial at a time" for -stagger, so it is taken and
// only a negative value refused; -close-timeout and -backoff-base must be
// positive; -backoff-max may equal -backoff-base. A value taken sends the
// line; one refused is a usage error, one line, with nothing sent.
func TestSendDurationFlagLimits(t *testing.T) {
	t.Parallel()
	a, b := testnet.NewSink(t, "tcp"), testnet.NewSink(t, "tcp")
	one := []string{"tcp://" + a.Addr()}
	two := []string{"tcp://" + a.Addr(), "tcp://" + b.Addr()}
	for _, tt := range []struct {
		flags []string
		addrs []string
		want  string // in the usage error; "" if taken
	}{
		{[]string{"-stagger", "0s"}, two, ""},
		{[]string{"-stagger", "-1ns"}, two, "-stagger must not be negative (0 means one dial at a time), not -1ns"},
		{[]string{"-close-timeout", "1ns"}, one, ""},
		{[]string{"-close-timeout", "0s"}, one, "-close-timeout must be positive, not 0s"},
		{[]string{"-dial-timeout", "0s"}, one, ""},
		{[]string{"-dial-timeout", "-1ns"}, one, "-dial-timeout and -write-timeout must not be negative"},
		{[]string{"-write-timeout", "0s"}, one, ""},
		{[]string{"-write-timeout", "-1ns"}, one, "-dial-timeout and -write-timeout must not be negative"},
		{[]string{"-backoff-base", "1ns"}, one, ""},
		{[]string{"-backoff-base", "0s"}, one, "want 0 < -backoff-base (0s) <= -backoff-max"},
		{[]string{"-backoff-base", "2s", "-backoff-max", "2s"}, one, ""},
		{[]string{"-backoff-base", "2s", "-backoff-max", "1999ms"}, one, "want 0 < -backoff-base (2s) <= -backoff-max (1.999s)"},
	} {
		args := append(append([]string(nil), tt.flags...), tt.addrs...)
		name := strings.Join(args, " ")
		if tt.want != "" {
			code, stderr := sendHere(t, "must not be sent\n", args...)
			if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("connpipe send %s: status %d, stderr %q; want %d and one line with %q", name, code, stderr, exitUsage, tt.want)
			}
			continue
		}
		// A sink gets the line only once its connection is accepted:
		// -close-timeout 1ns must not be the only chance to deliver it.
		// Over the first ADDRESS, the line may also have gone to the
		// standby: count both.
		before := a.LineCount() + b.LineCount()
		code, stderr := sendHere(t, "taken\n", args...)
		if strings.Contains(name, "-close-timeout 1ns") {
			// So short a flush may end before the dial: the line is
			// read, and written or counted as dropped; the flag was taken.
			if code == exitUsage || !strings.Contains(stderr, "1 line read") {
				t.Errorf("connpipe send %s: status %d, stderr %q; want the flag taken and the line read", name, code, stderr)
			}
			continue
		}
		if code != exitOK || !strings.Contains(stderr, "1 line read") || !strings.Contains(stderr, "1 written, 0 dropped") {
			t.Errorf("connpipe send %s: status %d, stderr %q; want %d and the line written", name, code, stderr, exitOK)
		}
		if !a.WaitUntil(func() bool { return a.LineCount()+b.LineCount() > before }, waitTimeout) {
			t.Errorf("connpipe send %s: the line did not arrive", name)
		}
	}
}
