package conn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A BatchWriter queues messages in memory and writes them through a Manager
// in the background, coalescing small ones into large writes. It is an
// io.WriteCloser for programs that write many small messages (log lines,
// metrics) and must never wait on the network.
//
// Each Write is one message: it is copied, queued and written whole on one
// connection, never interleaved with another message. Messages are written
// in the order in which their Writes entered the queue: a Write that
// returned before another began is written before it. When the connection
// fails, the messages not yet written wait for the next connection; a
// message that was partly written when its connection failed is written
// again whole on the next one, so delivery is at least once: the peer may
// have received a fragment of it on the dead connection. What a nil error
// from the Manager's Write means for bytes in flight holds here too (see
// RELIABILITY.md).
//
// Write takes no lock that the background writer takes: it reserves room
// and a place in the queue with atomic operations, copies the message and
// returns. Memory is bounded by WithBufferSize, which counts each message's
// bookkeeping (MessageOverhead) with its bytes. A message that does not fit
// is dropped and Write returns ErrBufferFull, or waits for room with
// WithWaitWhenFull. Counters are exact (Stats).
//
// Drops are visible as they happen, not only in Stats: loggers such as
// slog and go-kit's log discard the error a Write returns, so the
// BatchWriter also logs a warning through its Manager's logger ("batch
// writer dropped messages", with the counts), the first drop at once and
// later ones summed at most once per WithDropReportInterval, and passes
// the same report to the hook set by WithDropHook.
//
// With WithAcks the BatchWriter speaks a protocol in which the peer's
// program acknowledges messages (RELP: the relp subpackage): a message
// keeps its room in the buffer until it is acknowledged, and what a lost
// connection leaves unacknowledged is sent again on the next one, so a
// collector's restart loses nothing and duplicates at most a window.
// Flush and Close then count acknowledgements, not writes.
//
// Use a BatchWriter when writes are small and frequent and a caller must
// not wait on the network; use Manager.Write when each write must report
// its own delivery to the socket.
//
// All methods are safe for concurrent use.
type BatchWriter struct {
	m   *Manager
	cfg batchConfig
	q   *queue

	// Read by every Write, written rarely.
	closing  atomic.Bool                   // Close was called (else a closed queue means the Manager closed)
	spilling atomic.Bool                   // Writes go to the spool: it is durable, or holds messages not yet in memory
	sleeping atomic.Bool                   // the background writer waits for a Write to wake it
	room     atomic.Pointer[chan struct{}] // closed when room is made; nil if no Write waits
	wake     chan struct{}                 // nudges the background writer; capacity 1
	abort    chan struct{}                 // closed when Close's time is up
	done     chan struct{}                 // closed when run returns
	closed   chan struct{}                 // closed when the first Close returns

	// Written by refused Writes.
	_             cacheLinePad
	rejected      atomic.Uint64
	rejectedBytes atomic.Uint64

	// The background writer's: written on every write, so on lines of
	// their own. Stats and Flush read the accounting under mu; Write never
	// takes it.
	_              cacheLinePad
	writing        atomic.Bool // run is inside Manager.Write
	aborted        atomic.Bool // Close's time ran out
	mu             sync.Mutex
	stats          BatchStats    // Written, WrittenBytes, Discarded, Writes, Retried
	discardedBytes uint64        // bytes of the Discarded messages
	seen           time.Time     // when the writer first saw the oldest queued message; zero if unknown
	unflushed      uint64        // messages dropped because Close's time ran out or the Manager closed
	progress       chan struct{} // closed when messages are written; nil if nobody waits

	// Drops that a Flush must report (see noteDiscardsLocked).
	flushes    []*flushWait
	unreported uint64 // messages discarded while no Flush that must report them waited

	drops dropReporter // drops as they happen: the hook and the log (batchdrops.go)

	// The spool (spool.go): nil without WithSpool.
	spool    *spool
	fedDone  chan struct{} // closed when the spool's feeder returns
	left     uint64        // messages fed from the spool and left there by Close; under mu
	leftB    uint64        // their bytes
	spoolCap uint64        // the spool's frontier never passes this: what was settled when the queue was discarded

	// Acknowledged delivery (ackrun.go).
	unusable error          // every Write fails with it: acks over a datagram network, a spool that did not open
	acks     ackBox         // acknowledgements left by the sessions' readers
	readers  sync.WaitGroup // the sessions' readers
	unacked  int            // messages written and not acknowledged; under mu
}

// NewBatchWriter returns a BatchWriter that writes through m and starts its
// background writer. It never blocks. Close the BatchWriter before the
// Manager; closing it does not close the Manager. Several BatchWriters may
// share a Manager; each keeps its own queue and Stats.
//
// The queue is kept in segments of twice WithMaxBatch (at least 64 KiB, at
// most the buffer size or 4 KiB, whichever is larger, and at most 16 MiB:
// 128 KiB with the defaults); a message too large for one gets one of its
// own. The segments holding messages take at most twice the buffer size;
// besides them a BatchWriter keeps spare segments under load, as many as
// half the buffer holds but at least 4 and at most 16 (16 of 128 KiB, 2
// MiB, with the defaults), and one once it has been idle for 10 ms.
func NewBatchWriter(m *Manager, opts ...BatchOption) *BatchWriter {
	w, _ := newBatchWriter(m, opts)
	return w
}

// OpenBatchWriter is NewBatchWriter for a BatchWriter with a spool
// (WithSpool): it returns the error of opening the spool, if any, instead
// of a BatchWriter that refuses every Write with it. Opening reads the
// ledger and the names and headers of the spool's files, not their
// records: it takes milliseconds whatever the spool holds.
func OpenBatchWriter(m *Manager, opts ...BatchOption) (*BatchWriter, error) {
	w, err := newBatchWriter(m, opts)
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func newBatchWriter(m *Manager, opts []BatchOption) (*BatchWriter, error) {
	cfg := batchConfig{size: DefaultBufferSize, maxBatch: DefaultMaxBatch, closeTimeout: DefaultCloseTimeout, dropInterval: DefaultDropReportInterval, maxMessage: math.MaxInt,
		window: DefaultWindow, windowBytes: DefaultWindowBytes, ackTimeout: DefaultAckTimeout}
	if isDatagram(m.network) {
		cfg.maxBatch = DefaultDatagramSize
	}
	for _, o := range opts {
		if o != nil {
			o.applyBatch(&cfg)
		}
	}
	q, head := newQueue(cfg.size, segmentSize(cfg))
	w := &BatchWriter{
		m:        m,
		cfg:      cfg,
		q:        q,
		wake:     make(chan struct{}, 1),
		abort:    make(chan struct{}),
		done:     make(chan struct{}),
		closed:   make(chan struct{}),
		spoolCap: math.MaxUint64,
	}
	w.drops.since = time.Now()
	w.drops.last = w.drops.since.Add(-cfg.dropInterval) // the first drop is reported at once
	w.q.ensureSpare()
	w.sleeping.Store(true) // until the first Write
	switch {
	case cfg.acks != nil && isDatagram(m.network):
		w.unusable = fmt.Errorf("conn: acknowledged delivery needs a stream network, not %q", m.network)
	case cfg.durable && !cfg.spool:
		w.unusable = errors.New("conn: WithDurableSpool needs WithSpool")
	case cfg.spool:
		s, err := openSpool(cfg)
		if err != nil {
			w.unusable = err
			break
		}
		w.spool = s
		w.fedDone = make(chan struct{})
		w.spilling.Store(s.durable || s.pendingRecB != 0)
		go w.runSpoolSyncer()
		go w.runSpoolFeeder()
	}
	switch {
	case w.unusable != nil:
		w.q.close()
		go w.run(head) // finds the queue drained
	case cfg.acks == nil:
		go w.run(head)
	default:
		go w.runAcked(head)
	}
	return w, w.unusable
}

// Write queues a copy of p as one message and returns at once (or, with
// WithWaitWhenFull, when there is room or the wait is over). It returns
// len(p) and nil when the message was accepted; 0 and ErrBufferFull or
// ErrTooLarge (or ErrTooLong, see WithMaxMessage) when it was dropped; 0 and an error matching ErrClosed after
// Close ("batch writer closed") or after the Manager's Close ("manager
// closed"). Every refused message is counted in Rejected and reported (see
// WithDropHook). It never waits on the network. It takes no lock unless
// it waits for room, or refuses a message when no drop report is due (it
// then schedules one, at most once per report interval).
func (w *BatchWriter) Write(p []byte) (int, error) {
	if w.q.closed.Load() {
		return w.refuse(len(p), w.closedErr())
	}
	if len(p) > w.cfg.maxMessage {
		return w.refuse(len(p), ErrTooLong)
	}
	if w.spilling.Load() {
		return w.writeSpool(p)
	}
	if !w.q.reserve(len(p)) {
		if w.spool != nil {
			return w.writeSpool(p) // memory is full: from now on, disk
		}
		if err := w.waitForRoom(len(p)); err != nil {
			return w.refuse(len(p), err)
		}
	}
	if _, ok := w.q.put(p); !ok {
		w.q.release(1, len(p))
		return w.refuse(len(p), w.closedErr())
	}
	if w.sleeping.Load() && w.sleeping.CompareAndSwap(true, false) {
		w.nudge()
	}
	return len(p), nil
}

// writeSpool appends p to the spool.
func (w *BatchWriter) writeSpool(p []byte) (int, error) {
	if int64(len(p)) > w.spool.maxRecord() || cost(len(p)) > int64(w.cfg.size) {
		return w.refuse(len(p), ErrTooLarge) // it could never go back to memory
	}
	if err := w.spoolAppend(p); err != nil {
		if err == errWriterClosed {
			err = w.closedErr()
		}
		return w.refuse(len(p), err)
	}
	return len(p), nil
}

// refuse counts a message of n bytes that Write refused with err.
func (w *BatchWriter) refuse(n int, err error) (int, error) {
	w.rejectedBytes.Add(uint64(n))
	w.rejected.Add(1)
	w.dropped(err)
	return 0, err
}

// closedErr is the error of a Write refused because w is closed: by its
// own Close, or because its Manager was closed.
func (w *BatchWriter) closedErr() error {
	if w.unusable != nil {
		return w.unusable
	}
	if w.closing.Load() {
		return errWriterClosed
	}
	return ErrClosed
}

// nudge wakes the background writer if it waits.
func (w *BatchWriter) nudge() { wake(w.wake) }

// waitForRoom reserves room for a message of n bytes, waiting as
// configured. A full buffer under load empties a write at a time, so it
// first yields a few times, then sleeps until the writer makes room; it
// never takes the writer's lock.
func (w *BatchWriter) waitForRoom(n int) error {
	if cost(n) > int64(w.cfg.size) {
		return ErrTooLarge
	}
	if w.cfg.waitWhenFull <= 0 {
		return ErrBufferFull
	}
	for range roomSpins {
		runtime.Gosched()
		if w.q.closed.Load() {
			return w.closedErr()
		}
		if w.q.reserve(n) {
			return nil
		}
	}
	t := time.NewTimer(w.cfg.waitWhenFull)
	defer t.Stop()
	for {
		room := w.roomChan()
		// Announce, then try: the writer releases room, then looks.
		if w.q.closed.Load() {
			return w.closedErr()
		}
		if w.q.reserve(n) {
			return nil
		}
		select {
		case <-room:
		case <-t.C:
			return ErrBufferFull
		}
	}
}

// roomChan returns the channel that makeRoom closes next, making it if
// there is none: a waiter for room takes it, then tries, then waits on it.
func (w *BatchWriter) roomChan() chan struct{} {
	for {
		if room := w.room.Load(); room != nil {
			return *room
		}
		c := make(chan struct{})
		if w.room.CompareAndSwap(nil, &c) {
			return c
		}
	}
}

// makeRoom wakes the Writes waiting for room.
func (w *BatchWriter) makeRoom() {
	if room := w.room.Swap(nil); room != nil {
		close(*room)
	}
}

// roomSpins is how many times a Write yields for room before it sleeps.
const roomSpins = 8

// A flushWait is a Flush waiting for the messages accepted before it.
type flushWait struct {
	target  uint64 // messages accepted before the Flush: sequence numbers below this
	dropped uint64 // of those, discarded and not reported by an earlier Flush
}

// Flush waits until every message accepted before it was called has been
// written or dropped (by Close, or as too large for a datagram), or ctx is
// done. It returns nil when they were all written, an error matching
// ErrUnflushed if some message was dropped unwritten since the last Flush
// that reported drops (or since w was made) and before this one returned,
// or ctx.Err() (the drops are then left for the next Flush to report).
// A drop is reported once, by every Flush waiting when it happens that
// waited for the message dropped, else by the next Flush.
//
// With acks (WithAcks), Flush waits until every message accepted before
// it was acknowledged or dropped: nil means the peer acknowledged them
// all; a message the peer refused is a drop, reported as above.
func (w *BatchWriter) Flush(ctx context.Context) error {
	if w.spool != nil && !w.spoolWaitFed(ctx.Done()) {
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	target, _ := w.q.accepted()
	f := &flushWait{target: target, dropped: w.unreported}
	w.unreported = 0
	w.flushes = append(w.flushes, f)
	defer func() {
		w.flushes = slices.DeleteFunc(w.flushes, func(g *flushWait) bool { return g == f })
	}()
	w.nudge() // a writer that polls for messages starts now
	for w.settledLocked() < f.target {
		if w.progress == nil {
			w.progress = make(chan struct{})
		}
		progress := w.progress
		w.mu.Unlock()
		select {
		case <-progress:
		case <-ctx.Done():
			w.mu.Lock()
			w.unreported += f.dropped
			return ctx.Err()
		}
		w.mu.Lock()
	}
	if f.dropped > 0 {
		return fmt.Errorf("%w: %d dropped", ErrUnflushed, f.dropped)
	}
	return nil
}

// deliveredLocked returns the messages delivered and their bytes:
// written, or with acks acknowledged. w.mu must be held.
func (w *BatchWriter) deliveredLocked() (uint64, uint64) {
	if w.cfg.acks != nil {
		return w.stats.Acked, w.stats.AckedBytes
	}
	return w.stats.Written, w.stats.WrittenBytes
}

// settledLocked counts the messages accounted for: delivered or
// discarded. Messages are accounted for in the order they were accepted.
// w.mu must be held.
func (w *BatchWriter) settledLocked() uint64 {
	delivered, _ := w.deliveredLocked()
	return delivered + w.stats.Discarded + w.left
}

// spoolFrontierLocked counts the messages settled for the spool: after
// them, the ledger may point. Those left in the spool at Close are not.
// w.mu must be held.
func (w *BatchWriter) spoolFrontierLocked() uint64 {
	return min(w.settledLocked(), w.spoolCap)
}

// noteDiscardsLocked records that the next n messages to be accounted for
// are discarded: the Flushes waiting for them report them; the others wait
// for the next Flush. Messages are accounted for in the order they were
// accepted, so the next one's sequence number is the count of those
// written or discarded so far. w.mu must be held, and the counters not yet
// updated.
func (w *BatchWriter) noteDiscardsLocked(n uint64) {
	seq := w.settledLocked()
	var reported uint64 // the most any waiting Flush reports
	for _, f := range w.flushes {
		if f.target > seq {
			k := min(n, f.target-seq)
			f.dropped += k
			reported = max(reported, k)
		}
	}
	w.unreported += n - reported
}

// Close stops accepting messages, writes what is queued within the close
// timeout (WithCloseTimeout), and stops the background writer. Messages
// still queued then are dropped, counted, and reported by an error matching
// ErrUnflushed. It does not close the Manager. Close is idempotent; later
// calls wait for the first to finish and return nil.
//
// With acks (WithAcks), Close waits within the close timeout until every
// message is acknowledged, then ends the session with the protocol's close
// (RELP's "close"), after which the peer closes the connection: the
// Manager dials a new one when it is next written on. Its error then says how many messages were not acknowledged
// ("conn: messages left unwritten: 12 not acknowledged"); some of those
// may have reached the peer.
func (w *BatchWriter) Close() error {
	w.mu.Lock()
	if w.closing.Load() {
		w.mu.Unlock()
		<-w.closed
		return nil
	}
	w.closing.Store(true)
	w.mu.Unlock()
	defer close(w.closed)
	t := time.NewTimer(w.cfg.closeTimeout)
	defer t.Stop()
	var restore func() // set when Close's time ran out
	giveUp := func() {
		w.aborted.Store(true)
		close(w.abort)
		// A write blocked on a peer that does not read would hold Close up
		// to the write timeout: make it fail now.
		restore = func() {}
		if w.writing.Load() {
			restore = w.m.interruptWrites()
		}
	}
	if s := w.spool; s != nil {
		// What the spool holds goes to memory first, while time allows;
		// the rest stays on disk for the next BatchWriter.
		s.stopAppends()
		s.nudge()
		select {
		case <-w.fedDone:
		case <-t.C:
			giveUp()
		}
	}
	w.q.close()
	w.makeRoom() // waiting Writes give up
	w.nudge()
	if restore == nil {
		select {
		case <-w.done:
		case <-t.C:
			giveUp()
		}
	}
	<-w.done
	if restore != nil {
		restore()
	}
	if s := w.spool; s != nil {
		<-w.fedDone
		close(s.stop)
		<-s.synced
		w.countSpoolLost()
		w.countSpoolLeft()
	}
	w.endDropReports()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unflushed > 0 && w.cfg.acks != nil {
		return fmt.Errorf("%w: %d not acknowledged", ErrUnflushed, w.unflushed)
	}
	if w.unflushed > 0 {
		return fmt.Errorf("%w: %d dropped", ErrUnflushed, w.unflushed)
	}
	return nil
}

// Stats returns a snapshot of the counters and the queue. It may wait for
// a Write that is installing a new segment (a few instructions).
func (w *BatchWriter) Stats() BatchStats {
	w.mu.Lock()
	s := w.stats
	discardedBytes, seen, unacked, left, leftB := w.discardedBytes, w.seen, w.unacked, w.left, w.leftB
	accepted, acceptedBytes := w.q.accepted() // after the writer's counts: never fewer
	w.mu.Unlock()
	if sp := w.spool; sp != nil {
		// Records fed to memory are counted when spooled, or when
		// recovered: as they are fed.
		accepted -= sp.feeding.Load()
		acceptedBytes -= sp.feedingB.Load()
		s.Spool = sp.stats()
		accepted += s.Spool.Spooled
		acceptedBytes += s.Spool.SpooledBytes
		skipped, skippedB := sp.skippedMessages()
		s.Discarded += skipped
		discardedBytes += skippedB
	}
	s.Left = left
	s.Accepted, s.AcceptedBytes = accepted, acceptedBytes
	s.Rejected = w.rejected.Load()
	s.Dropped = s.Rejected + s.Discarded
	s.DroppedBytes = w.rejectedBytes.Load() + discardedBytes
	delivered, deliveredBytes := s.Written, s.WrittenBytes
	if w.cfg.acks != nil {
		delivered, deliveredBytes = s.Acked, s.AckedBytes
	}
	s.Queue.Messages = int(accepted - delivered - s.Discarded - left)
	s.Queue.Bytes = int(acceptedBytes - deliveredBytes - discardedBytes - leftB)
	s.Queue.Unacked = unacked
	if s.Queue.Messages > 0 && !seen.IsZero() {
		s.Queue.OldestAge = time.Since(seen)
	}
	return s
}

// segmentSize is the page size of segments that hold several messages:
// room for two batches, at least 64 KiB, at most the buffer (but 4 KiB) and
// maxSegment, in whole words.
func segmentSize(cfg batchConfig) int {
	seg := min(max(2*min(cfg.maxBatch, maxSegment), 64<<10), max(cfg.size, 4<<10), maxSegment) // min first: 2*maxBatch may overflow
	return (seg + 7) &^ 7
}

// Sync waits until every message Write accepted before it is on disk
// (synced as WithDurableSpool says), or ctx is done. It returns nil when
// they are; ctx.Err(); an error wrapping the file system's when the latest
// attempt to write or sync the spool failed (the messages stay in memory
// and the spool tries again: call Sync again to wait for them);
// ErrNotDurable without a durable spool; and, after Close, nil if Close
// synced them all, else the spool's error. Safe for concurrent use; it
// never waits on the network.
func (w *BatchWriter) Sync(ctx context.Context) error {
	s := w.spool
	if s == nil || !s.durable {
		if w.unusable != nil {
			return w.unusable
		}
		return ErrNotDurable
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.appended
	s.syncReq = max(s.syncReq, target)
	for s.syncedRecs < target {
		if s.failed != nil {
			return s.failed
		}
		if s.syncStopped {
			return fmt.Errorf("conn: spool: %d messages not synced at Close", target-s.syncedRecs)
		}
		if s.syncNote == nil {
			s.syncNote = make(chan struct{})
		}
		note := s.syncNote
		s.mu.Unlock()
		s.nudge()
		select {
		case <-note:
		case <-ctx.Done():
			s.mu.Lock()
			return ctx.Err()
		}
		s.mu.Lock()
	}
	return nil
}

// countSpoolLeft counts in Left what this life spooled and never gave to
// memory: it stays on disk for the next BatchWriter.
func (w *BatchWriter) countSpoolLeft() {
	s := w.spool
	s.mu.Lock()
	n := s.appended - s.feeding.Load() - s.lost - s.skipped
	b := s.appendedB - s.feedingB.Load() - s.lostB - s.skippedB
	s.mu.Unlock()
	w.mu.Lock()
	w.left += n
	w.leftB += b
	w.mu.Unlock()
}

// countSpoolLost counts as dropped the messages the spool could not write
// by the end of Close: its disk kept failing.
func (w *BatchWriter) countSpoolLost() {
	s := w.spool
	s.mu.Lock()
	n, b := s.bufRecs, uint64(0)
	for data := s.buf; len(data) > 0; {
		l := recordCost(int(binary.LittleEndian.Uint32(data[4:])))
		b += uint64(l - recHeaderLen)
		data = data[l:]
	}
	s.buf, s.bufRecs = nil, 0
	s.lost, s.lostB = n, b
	s.mu.Unlock()
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.unflushed += n
	w.stats.Discarded += n
	w.discardedBytes += b
	w.mu.Unlock()
	w.dropped(s.failedErr())
}
