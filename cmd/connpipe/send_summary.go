package main

// The last phase of a send: the summary on stderr, why lines were not
// delivered, and the exit status.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/seed44b27a20/conn"
)

// A lineCount is what became of the lines of a run.
type lineCount struct {
	read      uint64 // lines read from the input
	recovered uint64 // with -spool: lines an earlier send left in the spool, read back from it
	delivered uint64 // written; over relp://, acknowledged
	kept      uint64 // with -spool: lines not delivered, kept in the spool for the next send
	dropped   uint64 // lines neither delivered nor kept: the rest
	// Why some were dropped.
	full, tooLong, cut uint64
}

// lineCounts counts the lines of the run from the final counters.
func (r *sendRun) lineCounts(st conn.BatchStats) lineCount {
	s := r.s
	t := lineCount{read: s.lines.Load(), delivered: st.Written,
		full: s.full.Load(), tooLong: s.tooLong.Load() + s.tooLarge.Load(), cut: s.cut.Load()}
	if s.acks {
		t.delivered = st.Acked // delivered means acknowledged
	}
	// With -spool, lines recovered from it are delivered too, and those
	// not delivered are kept in it, not dropped: the lines Close left
	// there, and those it had not read back from disk (still queued).
	if r.spool != nil {
		t.recovered, t.kept = st.Spool.Recovered, st.Left+uint64(max(st.Queue.Messages, 0))
	}
	all := t.read + t.recovered
	t.dropped = all - min(t.delivered+t.kept, all)
	return t
}

// summarize prints the summary of a run that ended as out says, and
// returns its exit status: 0 when every line was delivered (written; over
// relp://, acknowledged; with -spool, those recovered from the spool too,
// none left in it and no record damaged), 1 when not, on an error that
// retrying cannot fix or one reading the input, and the status of an
// interrupt when one came.
func (r *sendRun) summarize(out flushOutcome, readErr error) int {
	e, con := r.e, r.con
	t := r.lineCounts(out.st)
	r.printCounts(out, t)
	code := exitOK
	if r.spool != nil && !r.spool.summarize(con, r.cfg, out.st.Spool, t.kept) {
		code = exitFailed // a damaged record: lines lost
	}
	if out.interrupted {
		what := "stopped reading the input"
		switch {
		case out.end == interrupted:
		case out.cutShort:
			what = "stopped the final flush"
		default:
			what = "as the run was ending"
		}
		con.Printf("%s: interrupted (%s): %s", programName, e.signalName(), what)
	}
	if readErr != nil && !errors.Is(readErr, errStopped) {
		con.Printf("%s: reading the input: %v", programName, readErr)
		code = exitFailed
	}
	if out.end == gaveUp {
		code = exitFailed
	}
	if !r.explainUndelivered(out, t) {
		code = exitFailed
	}
	if out.interrupted {
		return e.interrupted()
	}
	return code
}

// printCounts prints the summary's first line: the lines read, delivered
// and dropped, with -spool those recovered from it and left in it, the
// reconnects and switches, and the time the run took.
func (r *sendRun) printCounts(out flushOutcome, t lineCount) {
	s, st := r.s, out.st
	switched := ""
	if out.ms.Switches > 0 {
		switched = ", " + switches(out.ms.Switches)
	}
	fromSpool, inSpool := "", ""
	if r.spool != nil {
		fromSpool = count(t.recovered) + " recovered from the spool, "
		inSpool = count(t.kept) + " left in the spool, "
	}
	if s.acks {
		r.con.Printf("%s: %s read (%s), %s%s acknowledged, %s replayed, %s refused, %s dropped, %s%s%s, %s",
			programName, plural(t.read, "line"), bytesize(s.bytes.Load()), fromSpool, count(t.delivered), count(st.Replayed), count(st.Refused),
			count(t.dropped-st.Refused), inSpool, plural(s.reconnects.Load(), "reconnect"), switched, elapsed(time.Since(r.start)))
	} else {
		r.con.Printf("%s: %s read (%s), %s%s written, %s dropped, %s%s%s, %s",
			programName, plural(t.read, "line"), bytesize(s.bytes.Load()), fromSpool, count(t.delivered), count(t.dropped),
			inSpool, plural(s.reconnects.Load(), "reconnect"), switched, elapsed(time.Since(r.start)))
	}
}

// explainUndelivered says, if some lines were not delivered, how many and
// why, and reports whether all were.
func (r *sendRun) explainUndelivered(out flushOutcome, t lineCount) bool {
	s, cfg, st, ms := r.s, r.cfg, out.st, out.ms
	// The time that ran out on what is still queued, or what cut it short.
	when := fmt.Sprintf("when the %v close timeout ran out", cfg.closeTimeout)
	if out.stoppedBy != "" {
		when = "when " + out.stoppedBy
	}
	if t.dropped+t.kept == 0 {
		if r.spool != nil && st.Spool.Bytes > 0 {
			// Lines recovered from the spool and not yet read back from
			// disk when the flush ended: not counted, not delivered.
			r.con.Printf("%s: lines recovered from the spool not delivered: %s of them still on disk %s, kept in the spool for the next send",
				programName, bytesize(st.Spool.Bytes), when)
			return false
		}
		return true
	}
	var why []string
	if t.full > 0 {
		what := fmt.Sprintf("%s dropped because the %s was full", count(t.full), cfg.room("buffer"))
		if cfg.full == "wait" {
			what += fmt.Sprintf(" for %v (-wait)", cfg.wait)
		}
		why = append(why, what)
	}
	if t.tooLong > 0 {
		why = append(why, fmt.Sprintf("%s longer than %s", count(t.tooLong), bytesize(s.maxLine)))
	}
	if t.cut > 0 {
		why = append(why, fmt.Sprintf("%s read but not yet queued when the input was stopped", count(t.cut)))
	}
	refused := uint64(0)
	if s.acks && st.Refused > 0 {
		refused = st.Refused
		what := fmt.Sprintf("%s refused by the server", count(refused))
		if err := s.refusal.Load(); err != nil {
			what += fmt.Sprintf(" (the last: %v)", *err)
		}
		why = append(why, what)
	}
	still := "still queued"
	if s.acks {
		still = "not acknowledged"
	}
	left := t.dropped - t.full - t.tooLong - t.cut - refused
	if left > 0 {
		why = append(why, fmt.Sprintf("%s %s %s", count(left), still, when))
	}
	if t.kept > 0 {
		why = append(why, fmt.Sprintf("%s %s %s, kept in the spool for the next send", count(t.kept), still, when))
	}
	undelivered := "not delivered"
	if s.acks {
		undelivered = "not acknowledged"
	}
	total := plural(t.read, "line")
	if t.recovered > 0 {
		total = fmt.Sprintf("%s (%s read, %s recovered from the spool)", plural(t.read+t.recovered, "line"), count(t.read), count(t.recovered))
	}
	msg := fmt.Sprintf("%s: %s of %s %s: %s", programName, count(t.dropped+t.kept), total, undelivered, strings.Join(why, ", "))
	// With acks, the BatchWriter's own close of the session is the last
	// error after a refusal: only lines left unacknowledged have a
	// connection's error to explain them.
	if ms.LastError != nil && out.end != gaveUp && (out.closeErr != nil || ms.State != conn.Connected) && (!s.acks || left+t.kept > 0) {
		msg += fmt.Sprintf("; last error: %v", ms.LastError)
	}
	r.con.Printf("%s", msg)
	return false
}

// switches says how many switches: "1 switch", "2 switches".
func switches(n uint64) string {
	if n == 1 {
		return "1 switch"
	}
	return count(n) + " switches"
}
