package main

import (
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// A watched collects what a process writes to a pipe or a terminal, and
// lets a test wait for a pattern to appear in it.
type watched struct {
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{} // closed and replaced at each change
	done    chan struct{} // closed when the reader ends
}

// watch reads r until it ends, in a goroutine of its own.
func watch(r io.Reader) *watched {
	w := &watched{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		b := make([]byte, 32<<10)
		for {
			n, err := r.Read(b)
			w.mu.Lock()
			w.buf.Write(b[:n])
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return w
}

// String returns everything read so far.
func (w *watched) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until re matches what was read after offset from, and
// returns the match and the offset of its end. It fails the test after
// timeout, or if the stream ends without a match.
func (w *watched) waitFor(t *testing.T, from int, re *regexp.Regexp, timeout time.Duration) (match []string, end int) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		w.mu.Lock()
		text, changed := w.buf.String(), w.changed
		w.mu.Unlock()
		if loc := re.FindStringSubmatchIndex(text[from:]); loc != nil {
			m := make([]string, len(loc)/2)
			for i := range m {
				if loc[2*i] >= 0 {
					m[i] = text[from+loc[2*i] : from+loc[2*i+1]]
				}
			}
			return m, from + loc[1]
		}
		select {
		case <-changed:
		case <-w.done:
			if re.MatchString(w.String()[from:]) {
				continue
			}
			t.Fatalf("the output ended without matching %s; it was:\n%s", re, w.String())
		case <-timer.C:
			t.Fatalf("%s did not appear within %v; the output was:\n%s", re, timeout, w.String())
		}
	}
}

// until waits until cond holds for what was read, the stream ends, or
// timeout passes, and reports whether cond held.
func (w *watched) until(cond func(string) bool, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		w.mu.Lock()
		text, changed := w.buf.String(), w.changed
		w.mu.Unlock()
		if cond(text) {
			return true
		}
		select {
		case <-changed:
		case <-w.done:
			return cond(w.String())
		case <-timer.C:
			return cond(w.String())
		}
	}
}

// wait waits until the reader has ended, within timeout, and returns all
// that was read.
func (w *watched) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(timeout):
		t.Fatalf("the output did not end within %v:\n%s", timeout, w.String())
	}
	return w.String()
}
