package main

// send's status line, redrawn on a terminal while it runs, and its -v
// lines: the connection, the counters, and with -spool the spool.

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/seed44b27a20/conn"
)

// status draws the status line 4 times a second, on a terminal, and prints
// state changes for -v, until stop is closed. It notices when reading has
// waited for room for a while: a Write under way and no line counted for a
// whole interval.
func (s *sender) status(con *console, m *conn.Manager, eps targets, cfg sendConfig, flush *atomic.Pointer[flushState], stop <-chan struct{}) {
	var (
		t         = time.NewTicker(statusInterval)
		meter     meter
		lastLines = s.lines.Load()
		waiting   int       // intervals in a row that reading waited for room
		since     time.Time // when it began to wait, about
		dnsSaid   bool      // the hint about names that do not resolve was given
	)
	defer t.Stop()
	say := func(ev conn.Event) {
		if ev.State == conn.Closed {
			return // the end of the run, not news
		}
		line := describeEvent(ev, eps)
		if notFound(ev.Err) && !dnsSaid {
			dnsSaid = true
			line += "; the name does not resolve: connpipe keeps trying, in case it is registered later"
		}
		con.Printf("%s: %s", programName, line)
	}
	for {
		select {
		case <-stop:
			// A run shorter than a scheduling delay ends with its events
			// (its one "connected to") still queued: say them first.
			for {
				select {
				case ev := <-s.events:
					say(ev)
				default:
					return
				}
			}
		case ev := <-s.events:
			say(ev)
		case now := <-t.C:
			lines := s.lines.Load()
			switch {
			case flush.Load() != nil:
				waiting = 0 // reading has stopped
			case s.inWrite.Load() && lines == lastLines:
				if waiting == 0 {
					since = now.Add(-statusInterval)
				}
				waiting++
			default:
				if waiting >= 2 && cfg.verbose {
					con.Printf("%s: reading resumed after waiting %s for room", programName, elapsed(now.Sub(since)))
				}
				waiting = 0
			}
			lastLines = lines
			if waiting == 2 && cfg.verbose {
				con.Printf("%s: the %s is full: reading waits for room; nothing is dropped", programName, cfg.room("queue"))
			}
			if !con.tty {
				continue
			}
			st := s.w.Stats()
			done, doneBytes := st.Written, st.WrittenBytes
			if s.acks {
				done, doneBytes = st.Acked, st.AckedBytes
			}
			lps, bps := meter.rate(now, done, doneBytes)
			ms := m.Stats()
			v := statusView{
				now:        now,
				ep:         eps[0],
				eps:        eps,
				endpoint:   ms.Endpoint,
				switches:   ms.Switches,
				state:      ms.State,
				lastErr:    ms.LastError,
				event:      s.last.Load(),
				flush:      flush.Load(),
				written:    done,
				bytes:      doneBytes,
				acks:       s.acks,
				replayed:   st.Replayed,
				refused:    st.Refused,
				lps:        lps,
				bps:        bps,
				reconnects: s.reconnects.Load(),
				dropped:    st.Dropped + s.tooLong.Load(),
				queued:     st.Queue.Messages,
				waiting:    waiting > 0,
			}
			if cfg.spool != "" {
				v.spool = &st.Spool
			}
			con.Status(v.String())
		}
	}
}

// A statusView is what the status line shows.
type statusView struct {
	now        time.Time
	ep         endpoint // the ADDRESS, or the first of several
	eps        targets  // several ADDRESSes; with one, ep alone counts
	endpoint   string   // with several, the one in use (Stats.Endpoint)
	switches   uint64   // connections replaced by a switch (Stats.Switches)
	state      conn.State
	lastErr    error      // the Manager's last error
	event      *seenEvent // the latest state change; nil if none yet
	flush      *flushState
	written    uint64 // acknowledged, with acks
	bytes      uint64
	acks       bool // relp://: written counts acknowledged lines
	replayed   uint64
	refused    uint64
	lps, bps   float64
	reconnects uint64
	dropped    uint64
	queued     int
	waiting    bool             // reading waits for room
	spool      *conn.SpoolStats // with -spool; nil without
}

// String returns the status line: the last phase, if under way; the
// connection, with the error and the time to the next dial while there is
// none; whether reading waits; then the counters.
func (v statusView) String() string {
	var parts []string
	if f := v.flush; f != nil {
		left := countdown(f.deadline.Sub(v.now))
		switch f.end {
		case interrupted:
			parts = append(parts, "interrupted", fmt.Sprintf("flushing %s queued, giving up in %s", plural(v.queued, "line"), left), "Ctrl-C again to stop now")
		case endOfInput:
			parts = append(parts, "end of input", fmt.Sprintf("flushing %s queued, giving up in %s", plural(v.queued, "line"), left), "Ctrl-C to stop now")
		}
	}
	switch v.state {
	case conn.Connecting:
		if v.eps.several() {
			parts = append(parts, "connecting to "+v.eps.String())
		} else {
			parts = append(parts, "connecting to "+v.ep.String())
		}
	case conn.Connected:
		if v.eps.several() && v.endpoint != "" {
			parts = append(parts, "connected to "+v.eps.name(v.endpoint))
		} else {
			parts = append(parts, "connected")
		}
	case conn.Disconnected:
		err := v.lastErr
		ev := v.event
		if ev != nil && ev.State != conn.Disconnected {
			ev = nil // the hook has not seen this change yet
		}
		if ev != nil {
			err = ev.Err
		}
		what := "disconnected"
		if ev != nil && ev.Endpoint != "" && v.eps.several() {
			what += " from " + v.eps.name(ev.Endpoint)
		}
		if err != nil {
			what += ": " + shortError(err)
		}
		parts = append(parts, what)
		if ev != nil {
			next := "dialing"
			if wait := ev.next().Sub(v.now); wait > 0 {
				next = "next dial in " + countdown(wait)
			}
			if ev.Attempt > 0 {
				next += fmt.Sprintf(" (attempt %d)", ev.Attempt+1)
			}
			parts = append(parts, next)
		}
	default:
		parts = append(parts, v.state.String())
	}
	if v.waiting {
		if v.spool != nil {
			parts = append(parts, "spool full: reading waits")
		} else {
			parts = append(parts, "queue full: reading waits")
		}
	}
	done := "lines"
	if v.acks {
		done = "acked"
	}
	parts = append(parts,
		fmt.Sprintf("%s %s %s", count(v.written), done, bytesize(v.bytes)),
		fmt.Sprintf("%s/s %s/s", rateString(v.lps), bytesize(v.bps)),
		plural(v.reconnects, "reconnect"))
	if v.replayed > 0 {
		parts = append(parts, count(v.replayed)+" replayed")
	}
	if v.refused > 0 {
		parts = append(parts, count(v.refused)+" refused")
	}
	if v.switches > 0 {
		parts = append(parts, switches(v.switches))
	}
	parts = append(parts, count(v.dropped)+" dropped")
	if v.queued > 0 && v.flush == nil {
		parts = append(parts, count(v.queued)+" queued")
	}
	if v.spool != nil {
		parts = append(parts, spoolStatus(*v.spool))
	}
	return strings.Join(parts, " · ")
}

// countdown formats a time left: "2.4s" under 10 s, else whole seconds
// rounded up ("12s", "1m5s"); never negative.
func countdown(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", math.Ceil(d.Seconds()*10)/10)
	}
	return (d + time.Second - 1).Truncate(time.Second).String()
}

// shortError is err without the "dial tcp 10.0.0.1:5000: " that every
// dial error starts with: the status line has little room. A failed round
// over several endpoints is each endpoint with its short error.
func shortError(err error) string {
	if ee, ok := err.(*conn.EndpointsError); ok {
		parts := make([]string, 0, len(ee.Errs))
		for i, e := range ee.Errs {
			if e != nil && i < len(ee.Endpoints) {
				parts = append(parts, ee.Endpoints[i]+": "+shortError(e))
			}
		}
		return strings.Join(parts, "; ")
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// notFound reports whether err says that a name does not resolve.
func notFound(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns) && dns.IsNotFound
}

// describeEvent says what a state change means, for -v. With several
// ADDRESSes it names the one connected to, switched to (and why) or lost;
// a failed round over them all names each in its error.
func describeEvent(ev conn.Event, eps targets) string {
	switch ev.State {
	case conn.Connected:
		if ev.Switch != conn.NoSwitch {
			return fmt.Sprintf("switched to %s (%s)", eps.name(ev.Endpoint), ev.Switch)
		}
		return "connected to " + eps.name(ev.Endpoint)
	case conn.Disconnected:
		retry := "redialing at once"
		if ev.Wait > 0 {
			retry = "next dial in " + elapsed(ev.Wait)
		}
		if ev.Attempt > 0 {
			retry += fmt.Sprintf(" (attempt %d)", ev.Attempt+1)
		}
		if eps.several() && ev.Endpoint != "" {
			return fmt.Sprintf("disconnected from %s: %v; %s", eps.name(ev.Endpoint), ev.Err, retry)
		}
		return fmt.Sprintf("disconnected: %v; %s", ev.Err, retry)
	}
	return ev.State.String()
}
