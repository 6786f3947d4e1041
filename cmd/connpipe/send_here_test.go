package main

import (
	"context"
	"io"
	"testing"
	"time"
)

// A liveSend is connpipe send running in this process: the test writes
// its stdin and watches its stderr as it is written.
type liveSend struct {
	in       *io.PipeWriter
	stderr   *watched
	code     int
	finished chan struct{} // closed when run has returned; code is set
}

// startSendHere runs connpipe send with args in this process, in e (its
// stdin and stderr are replaced by pipes), until its input ends or ctx
// says it was interrupted. The test's end closes the input and waits for
// the run.
func startSendHere(t *testing.T, ctx context.Context, e *env, args ...string) *liveSend {
	t.Helper()
	inR, inW := io.Pipe()
	errR, errW := io.Pipe()
	e.stdin, e.stderr = inR, errW
	if e.stdout == nil {
		e.stdout = io.Discard
	}
	r := &liveSend{in: inW, stderr: watch(errR), finished: make(chan struct{})}
	go func() {
		defer close(r.finished)
		r.code = run(ctx, append([]string{"send"}, args...), e)
		errW.Close()
	}()
	t.Cleanup(func() {
		inW.Close() // a pump still reading ends
		select {
		case <-r.finished:
		case <-time.After(runTimeout):
			t.Errorf("connpipe send did not end within %v", runTimeout)
		}
		inR.Close()
	})
	return r
}

// write writes s to the run's stdin: it returns once the run has read it.
func (r *liveSend) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(r.in, s); err != nil {
		t.Fatalf("writing to connpipe send: %v", err)
	}
}

// end closes the run's stdin and returns its exit status and all of its
// stderr, once it has returned.
func (r *liveSend) end(t *testing.T) (code int, stderr string) {
	t.Helper()
	r.in.Close()
	select {
	case <-r.finished:
	case <-time.After(runTimeout):
		t.Fatalf("connpipe send did not end within %v; stderr:\n%s", runTimeout, r.stderr.String())
	}
	return r.code, r.stderr.wait(t, waitTimeout)
}
