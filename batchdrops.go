package conn

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"
)

// DefaultDropReportInterval is how often, at most, a BatchWriter reports
// drops (WithDropReportInterval).
const DefaultDropReportInterval = 10 * time.Second

// A DropReport tells what a BatchWriter dropped since its previous report
// (see WithDropHook).
type DropReport struct {
	Rejected  uint64 // messages Write refused
	Discarded uint64 // messages accepted, then dropped unwritten
	Bytes     uint64 // the bytes of both
	Err       error  // why the latest of them was dropped: ErrBufferFull, ErrTooLarge, ErrTooLong, ErrClosed, ErrUnflushed, the connection's error for a datagram too large, or a *SpoolDamageError
	// Damaged counts the regions of the spool's files skipped as damaged
	// (see WithSpool), and DamagedBytes their bytes; Err is then the
	// latest region's *SpoolDamageError, naming its file and bytes.
	Damaged      uint64
	DamagedBytes uint64
	Period       time.Duration // since the previous report, or since the BatchWriter was made
}

// WithDropHook sets a function that hears about drops as they happen,
// since loggers (slog, go-kit's log) discard a Write's error: the first
// drop is reported at once, later ones at most once per report interval
// (WithDropReportInterval), summed. Each report is also logged at level
// warn through the Manager's logger ("batch writer dropped messages"),
// with or without a hook. The hook is called from a goroutine of its own,
// one call at a time; it may write into the same BatchWriter (a message
// it drops is in the next report) but must not call Close. The last call,
// with what Close itself dropped, comes from Close; none come after Close
// returns. A Write refused once that last report has begun (the hook's
// own, say) is counted in Stats, not reported. A hook that panics is
// logged and not called again. A report reads its counters one after
// another, without stopping Writes: a message dropped while it is made may
// have its count in one report and its bytes in the next; over all reports
// both add up exactly.
func WithDropHook(hook func(DropReport)) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		c.dropHook = hook
	})
}

// WithDropReportInterval sets the shortest time between two drop reports
// (DefaultDropReportInterval). A value below 1 keeps the default.
func WithDropReportInterval(d time.Duration) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if d > 0 {
			c.dropInterval = d
		}
	})
}

// dropReporter reports a BatchWriter's drops: at once after a quiet
// interval, then at most once per interval, from a timer's goroutine.
type dropReporter struct {
	due   atomic.Bool           // a report is scheduled
	cause atomic.Pointer[error] // why the latest message was dropped

	mu      sync.Mutex  // scheduling
	over    bool        // Close has taken over the last report
	timer   *time.Timer // the latest report scheduled
	last    time.Time   // when the previous report was made; before the first, an interval before w was
	running sync.WaitGroup

	deliver sync.Mutex // one report at a time; guards the fields below
	hookOff bool
	since   time.Time  // the start of the next report's Period
	sent    DropReport // totals reported so far (Period unused)
}

// dropped notes a message dropped for err and schedules a report unless
// one is due. It takes a lock only to schedule.
func (w *BatchWriter) dropped(err error) {
	r := &w.drops
	r.cause.Store(dropCause(err))
	if r.due.Load() || !r.due.CompareAndSwap(false, true) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return
	}
	r.running.Add(1)
	r.timer = time.AfterFunc(time.Until(r.last.Add(w.cfg.dropInterval)), func() {
		defer r.running.Done()
		w.reportDrops()
	})
}

// dropCause returns a pointer to err without allocating for the errors a
// BatchWriter drops with.
func dropCause(err error) *error {
	switch err {
	case ErrBufferFull:
		return &ErrBufferFull
	case ErrTooLarge:
		return &ErrTooLarge
	case ErrTooLong:
		return &ErrTooLong
	case ErrClosed:
		return &ErrClosed
	case errWriterClosed:
		return &errWriterClosed
	case ErrUnflushed:
		return &ErrUnflushed
	}
	e := err // only this case moves to the heap
	return &e
}

// reportDrops reports the drops since the previous report, if any.
func (w *BatchWriter) reportDrops() {
	r := &w.drops
	r.deliver.Lock()
	defer r.deliver.Unlock()
	r.due.Store(false) // drops from now on schedule the next report
	now := time.Now()
	r.mu.Lock()
	r.last = now
	r.mu.Unlock()

	rejected, rejectedBytes := w.rejected.Load(), w.rejectedBytes.Load()
	w.mu.Lock()
	discarded, discardedBytes := w.stats.Discarded, w.discardedBytes
	w.mu.Unlock()
	var damaged, damagedBytes uint64
	if s := w.spool; s != nil {
		s.mu.Lock()
		damaged, damagedBytes = s.damaged, s.damagedB
		s.mu.Unlock()
	}
	rep := DropReport{
		Rejected:     rejected - r.sent.Rejected,
		Discarded:    discarded - r.sent.Discarded,
		Bytes:        rejectedBytes + discardedBytes - r.sent.Bytes,
		Period:       now.Sub(r.since),
		Damaged:      damaged - r.sent.Damaged,
		DamagedBytes: damagedBytes - r.sent.DamagedBytes,
	}
	if rep.Rejected+rep.Discarded+rep.Damaged == 0 {
		return
	}
	r.since = now
	r.sent = DropReport{Rejected: rejected, Discarded: discarded, Bytes: rejectedBytes + discardedBytes, Damaged: damaged, DamagedBytes: damagedBytes}
	if c := r.cause.Load(); c != nil {
		rep.Err = *c
	}
	w.m.log(level.WarnValue(), "batch writer dropped messages",
		"network", w.m.network, "address", w.m.address,
		"dropped", rep.Rejected+rep.Discarded, "rejected", rep.Rejected, "discarded", rep.Discarded,
		"bytes", rep.Bytes, "damaged", rep.Damaged, "in", rep.Period.Round(time.Millisecond).String(), "err", rep.Err)
	w.callDropHook(rep)
}

// callDropHook passes rep to the hook. One that panics is disabled.
func (w *BatchWriter) callDropHook(rep DropReport) {
	r := &w.drops
	if w.cfg.dropHook == nil || r.hookOff {
		return
	}
	defer func() {
		if p := recovered("drop hook", recover()); p != nil {
			r.hookOff = true
			w.m.log(level.ErrorValue(), "drop hook panicked; it is called no more", "err", p, "stack", string(p.(*panicError).stack))
		}
	}()
	w.cfg.dropHook(rep)
}

// endDropReports stops scheduled reports, waits for one under way, and
// makes the last report. Close calls it once the background writer has
// ended.
func (w *BatchWriter) endDropReports() {
	r := &w.drops
	r.mu.Lock()
	r.over = true
	t := r.timer
	r.mu.Unlock()
	if t != nil && t.Stop() {
		r.running.Done()
	}
	r.running.Wait()
	w.reportDrops()
}
