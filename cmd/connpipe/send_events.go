package main

// What the Manager and the BatchWriter tell send as it runs: the state
// changes (the hook), the lines a RELP server refused, and the error that
// retrying cannot fix.

import (
	"errors"
	"time"

	"github.com/seed44b27a20/conn"
)

// A seenEvent is a state change and when the hook saw it, a moment after
// the Manager made it.
type seenEvent struct {
	conn.Event
	at time.Time
}

// next returns when the Manager dials again after ev, a Disconnected event.
func (ev *seenEvent) next() time.Time { return ev.at.Add(ev.Wait) }

// dropReport hears the BatchWriter's drops (relp://): a line the server
// refused is kept for the summary, and printed with -v.
func (s *sender) dropReport(con *console, r conn.DropReport) {
	if !errors.Is(r.Err, conn.ErrAckRefused) {
		return // the summary counts the other drops
	}
	err := r.Err
	s.refusal.Store(&err)
	if s.verbose {
		con.Printf("%s: the server refused a line, which is not sent again: %v", programName, err)
	}
}

func (s *sender) hook(ev conn.Event) {
	s.last.Store(&seenEvent{Event: ev, at: time.Now()})
	// A switch (a fail-back, a rotation) replaced a working connection:
	// the summary counts it apart, from the Manager's Stats.
	if ev.State == conn.Connected && ev.Switch == conn.NoSwitch && s.connects.Add(1) > 1 {
		s.reconnects.Add(1)
	}
	// With several ADDRESSes the Manager dials them all before it waits:
	// a round that failed is an *EndpointsError, permanent only if each
	// endpoint's failure is. The loss of one endpoint's connection
	// (ev.Endpoint set) leaves the others to try.
	if ev.State == conn.Disconnected && conn.IsPermanent(ev.Err) && (!s.several || ev.Endpoint == "") {
		s.fatalOnce.Do(func() {
			s.fatalErr = ev.Err
			close(s.fatal)
		})
		return // said once, by the command
	}
	if s.events != nil {
		select {
		case s.events <- ev:
		default: // the printer is behind: skip the line, never block
		}
	}
}

// sayFatal reports the error that retrying cannot fix, and that connpipe
// gives up. With several ADDRESSes that is an error for each.
func (s *sender) sayFatal(con *console, eps targets) {
	<-s.fatal
	con.ClearStatus()
	if eps.several() {
		con.Printf("%s: cannot connect to any of %s: %v", programName, eps, s.fatalErr)
	} else {
		con.Printf("%s: cannot connect to %s: %v", programName, eps[0], s.fatalErr)
	}
	msg := "retrying cannot fix this: giving up"
	if hint := tlsHint(s.fatalErr); hint != "" {
		msg += "; " + hint
	}
	con.Printf("%s: %s", programName, msg)
}
