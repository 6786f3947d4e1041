package main

// The second phase of a send: the input is read, line by line, into the
// BatchWriter, until it ends, the first interrupt, or an error that
// retrying cannot fix. A sender pumps the lines and counts them.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed44b27a20/conn"
)

// read pumps the input into the BatchWriter until it ends, an interrupt
// comes or send gives up, and says which; readErr is the input's error,
// if reading it failed. The pump may still be at work when read returns:
// the flush stops it (see sender.send).
func (r *sendRun) read(ctx context.Context) (end ending, readErr error) {
	e := r.e
	pumped := make(chan error, 1)
	go func() { pumped <- r.s.pump(r.job.input) }()
	select {
	case readErr = <-pumped:
		end = endOfInput
	case <-ctx.Done():
		end = interrupted
	case <-r.s.fatal:
		end = gaveUp
	}
	if end == endOfInput && (e.settled(ctx) || e.tty && !e.typing && doneWithin(ctx, pipelineGrace)) {
		// Ctrl-C in a pipeline ends the producer too: its end of input
		// and the signal race. The signal is what the user did. On a
		// terminal, with the input from a pipe, it is given a moment to
		// arrive: with the cores busy it was seen to come after the end
		// of input (RELIABILITY.md, "Flakiness under load").
		end = interrupted
	}
	return end, readErr
}

// A sender pumps lines into a BatchWriter and keeps count.
type sender struct {
	w       *conn.BatchWriter
	maxLine int  // longer lines are dropped: they can never be sent
	several bool // several ADDRESSes: only a failed round over all of them is fatal
	acks    bool // relp://: delivered means acknowledged
	verbose bool

	refusal atomic.Pointer[error] // the server's latest refusal of a line (relp://)

	stopping atomic.Bool // the input is no longer read: no new Writes
	inWrite  atomic.Bool // a Write is under way, which may wait for room
	mu       sync.Mutex  // serialises Writes with the end of the run
	stopped  bool        // no more counting: the summary is being made

	// Counted once Write has ruled on a line.
	lines, bytes atomic.Uint64 // lines read from the input, and their bytes
	full         atomic.Uint64 // dropped by Write: the buffer was full (-full drop, -wait)
	tooLarge     atomic.Uint64 // dropped by Write: larger than the buffer
	tooLong      atomic.Uint64 // dropped here, not offered to Write: longer than maxLine
	cut          atomic.Uint64 // read, and refused by Write as the input was stopped

	// Maintained by the state hook.
	connects   atomic.Uint64
	reconnects atomic.Uint64
	last       atomic.Pointer[seenEvent] // the latest state change
	events     chan conn.Event           // for -v; never blocks the hook
	fatal      chan struct{}             // closed at an error that retrying cannot fix
	fatalOnce  sync.Once
	fatalErr   error // set before fatal is closed
}

func newSender(maxLine int, verbose bool) *sender {
	s := &sender{maxLine: maxLine, fatal: make(chan struct{}), verbose: verbose}
	if verbose {
		s.events = make(chan conn.Event, 64)
	}
	return s
}

var errStopped = errors.New("stopped")

// send offers one line to the BatchWriter and counts it. It waits for room
// as configured (-full, -wait); the end of the run releases it.
func (s *sender) send(line []byte) error {
	if s.stopping.Load() {
		return errStopped // read after the input was stopped: not counted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	if len(line) > s.maxLine {
		s.tooLong.Add(1)
		s.count(len(line))
		return nil
	}
	s.inWrite.Store(true)
	_, err := s.w.Write(line)
	s.inWrite.Store(false)
	switch {
	case err == nil:
	case errors.Is(err, conn.ErrBufferFull):
		s.full.Add(1)
	case errors.Is(err, conn.ErrTooLarge):
		s.tooLarge.Add(1)
	default: // ErrClosed: the run is ending: the line waited for room, or came just then
		s.cut.Add(1)
		s.count(len(line))
		return errStopped
	}
	s.count(len(line))
	return nil
}

// skip counts a line of n bytes that was too long to be read whole.
func (s *sender) skip(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	s.tooLong.Add(1)
	s.count(n)
	return nil
}

func (s *sender) count(n int) {
	s.lines.Add(1)
	s.bytes.Add(uint64(n))
}

// pump reads lines from r until EOF and sends each one. A final line without
// a newline gets one. Lines of any length work: those longer than the input
// buffer are assembled, up to maxLine, in a buffer of their own; the rest of
// a longer one is skipped and it is counted as too long. Only lines longer
// than the input buffer are copied here; the BatchWriter copies each line
// into its queue.
func (s *sender) pump(r io.Reader) error {
	br := bufio.NewReaderSize(r, readBufferSize)
	var (
		long    []byte // the start of a line longer than br's buffer
		skipped = -1   // bytes of a line too long to keep; -1: none
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			switch {
			case skipped >= 0:
				skipped += len(chunk)
			case len(long)+len(chunk) >= s.maxLine: // its newline will not fit either
				skipped, long = len(long)+len(chunk), long[:0]
			default:
				long = append(long, chunk...)
			}
			continue
		}
		var serr error
		switch {
		case skipped >= 0:
			serr = s.skip(skipped + len(chunk))
			skipped = -1
		case len(chunk) > 0 || len(long) > 0:
			line := chunk
			if len(long) > 0 || err != nil {
				long = append(long, chunk...)
				line = long
			}
			if line[len(line)-1] != '\n' {
				line = append(line, '\n') // a final line without its newline
			}
			serr = s.send(line)
			if cap(long) > 4*readBufferSize {
				long = nil // do not keep a huge buffer for one long line
			} else {
				long = long[:0]
			}
		}
		if serr != nil {
			return serr
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// pipelineGrace is how long send, on a terminal, waits at the end of piped
// input for a Ctrl-C that may have ended the producer: an interactive
// pipeline's end is that much later, a script's (no terminal) is not.
const pipelineGrace = 100 * time.Millisecond

// doneWithin reports whether ctx is done, or becomes done within d.
func doneWithin(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true
	case <-t.C:
		return false
	}
}
