package main

// The third phase of a send: reading has stopped, and what is queued gets
// -close-timeout to go out (with -spool, what the spool holds too,
// recovered lines included: the BatchWriter's Close feeds them to the
// connection first), unless there is no point (send gave up) or a further
// interrupt says to stop now. It ends the run: the counters are final.

import (
	"context"
	"time"

	"github.com/seed44b27a20/conn"
)

// A flushOutcome is how the flush, and so the run, ended.
type flushOutcome struct {
	end         ending // how reading ended; gaveUp if send gave up during the flush
	closeErr    error  // the BatchWriter's Close
	stoppedBy   string // why what was queued was dropped before the close timeout; "" if it was not
	cutShort    bool   // an interrupt cut the flush short
	interrupted bool   // an interrupt came, as reading or the flush ended or during it
	st          conn.BatchStats
	ms          conn.Stats
}

// finish stops the input, closes the BatchWriter within the close timeout
// (or sooner, at an interrupt or an error that retrying cannot fix), then
// the Manager and the status line, and returns the final counters.
func (r *sendRun) finish(ctx context.Context, end ending) flushOutcome {
	s, e, con, cfg, m := r.s, r.e, r.con, r.cfg, r.m
	s.stopping.Store(true)
	queued := s.w.Stats().Queue.Messages
	r.flush.Store(&flushState{end: end, deadline: time.Now().Add(cfg.closeTimeout)})
	if end == interrupted && queued > 0 && !con.tty {
		con.Printf("%s: interrupted (%s): stopped reading; sending the %s queued for up to %v (interrupt again to stop at once)",
			programName, e.signalName(), plural(queued, "line"), cfg.closeTimeout)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.w.Close() }() // waiting Writes give up at once
	stopNow := e.aborted()                // the second interrupt
	if end != interrupted {
		stopNow = ctx.Done() // the first, during the final flush
	}
	fatal := s.fatal
	out := flushOutcome{end: end, interrupted: end == interrupted}
	if end == gaveUp {
		s.sayFatal(con, r.job.eps)
		m.Close() // nothing more can be delivered: drop what is queued now
		out.stoppedBy = "connpipe gave up"
		fatal, stopNow = nil, nil
	}
	select {
	case out.closeErr = <-closed:
	case <-stopNow:
		out.interrupted = true
		select {
		case out.closeErr = <-closed: // done already: nothing was cut short
		default:
			out.cutShort = true
			out.stoppedBy = "stopped by a second interrupt"
			if end != interrupted {
				out.stoppedBy = "stopped by an interrupt"
			}
			m.Close()
			out.closeErr = <-closed
		}
	case <-fatal:
		s.sayFatal(con, r.job.eps)
		out.end = gaveUp
		out.stoppedBy = "connpipe gave up"
		m.Close()
		out.closeErr = <-closed
	}
	if e.settled(ctx) {
		out.interrupted = true // an interrupt came as the flush ended by itself
	}
	s.mu.Lock()
	s.stopped = true // the pump, if still reading, counts nothing more
	s.mu.Unlock()
	out.st = s.w.Stats()
	out.ms = m.Stats()
	m.Close()
	close(r.stopStatus)
	<-r.statusDone
	con.ClearStatus()
	return out
}
