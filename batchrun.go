package conn

import (
	"errors"
	"runtime"
	"time"
)

// How the background writer waits for messages: it yields a few times (a
// Write may be copying), then looks on a timer for a while (so that Writes
// arriving in bursts never pay for waking it), then sleeps until a Write
// wakes it.
const (
	idleSpins = 16
	idlePoll  = 250 * time.Microsecond
	idleLooks = 40 // ~10 ms of polls before sleeping
)

// A cursor is the background writer's place in the queue.
type cursor struct {
	s   *segment
	i   int // the next message of s to write
	off int // where it begins in s.data
}

func (c *cursor) seq() uint64 { return c.s.seq + uint64(c.i) }

// skip moves c past k messages of b bytes.
func (c *cursor) skip(k, b int) { c.i, c.off = c.i+k, c.off+b }

// run is the background writer: it writes the queued messages in order, in
// writes of up to maxBatch bytes taken straight from the queue, each ending
// on a message boundary. A failed write leaves the messages it did not
// finish for the next connection.
func (w *BatchWriter) run(head *segment) {
	defer close(w.done)
	var (
		c           = cursor{s: head}
		outage      bool   // the last write failed: the connection was replaced
		singleUntil uint64 // below this sequence number, one message per write
		poll        = time.NewTimer(idlePoll)
	)
	for {
		limit := w.cfg.maxBatch
		if c.seq() < singleUntil {
			limit = 0
		}
		k, size := w.gather(&c, limit)
		if k == 0 {
			switch w.await(&c, poll) {
			case drained:
				return
			case stop:
				w.discard()
				return
			}
			continue
		}
		// Wait here, where Close can cut the wait short, not in the
		// Manager's Write; and after a wait, gather again, so that what
		// queued meanwhile goes out in full-size writes.
		if outage || w.m.live() == nil {
			if !w.m.awaitLive(w.abort) {
				w.discard()
				return
			}
			outage = false
			continue
		}
		// writing, then aborted; in Close, aborted, then writing: one of the
		// two sees the other, so a write never starts unseen after Close
		// gave up.
		w.writing.Store(true)
		if w.aborted.Load() {
			w.writing.Store(false)
			w.discard()
			return
		}
		n, err := w.m.writeNow(c.s.data[c.off : c.off+size])
		w.writing.Store(false)
		done, doneBytes := c.s.whole(c.i, k, size, n) // messages wholly written, and their bytes
		c.skip(done, doneBytes)
		w.advance(&c) // a segment to reuse before room is made for more
		w.wrote(done, doneBytes, err == nil, done < k && n > doneBytes)
		switch {
		case err == nil:
		case errors.Is(err, errMsgSize) && k-done > 1:
			singleUntil = c.seq() + uint64(k-done) // a datagram too large: find the message
		case errors.Is(err, errMsgSize):
			w.dropUnsendable(&c) // can never be sent
		default:
			outage = true
		}
	}
}

// gather returns how many messages from c are published and go in one
// write of at most limit bytes (the first goes whatever its size), and
// their bytes; 0 if none is.
func (w *BatchWriter) gather(c *cursor, limit int) (k, size int) {
	w.advance(c)
	count, _, _, ok := c.s.claimed()
	if !ok {
		return 0, 0
	}
	for i := c.i; i < count; i++ {
		l := c.s.published(i)
		if l < 0 || (k > 0 && size+l > limit) {
			break
		}
		k, size = k+1, size+l
	}
	if k > 0 {
		w.saw()
	}
	return k, size
}

// advance moves c past the segments it has finished, recycling their
// pages.
func (w *BatchWriter) advance(c *cursor) { w.move(c, true) }

// move moves c past the segments it has finished, recycling their pages
// if recycle: a cursor that others follow (acknowledged delivery's sent
// cursor) must leave them.
func (w *BatchWriter) move(c *cursor, recycle bool) {
	for {
		count, _, final, ok := c.s.claimed()
		next := c.s.next.Load()
		if !ok || !final || c.i < count || next == nil {
			return
		}
		if recycle {
			w.q.recycle(c.s)
			w.q.ensureSpare()
		}
		*c = cursor{s: next}
	}
}

type awaited int

const (
	more    awaited = iota // a message may be ready
	drained                // the queue is closed and everything written
	stop                   // Close's time ran out, or the Manager was closed
)

// await waits until the message at c may be ready.
func (w *BatchWriter) await(c *cursor, t *time.Timer) awaited {
	for spin := range idleSpins {
		if r, ok := w.ready(c); ok {
			return r
		}
		if spin < idleSpins-1 {
			runtime.Gosched()
		}
	}
	defer t.Stop()
	for look := 0; ; look++ {
		deep := look >= idleLooks
		if look == idleLooks {
			w.q.trimSpares()
		}
		if deep {
			w.sleeping.Store(true) // then look: a Write publishes, then looks
		}
		if r, ok := w.ready(c); ok {
			if deep {
				w.sleeping.Store(false)
			}
			return r
		}
		var tick <-chan time.Time
		if !deep {
			t.Reset(idlePoll)
			tick = t.C
		}
		select {
		case <-w.wake:
			if deep {
				w.sleeping.Store(false)
			}
			look = -1 // busy again: poll before sleeping
		case <-tick:
		case <-w.abort:
			return stop
		case <-w.m.closing:
			return stop
		}
	}
}

// ready reports whether there is news at c: a message published, a next
// segment, or the end of a closed queue.
func (w *BatchWriter) ready(c *cursor) (awaited, bool) {
	count, _, final, ok := c.s.claimed()
	switch {
	case !ok:
		return more, false
	case c.i < count:
		return more, c.s.published(c.i) >= 0
	case !final:
		return more, false
	case c.s.next.Load() != nil:
		return more, true
	case c.s.last.Load():
		return drained, true
	}
	return more, false
}

// saw notes that the writer has messages in hand, for QueueStats.OldestAge.
func (w *BatchWriter) saw() {
	w.mu.Lock()
	if w.seen.IsZero() {
		w.seen = time.Now()
	}
	w.mu.Unlock()
}

// wrote accounts for done messages of doneBytes bytes written whole by one
// write on the connection; ok says the write succeeded, partial that it
// failed inside the message after them.
func (w *BatchWriter) wrote(done, doneBytes int, ok, partial bool) {
	if done > 0 {
		w.q.release(done, doneBytes)
		w.makeRoom()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok {
		w.stats.Writes++
	}
	if partial {
		w.stats.Retried++
	}
	if done > 0 {
		w.stats.Written += uint64(done)
		w.stats.WrittenBytes += uint64(doneBytes)
		w.seen = time.Time{}
		w.signalLocked()
	}
}

// dropUnsendable drops the message at c, which the connection refused as
// too large, and moves c past it.
func (w *BatchWriter) dropUnsendable(c *cursor) {
	l := c.s.published(c.i)
	c.skip(1, l)
	w.q.release(1, l)
	w.makeRoom()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteDiscardsLocked(1)
	w.stats.Discarded++
	w.discardedBytes += uint64(l)
	w.seen = time.Time{}
	w.signalLocked()
	w.dropped(errMsgSize)
}

// discard closes the queue and drops everything in it: the Manager was
// closed, or Close's time ran out. Messages still being copied in are
// counted by their claims.
func (w *BatchWriter) discard() {
	w.q.close()
	if w.spool != nil {
		// The feeder stops as the writer does (Close's time, the Manager's
		// Close): wait until it has published what it fed.
		<-w.fedDone
	}
	accepted, acceptedBytes := w.q.accepted()
	w.mu.Lock()
	defer w.mu.Unlock()
	_, deliveredBytes := w.deliveredLocked()
	n := accepted - w.settledLocked()
	nb := acceptedBytes - deliveredBytes - w.discardedBytes - w.leftB
	var left, leftB uint64 // fed from the spool: they stay there
	if s := w.spool; s != nil {
		settled := w.settledLocked()
		w.spoolCap = min(w.spoolCap, settled)
		left, leftB = s.unsettled(settled, acceptedBytes-nb)
		s.mu.Lock()
		s.pendingRecB += int64(leftB) + int64(left)*recHeaderLen // on disk, not delivered
		s.mu.Unlock()
	}
	w.noteDiscardsLocked(n - left)
	w.unflushed += n - left
	w.stats.Discarded += n - left
	w.discardedBytes += nb - leftB
	w.left += left
	w.leftB += leftB
	w.unacked = 0
	w.seen = time.Time{}
	w.makeRoom() // Writes waiting for room give up
	w.signalLocked()
	if n > left {
		w.dropped(ErrUnflushed)
	}
}

// signalLocked wakes Flushes waiting for progress.
func (w *BatchWriter) signalLocked() {
	if w.progress != nil {
		close(w.progress)
		w.progress = nil
	}
}
