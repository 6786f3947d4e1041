package conn

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"
)

// The background writer of a BatchWriter with acknowledged delivery
// (WithAcks). It keeps two cursors in the queue: acked, the oldest message
// not yet acknowledged, where room is given back and pages recycled; and
// sent, the next message to write. Between them is the window. A new
// connection gets a new session, and sent goes back to acked: the replay.
// Acknowledgements are read by a goroutine per session (ReadAck blocks),
// which leaves them in the BatchWriter's mailbox (acks) and nudges.

// errLinkLeft: the connection a session belongs to was lost or switched
// out before a write.
var errLinkLeft = errors.New("conn: connection left")

// An ackSession is an AckSession on one connection, and its reader.
type ackSession struct {
	l     *link
	s     AckSession
	done  chan struct{} // closed when the reader has returned
	err   error         // why the reader returned; set before done is closed
	acked atomic.Bool   // the peer acknowledged something: the connection proved itself
}

// An ackBox is where readers leave acknowledgements for the writer.
type ackBox struct {
	sent atomic.Uint64 // messages below this were written, or are being: no Ack goes beyond

	mu       sync.Mutex
	through  uint64    // the highest Through reported
	refusals []refusal // refused messages not yet counted, by sequence number
	last     time.Time // when through last grew
}

type refusal struct {
	seq uint64
	err error
}

// ackRun is the acknowledged writer's state, owned by its goroutine.
type ackRun struct {
	w        *BatchWriter
	acked    cursor // the oldest message not acknowledged
	sent     cursor // the next message to write
	sentHigh uint64 // messages below this were written at least once
	sess     *ackSession
	sessions []*ackSession // sessions whose reader may still run, sess included
	frame    []byte        // the batch being written
	msgs     [][]byte
	waitFrom time.Time // when the oldest unacknowledged message began waiting for an ack (or the last ack came)
	poll     *time.Timer
	watch    writeWatch
}

// runAcked is run for a BatchWriter with acks.
func (w *BatchWriter) runAcked(head *segment) {
	defer close(w.done)
	r := &ackRun{w: w, acked: cursor{s: head}, sent: cursor{s: head}, poll: time.NewTimer(time.Hour)}
	r.poll.Stop()
	r.watch.init(w)
	defer r.watch.stop()
	defer r.stopReaders()
	for {
		r.takeAcks()
		if r.finished() {
			r.closeSession()
			return
		}
		if w.aborted.Load() { // Close's time ran out: send wrote nothing
			w.discard()
			return
		}
		if r.sess != nil {
			ended, switched := r.sess.ended(), w.m.live() != r.sess.l // once: a switch may come between two looks
			if !ended && switched && r.sent.seq() > r.acked.seq() {
				// Switched out (a rotation, a fail-back) with
				// messages in flight: the old connection is closed for
				// writing, and its session goes on reading their answers.
				// Replaying them now would send again what the peer took.
				if !r.awaitSwitchedOut() {
					w.discard()
					return
				}
				continue
			}
			if switched && !ended {
				// Everything it carried is answered: its reader has nothing
				// left to read, nor the switch's linger to wait for.
				r.sess.l.conn.SetReadDeadline(time.Unix(1, 0))
			}
			if ended || switched {
				r.leave(nil) // what is still unacknowledged is replayed on the next session
			}
		}
		if r.sess == nil && r.idle() {
			// No session is needed before there is something to send: an
			// idle writer neither waits for a connection nor holds one.
			if !r.waitIdle() {
				w.discard()
				return
			}
			continue
		}
		if r.sess == nil {
			if !w.m.awaitLive(w.abort) {
				w.discard()
				return
			}
			r.open()
			continue
		}
		k, size := r.gather()
		if k == 0 {
			if !r.wait() {
				w.discard()
				return
			}
			continue
		}
		r.send(k, size)
	}
}

// idle reports whether nothing waits to be sent or acknowledged.
func (r *ackRun) idle() bool {
	if r.sent.seq() > r.acked.seq() {
		return false
	}
	a, ok := r.w.ready(&r.sent)
	return !ok || a == drained
}

// waitIdle waits, without a session, for a message to send. It returns
// false when Close's time ran out or the Manager was closed.
func (r *ackRun) waitIdle() bool {
	w := r.w
	w.sleeping.Store(true) // then look: a Write publishes, then looks
	defer w.sleeping.Store(false)
	if !r.idle() || r.finished() {
		return true
	}
	select {
	case <-w.wake:
		return true
	case <-w.abort:
	case <-w.m.closing:
	}
	return false
}

// finished reports whether the queue is closed and every message in it
// settled: acknowledged or refused.
func (r *ackRun) finished() bool {
	if !r.w.q.closed.Load() {
		return false
	}
	accepted, _ := r.w.q.accepted()
	return r.acked.seq() == accepted
}

// open starts a session on the live connection: the protocol's handshake,
// then the reader. The replay starts at the oldest unacknowledged message.
func (r *ackRun) open() {
	w := r.w
	l := w.m.live()
	if l == nil {
		return
	}
	s, err := r.handshake(l)
	if err != nil {
		w.m.log(level.WarnValue(), "acknowledged session not opened", "network", w.m.network, "address", l.endpoint, "err", err)
		w.m.retireUnproven(l, err)
		return
	}
	sess := &ackSession{l: l, s: s, done: make(chan struct{})}
	l.lingerFor.Store(int64(w.cfg.ackTimeout))
	l.reader.Store(&sess.done) // a switch lingers on l without reading: the session reads
	r.sess = sess
	r.sessions = slices.DeleteFunc(r.sessions, (*ackSession).ended)
	r.sessions = append(r.sessions, sess)
	r.sent = r.acked
	r.waitFrom = time.Now()
	w.readers.Add(1)
	go w.readAcks(sess)
}

// handshake runs the protocol's Open on l within the ack timeout; Close's
// abort and the Manager's Close cut it short.
func (r *ackRun) handshake(l *link) (s AckSession, err error) {
	w := r.w
	defer func() {
		if p := recovered("AckProtocol.Open", recover()); p != nil {
			s, err = nil, p
		}
	}()
	if err := l.conn.SetReadDeadline(time.Now().Add(w.cfg.ackTimeout)); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		select {
		case <-w.abort:
			l.conn.SetReadDeadline(time.Unix(1, 0))
		case <-w.m.closing: // the Manager closes the connection
		case <-stop:
		}
	}()
	defer watch.Wait()
	defer close(stop)
	rw := &linkRW{m: w.m, l: l}
	start := time.Now()
	s, err = w.cfg.acks.Open(rw)
	if err == nil && s == nil {
		err = errors.New("conn: AckProtocol.Open returned no session")
	}
	if err != nil {
		if isTimeout(err) && time.Since(start) >= w.cfg.ackTimeout {
			err = fmt.Errorf("%w: handshake: %v", ErrAckTimeout, err)
		}
		return nil, err
	}
	if err := l.conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return s, nil
}

// linkRW reads a connection and writes on it through the Manager (its
// write deadline and liveness check), for a protocol's handshake and
// reader.
type linkRW struct {
	m *Manager
	l *link
}

func (rw *linkRW) Read(p []byte) (int, error)  { return rw.l.conn.Read(p) }
func (rw *linkRW) Write(p []byte) (int, error) { return rw.m.writeLink(rw.l, p) }

// readAcks is a session's reader: it leaves acknowledgements in the box
// until ReadAck fails.
func (w *BatchWriter) readAcks(sess *ackSession) {
	defer w.readers.Done()
	defer w.nudge()
	defer close(sess.done)
	defer func() {
		if p := recovered("AckSession.ReadAck", recover()); p != nil {
			sess.err = p
		}
	}()
	for {
		a, err := sess.s.ReadAck()
		if err != nil {
			sess.err = err
			return
		}
		if sent := w.acks.sent.Load(); a.Through > sent {
			sess.err = fmt.Errorf("conn: the peer acknowledged messages up to %d; %d were sent", a.Through, sent)
			return
		}
		if !sess.acked.Load() {
			sess.acked.Store(true)
		}
		w.acks.post(a)
		w.nudge()
	}
}

// post records a. Through only grows, so refusals are recorded in order,
// each beyond every acknowledgement before it.
func (b *ackBox) post(a Ack) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.Through <= b.through {
		return
	}
	b.through = a.Through
	b.last = time.Now()
	if a.Err != nil {
		b.refusals = append(b.refusals, refusal{a.Through - 1, a.Err})
	}
}

func (s *ackSession) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// leave ends the current session: its connection failed (err), was lost,
// or was switched out. A failed connection is retired, and the Manager
// redials.
func (r *ackRun) leave(err error) {
	sess := r.sess
	r.sess = nil
	if err == nil && sess.ended() {
		err = sess.err
		if err == io.EOF {
			err = errPeerClosed
		}
	}
	switch {
	case err == nil || errors.Is(err, errLinkLeft):
	case sess.acked.Load():
		r.w.m.retire(sess.l, err)
	default:
		r.w.m.retireUnproven(sess.l, err)
	}
}

// takeAcks moves acked past what the readers reported, gives the room
// back, and counts, in order: a refused message is a drop that the
// Flushes waiting for it report.
func (r *ackRun) takeAcks() {
	w := r.w
	w.acks.mu.Lock()
	through := min(w.acks.through, r.sentHigh)
	last := w.acks.last
	if through <= r.acked.seq() {
		// Refusals beyond what was written (a write that failed after
		// the peer took part of it) stay for a later turn.
		w.acks.mu.Unlock()
		return
	}
	refusals := w.acks.refusals
	w.acks.refusals = nil
	w.acks.mu.Unlock()
	var n, bytes, released, releasedBytes int
	var refusedErr error
	w.mu.Lock()
	account := func() {
		w.stats.Acked += uint64(n)
		w.stats.AckedBytes += uint64(bytes)
		released, releasedBytes = released+n, releasedBytes+bytes
		n, bytes = 0, 0
	}
	for r.acked.seq() < through {
		w.advance(&r.acked)
		seq := r.acked.seq()
		l := r.acked.s.published(r.acked.i)
		r.acked.skip(1, l)
		if len(refusals) == 0 || refusals[0].seq != seq {
			n, bytes = n+1, bytes+l
			continue
		}
		account() // those before it first: Flush counts in order
		refusedErr = refusals[0].err
		refusals = refusals[1:]
		w.noteDiscardsLocked(1)
		w.stats.Refused++
		w.stats.Discarded++
		w.discardedBytes += uint64(l)
		released, releasedBytes = released+1, releasedBytes+l
	}
	account()
	if len(refusals) > 0 { // beyond what was written: for a later turn
		w.acks.mu.Lock()
		w.acks.refusals = append(refusals, w.acks.refusals...)
		w.acks.mu.Unlock()
	}
	w.advance(&r.acked)
	if r.sent.seq() < r.acked.seq() {
		r.sent = r.acked // acknowledged on a session left before its replay
	}
	// The ack timeout counts from when the acknowledgement came, not from
	// now: a long write may have kept the writer from taking it.
	r.waitFrom = maxTime(r.waitFrom, last)
	w.unacked = int(r.sentHigh - r.acked.seq())
	w.seen = time.Time{} // the oldest message is a newer one now: the next gather sees it
	if w.unacked > 0 {
		w.seen = time.Now() // it was sent, at the latest, now
	}
	w.signalLocked()
	w.mu.Unlock()
	w.q.release(released, releasedBytes)
	w.makeRoom()
	if refusedErr != nil {
		w.dropped(refusedErr)
	}
}

// windowOpen reports whether another message may be sent now, and how
// many bytes of the window are left.
func (r *ackRun) windowOpen() (bool, int) {
	w := r.w
	inflight := int(r.sent.seq() - r.acked.seq())
	inflightBytes := int(r.sent.s.bytes + uint64(r.sent.off) - r.acked.s.bytes - uint64(r.acked.off))
	if inflight >= w.cfg.window || (inflight > 0 && inflightBytes >= w.cfg.windowBytes) {
		return false, 0
	}
	return true, max(w.cfg.windowBytes-inflightBytes, 0)
}

// gather returns how many messages from sent go in the next batch, within
// the window and the batch size, and their bytes.
func (r *ackRun) gather() (k, size int) {
	k, size = r.batch()
	if k > 0 {
		r.w.saw()
	}
	return k, size
}

// batch is gather without the bookkeeping: what the next batch would
// hold. 0 when the next message does not fit in what is left of the
// window: the writer then waits for acknowledgements.
func (r *ackRun) batch() (k, size int) {
	w := r.w
	open, room := r.windowOpen()
	if !open {
		return 0, 0
	}
	limit := min(w.cfg.maxBatch, room)
	inflight := int(r.sent.seq() - r.acked.seq())
	w.move(&r.sent, false)
	count, _, _, ok := r.sent.s.claimed()
	if !ok {
		return 0, 0
	}
	for i := r.sent.i; i < count && inflight+k < w.cfg.window; i++ {
		l := r.sent.s.published(i)
		// A message larger than a batch goes alone, pipelined like the
		// rest: only the window bounds it.
		if l < 0 || (k > 0 && size+l > limit) || (k == 0 && inflight > 0 && l > room) {
			break
		}
		k, size = k+1, size+l
	}
	return k, size
}

// send frames k messages of size bytes from sent and writes them on the
// session's connection.
func (r *ackRun) send(k, size int) {
	w := r.w
	r.msgs = r.msgs[:0]
	off := r.sent.off
	for i := r.sent.i; i < r.sent.i+k; i++ {
		l := r.sent.s.published(i)
		r.msgs = append(r.msgs, r.sent.s.data[off:off+l:off+l])
		off += l
	}
	first := r.sent.seq()
	frame, err := r.appendBatch(first)
	clear(r.msgs) // hold no page
	if err != nil {
		r.leave(err)
		return
	}
	r.frame = frame
	if r.sent.seq() == r.acked.seq() {
		r.waitFrom = time.Now() // the first message waiting: its ack is due within the timeout
	}
	if end := first + uint64(k); end > w.acks.sent.Load() {
		w.acks.sent.Store(end) // before the write: its acks may come before it returns
	}
	w.writing.Store(true)
	if w.aborted.Load() {
		w.writing.Store(false)
		return // run's next wait sees the abort
	}
	r.watch.start(r.sess, r.waitFrom, r.acked.seq(), first+uint64(k))
	n, err := w.m.writeLink(r.sess.l, frame)
	if r.watch.stop() {
		err = ErrAckTimeout // the watch left the connection: the write failed on its close
	}
	w.writing.Store(false)
	if err == nil || n > 0 {
		// A write that failed part-way may have carried its messages
		// whole: they count as written, and sending them again as
		// replays, the duplicates they may be.
		r.wrote(k, err == nil)
	}
	if errors.Is(err, errLinkLeft) && !r.sess.l.retired.Load() {
		// Switched out before the write: the session goes on reading the
		// answers to what it carried, which the loop waits for.
		return
	}
	if err != nil {
		r.leave(err)
		return
	}
	r.sent.skip(k, size)
}

// wrote counts a write of the k messages at sent: those never written
// before are Written, the others Replayed.
func (r *ackRun) wrote(k int, ok bool) {
	w := r.w
	fresh, freshBytes := 0, 0
	if end := r.sent.seq() + uint64(k); end > r.sentHigh {
		fresh = int(min(end-r.sentHigh, uint64(k)))
		r.sentHigh = end
	}
	for i := r.sent.i + k - fresh; i < r.sent.i+k; i++ { // a batch is in one segment
		freshBytes += r.sent.s.published(i)
	}
	w.mu.Lock()
	if ok {
		w.stats.Writes++
	}
	w.stats.Written += uint64(fresh)
	w.stats.WrittenBytes += uint64(freshBytes)
	w.stats.Replayed += uint64(k - fresh)
	w.unacked = int(r.sentHigh - r.acked.seq())
	w.mu.Unlock()
}

// appendBatch frames r.msgs, recovering a panic of the protocol's code.
func (r *ackRun) appendBatch(first uint64) (frame []byte, err error) {
	defer func() {
		if p := recovered("AckSession.AppendBatch", recover()); p != nil {
			frame, err = nil, p
		}
	}()
	return r.sess.s.AppendBatch(r.frame[:0], first, r.msgs), nil
}

// wait waits for news: a message to send, an acknowledgement, the
// session's end, or the ack timeout. It returns false when Close's time
// ran out or the Manager was closed.
func (r *ackRun) wait() bool {
	w := r.w
	for range idleSpins {
		runtime.Gosched()
		if r.news() {
			return true
		}
	}
	var timeout <-chan time.Time
	if r.sent.seq() > r.acked.seq() {
		defer r.poll.Stop()
		timeout = r.ackDue()
	}
	w.sleeping.Store(true) // then look: a Write publishes, then looks
	defer w.sleeping.Store(false)
	if r.news() {
		return true
	}
	return r.await(timeout)
}

// awaitSwitchedOut waits for news of a session whose connection was
// switched out: an acknowledgement, its end, or the ack timeout (which
// leaves it). Writes do not wake it: nothing is sent meanwhile. It
// returns false when Close's time ran out or the Manager was closed.
func (r *ackRun) awaitSwitchedOut() bool {
	if r.w.acks.pending(r.acked.seq()) {
		return true
	}
	defer r.poll.Stop()
	return r.await(r.ackDue())
}

// ackDue arms the poll timer for the ack timeout, counted from waitFrom,
// and returns its channel; the caller stops it.
func (r *ackRun) ackDue() <-chan time.Time {
	r.poll.Reset(max(r.w.cfg.ackTimeout-time.Since(r.waitFrom), 0))
	return r.poll.C
}

// await waits for a nudge, the session's end, or timeout (nil: none),
// at which the session is left for want of acknowledgements unless some
// came meanwhile. It returns false when Close's time ran out or the
// Manager was closed.
func (r *ackRun) await(timeout <-chan time.Time) bool {
	w := r.w
	select {
	case <-w.wake:
	case <-r.sess.done:
	case <-timeout:
		if w.acks.pending(r.acked.seq()) {
			return true
		}
		w.logAckTimeout(r.sess, r.sent.seq()-r.acked.seq())
		r.leave(ErrAckTimeout)
	case <-w.abort:
		return false
	case <-w.m.closing:
		return false
	}
	return true
}

// news reports whether the writer has something to do without waiting.
func (r *ackRun) news() bool {
	w := r.w
	if r.sess.ended() || w.acks.pending(r.acked.seq()) {
		return true
	}
	if a, ok := w.ready(&r.sent); ok && a == more {
		k, _ := r.batch() // the window may be open, but too small for the next message
		return k > 0
	}
	return false
}

// pending reports whether acknowledgements past seq are waiting.
func (b *ackBox) pending(seq uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.through > seq
}

// closeSession ends the session gracefully once everything is
// acknowledged: the protocol's close, then its confirmation, within
// Close's time. The connection is not retired: the peer closes it, and
// the Manager redials when it is next written on (the liveness check sees
// the close), rather than at once for nobody: the program is usually
// closing the Manager too.
func (r *ackRun) closeSession() {
	w := r.w
	sess := r.sess
	if sess == nil || sess.ended() || w.m.live() != sess.l {
		return
	}
	var bye []byte
	func() {
		defer func() {
			if p := recovered("AckSession.AppendClose", recover()); p != nil {
				bye = nil
			}
		}()
		bye = sess.s.AppendClose(r.frame[:0])
	}()
	if len(bye) > 0 {
		w.writing.Store(true)
		_, err := w.m.writeLink(sess.l, bye)
		w.writing.Store(false)
		if err == nil {
			select {
			case <-sess.done:
			case <-w.abort:
			case <-w.m.closing:
			}
		}
	}
}

// stopReaders ends the readers of every session and waits for them: a
// connection still current is made to fail its read by a past deadline.
func (r *ackRun) stopReaders() {
	for _, s := range r.sessions {
		if !s.ended() {
			s.l.conn.SetReadDeadline(time.Unix(1, 0))
		}
	}
	r.w.readers.Wait()
	for _, s := range r.sessions {
		s.l.reader.CompareAndSwap(&s.done, nil) // a later switch reads l's input itself again
		if !s.l.retired.Load() {
			s.l.conn.SetReadDeadline(time.Time{})
		}
	}
}

// logAckTimeout says that sess is left for want of acknowledgements.
func (w *BatchWriter) logAckTimeout(sess *ackSession, unacked uint64) {
	w.m.log(level.WarnValue(), "no acknowledgement; leaving the connection", "network", w.m.network, "address", sess.l.endpoint,
		"unacked", unacked, "timeout", w.cfg.ackTimeout.String())
}

// A writeWatch holds the ack timeout while the writer is inside a write: a
// peer that stops reading and answering (a stopped or wedged collector)
// with more in flight than the socket buffers hold leaves the writer
// blocked there, where wait's timer cannot see it. If no acknowledgement
// comes within the ack timeout, the watch leaves the connection (closes
// it), which ends the write; acknowledgements that keep coming during a
// long write keep it going, bounded by the write timeout only.
type writeWatch struct {
	w *BatchWriter
	t *time.Timer

	mu    sync.Mutex
	sess  *ackSession // the session written on; nil outside a write
	from  time.Time   // when the wait for an acknowledgement began
	acked uint64      // the oldest message unacknowledged, at start
	end   uint64      // and the one after the write's last: for the log
	cut   bool        // the watch left the connection during this write
}

func (ww *writeWatch) init(w *BatchWriter) {
	ww.w = w
	ww.t = time.AfterFunc(time.Hour, ww.fire)
	ww.t.Stop()
}

// start arms the watch for a write on sess; the acknowledgement it waits
// for has been due since from; messages acked..end are in flight, the
// write's included.
func (ww *writeWatch) start(sess *ackSession, from time.Time, acked, end uint64) {
	ww.mu.Lock()
	ww.sess, ww.from, ww.acked, ww.end, ww.cut = sess, from, acked, end, false
	ww.t.Reset(time.Until(from.Add(ww.w.cfg.ackTimeout)))
	ww.mu.Unlock()
}

// stop disarms the watch once the write returned, and reports whether it
// left the connection. After stop, a firing that was under way does
// nothing.
func (ww *writeWatch) stop() (cut bool) {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	ww.t.Stop()
	ww.sess = nil
	return ww.cut
}

func (ww *writeWatch) fire() {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	sess := ww.sess
	if sess == nil {
		return
	}
	w := ww.w
	w.acks.mu.Lock()
	last, through := w.acks.last, w.acks.through
	w.acks.mu.Unlock()
	if d := time.Until(maxTime(ww.from, last).Add(w.cfg.ackTimeout)); d > 0 {
		ww.t.Reset(d) // acknowledged meanwhile: the timeout runs from the last one
		return
	}
	ww.cut = true
	w.logAckTimeout(sess, ww.end-min(max(ww.acked, through), ww.end))
	if sess.acked.Load() {
		w.m.retire(sess.l, ErrAckTimeout)
	} else {
		w.m.retireUnproven(sess.l, ErrAckTimeout)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
