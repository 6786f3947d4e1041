package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/seed44b27a20/conn/internal/testnet"
)

// interruptedAtEndOfInput returns a context and an env in which the
// interrupt arrives with the end of the input: the run finds its input
// ended, and the signal already received when it settles (as Ctrl-C in a
// pipeline ends the producer too, and its end of input may come first).
func interruptedAtEndOfInput(input string) (context.Context, *env, *strings.Builder) {
	ctx, cancel := context.WithCancel(context.Background())
	stderr := new(strings.Builder)
	return ctx, &env{stdin: strings.NewReader(input), stdout: new(strings.Builder), stderr: stderr, settle: cancel}, stderr
}

// TestSendInterruptWithTheEndOfInput: an interrupt that comes with the end
// of the input counts as the user stopping the reading (what the user
// did), not as an interrupt of the final flush; without a terminal, send
// says it flushes what is queued only when there is something queued.
func TestSendInterruptWithTheEndOfInput(t *testing.T) {
	t.Parallel()
	t.Run("nothing queued", func(t *testing.T) {
		t.Parallel()
		sink := testnet.NewSink(t, "tcp")
		ctx, e, stderr := interruptedAtEndOfInput("")
		code := run(ctx, []string{"send", "tcp://" + sink.Addr()}, e)
		if code != exitStatusFor(os.Interrupt) {
			t.Errorf("exit status %d, want %d", code, exitStatusFor(os.Interrupt))
		}
		if !strings.HasSuffix(stderr.String(), "\nconnpipe: interrupted (SIGINT): stopped reading the input\n") {
			t.Errorf("stderr does not end with the interrupt of the reading:\n%s", stderr)
		}
		if strings.Contains(stderr.String(), "queued") {
			t.Errorf("nothing was queued, and stderr speaks of flushing:\n%s", stderr)
		}
	})
	t.Run("one line queued", func(t *testing.T) {
		t.Parallel()
		ctx, e, stderr := interruptedAtEndOfInput("queued\n")
		code := run(ctx, []string{"send", "-close-timeout", "50ms", "-backoff-base", "1m", "-backoff-max", "1m", "tcp://" + freePort(t)}, e)
		if code != exitStatusFor(os.Interrupt) {
			t.Errorf("exit status %d, want %d", code, exitStatusFor(os.Interrupt))
		}
		for _, want := range []string{
			"connpipe: interrupted (SIGINT): stopped reading; sending the 1 line queued for up to 50ms (interrupt again to stop at once)\n",
			"connpipe: interrupted (SIGINT): stopped reading the input\n",
			"connpipe: 1 of 1 line not delivered: 1 still queued when the 50ms close timeout ran out",
		} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})
}
