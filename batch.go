package conn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the BatchWriter options.
const (
	DefaultBufferSize   = 4 << 20  // bytes queued at most
	DefaultMaxBatch     = 64 << 10 // bytes per write on a stream socket
	DefaultDatagramSize = 1432     // bytes per write on a datagram socket: fits a 1500-byte MTU
	DefaultCloseTimeout = 5 * time.Second
)

// ErrBufferFull is returned by BatchWriter.Write when the message does not
// fit in the buffer (and, with WithWaitWhenFull, did not fit within the
// wait). The message was dropped and counted in BatchStats.Dropped.
var ErrBufferFull = errors.New("conn: buffer full")

// ErrTooLarge is returned by BatchWriter.Write for a message larger than the
// whole buffer. It was dropped and counted.
var ErrTooLarge = errors.New("conn: message larger than the buffer")

// ErrUnflushed is matched by the error of BatchWriter.Close when messages
// were still queued when its time ran out, and of Flush when messages it
// waited for were dropped. They are counted as dropped.
var ErrUnflushed = errors.New("conn: messages left unwritten")

// A BatchOption configures a BatchWriter.
type BatchOption interface {
	applyBatch(*batchConfig)
}

type batchOptionFunc func(*batchConfig)

func (f batchOptionFunc) applyBatch(c *batchConfig) { f(c) }

type batchConfig struct {
	size         int
	maxBatch     int
	waitWhenFull time.Duration
	closeTimeout time.Duration
}

// WithBufferSize bounds the bytes queued: accepted and not yet written
// (DefaultBufferSize). A value below 1 keeps the default.
func WithBufferSize(bytes int) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if bytes > 0 {
			c.size = bytes
		}
	})
}

// WithMaxBatch bounds the bytes of one write on the connection: queued
// messages are coalesced up to this size, and a larger message goes alone.
// The default is DefaultMaxBatch on stream sockets and DefaultDatagramSize on
// datagram sockets ("udp", "udp4", "udp6", "unixgram"), where every write is
// one datagram. A value below 1 keeps the default.
func WithMaxBatch(bytes int) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if bytes > 0 {
			c.maxBatch = bytes
		}
	})
}

// WithWaitWhenFull makes Write wait up to d for room when the buffer is full,
// instead of dropping the message at once. Zero, the default, drops at once.
func WithWaitWhenFull(d time.Duration) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if d > 0 {
			c.waitWhenFull = d
		}
	})
}

// WithCloseTimeout bounds how long Close spends writing what is queued
// (DefaultCloseTimeout). A value below 1 keeps the default.
func WithCloseTimeout(d time.Duration) BatchOption {
	return batchOptionFunc(func(c *batchConfig) {
		if d > 0 {
			c.closeTimeout = d
		}
	})
}

// QueueStats describes a BatchWriter's queue.
type QueueStats struct {
	Messages  int           // messages accepted and not yet written
	Bytes     int           // their bytes
	OldestAge time.Duration // how long the oldest batch of them has waited
}

// BatchStats is a snapshot of a BatchWriter's counters. Every message
// accepted is, in the end, written or dropped at Close; a message rejected
// by Write is dropped at once. Counters only grow.
type BatchStats struct {
	Queue         QueueStats
	Accepted      uint64 // messages Write accepted
	AcceptedBytes uint64
	Written       uint64 // messages handed whole to a connection
	WrittenBytes  uint64
	Dropped       uint64 // Rejected + Discarded
	DroppedBytes  uint64
	Rejected      uint64 // messages Write refused: ErrBufferFull, ErrTooLarge, ErrClosed
	Discarded     uint64 // messages accepted, then dropped unwritten: left at Close, or too large for a datagram
	Retried       uint64 // messages partly written on a connection that failed, written again whole
	Writes        uint64 // writes on the connection: batches
}

// A BatchWriter queues messages in memory and writes them through a Manager
// in the background, coalescing small ones into large writes. It is an
// io.WriteCloser for programs that write many small messages (log lines,
// metrics) and must never wait on the network.
//
// Each Write is one message: it is copied, queued and written whole on one
// connection, never interleaved with another message, in the order Writes
// returned. When the connection fails, the messages not yet written wait
// for the next connection; a message that was partly written when its
// connection failed is written again whole on the next one, so delivery is
// at least once: the peer may have received a fragment of it on the dead
// connection. What a nil error from the Manager's Write means for bytes in
// flight holds here too (see RELIABILITY.md).
//
// Memory is bounded by WithBufferSize. A message that does not fit is
// dropped and Write returns ErrBufferFull, or waits for room with
// WithWaitWhenFull. Counters are exact (Stats).
//
// Use a BatchWriter when writes are small and frequent and a caller must
// not wait on the network; use Manager.Write when each write must report
// its own delivery to the socket.
//
// All methods are safe for concurrent use.
type BatchWriter struct {
	m   *Manager
	cfg batchConfig

	report func() QueueStats // w.queueStats, for the Manager

	mu        sync.Mutex
	active    batch         // what Write appends to
	queued    QueueStats    // messages and bytes accepted, not written; OldestAge unused
	sending   time.Time     // when the batch being written began; zero if none
	stats     BatchStats    // counters; Queue unused
	unflushed uint64        // messages dropped because Close's time ran out or the Manager closed
	closed    bool          // Write fails: Close was called, or the Manager was closed
	closing   bool          // Close was called
	space     chan struct{} // closed when room is made; nil if nobody waits
	progress  chan struct{} // closed when messages are written; nil if nobody waits

	// Drops that a Flush must report (see noteDiscardsLocked).
	flushes    []*flushWait
	unreported uint64 // messages discarded while no Flush that must report them waited

	writing atomic.Bool // run is inside Manager.Write
	aborted atomic.Bool // Close's time ran out

	wake  chan struct{} // a batch is waiting; capacity 1
	abort chan struct{} // closed when Close's time is up
	done  chan struct{} // closed when run returns
}

// A batch is a run of messages in one buffer.
type batch struct {
	buf   []byte
	ends  []int // where each message ends in buf
	first time.Time
}

// start returns where message i begins in b.buf.
func (b *batch) start(i int) int {
	if i == 0 {
		return 0
	}
	return b.ends[i-1]
}

// NewBatchWriter returns a BatchWriter that writes through m and starts its
// background writer. It never blocks. Close the BatchWriter before the
// Manager; closing it does not close the Manager. The Manager's Stats and
// state hook report the queue of the BatchWriter made on it last.
func NewBatchWriter(m *Manager, opts ...BatchOption) *BatchWriter {
	cfg := batchConfig{size: DefaultBufferSize, maxBatch: DefaultMaxBatch, closeTimeout: DefaultCloseTimeout}
	if isDatagram(m.network) {
		cfg.maxBatch = DefaultDatagramSize
	}
	for _, o := range opts {
		if o != nil {
			o.applyBatch(&cfg)
		}
	}
	w := &BatchWriter{
		m:     m,
		cfg:   cfg,
		wake:  make(chan struct{}, 1),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.report = w.queueStats
	m.queue.Store(&w.report)
	go w.run()
	return w
}

func isDatagram(network string) bool {
	return strings.HasPrefix(network, "udp") || network == "unixgram"
}

// Write queues a copy of p as one message and returns at once (or, with
// WithWaitWhenFull, when there is room or the wait is over). It returns
// len(p) and nil when the message was accepted; 0 and ErrBufferFull or
// ErrTooLarge when it was dropped; 0 and an error matching ErrClosed after
// Close ("batch writer closed") or after the Manager's Close ("manager
// closed"). Every refused message is counted in Rejected. It never waits
// on the network.
func (w *BatchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.rejectLocked(len(p))
		w.mu.Unlock()
		return 0, w.closedErrLocked()
	}
	if w.queued.Bytes+len(p) > w.cfg.size {
		if err := w.makeRoom(len(p)); err != nil {
			w.rejectLocked(len(p))
			w.mu.Unlock()
			return 0, err
		}
	}
	wasEmpty := len(w.active.ends) == 0
	if wasEmpty {
		w.active.first = time.Now() // one clock read per batch, not per message
	}
	w.active.buf = append(w.active.buf, p...)
	w.active.ends = append(w.active.ends, len(w.active.buf))
	w.queued.Messages++
	w.queued.Bytes += len(p)
	w.stats.Accepted++
	w.stats.AcceptedBytes += uint64(len(p))
	w.mu.Unlock()
	if wasEmpty {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// makeRoom waits, with w.mu held, until n more bytes fit, as configured.
func (w *BatchWriter) makeRoom(n int) error {
	if n > w.cfg.size {
		return ErrTooLarge
	}
	if w.cfg.waitWhenFull <= 0 {
		return ErrBufferFull
	}
	t := time.NewTimer(w.cfg.waitWhenFull)
	defer t.Stop()
	for w.queued.Bytes+n > w.cfg.size {
		if w.space == nil {
			w.space = make(chan struct{})
		}
		space := w.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-t.C:
			w.mu.Lock()
			return ErrBufferFull
		}
		w.mu.Lock()
		if w.closed {
			return w.closedErrLocked()
		}
	}
	return nil
}

// rejectLocked counts a message of n bytes that Write refused.
func (w *BatchWriter) rejectLocked(n int) {
	w.stats.Rejected++
	w.stats.Dropped++
	w.stats.DroppedBytes += uint64(n)
}

// closedErrLocked is the error of a Write refused because w is closed: by
// its own Close, or because its Manager was closed.
func (w *BatchWriter) closedErrLocked() error {
	if w.closing {
		return errWriterClosed
	}
	return ErrClosed
}

// A flushWait is a Flush waiting for the messages accepted before it.
type flushWait struct {
	target  uint64 // messages accepted before the Flush: sequence numbers below this
	dropped uint64 // of those, discarded and not reported by an earlier Flush
}

// Flush waits until every message accepted before it was called has been
// written or dropped (by Close, or as too large for a datagram), or ctx is
// done. It returns nil when they were all written, an error matching
// ErrUnflushed if some message accepted before it was called was dropped
// unwritten and no earlier Flush reported it, or ctx.Err() (the drops are
// then left for the next Flush to report).
func (w *BatchWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := &flushWait{target: w.stats.Accepted, dropped: w.unreported}
	w.unreported = 0
	w.flushes = append(w.flushes, f)
	defer func() {
		w.flushes = slices.DeleteFunc(w.flushes, func(g *flushWait) bool { return g == f })
	}()
	for w.stats.Written+w.stats.Discarded < f.target {
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

// noteDiscardsLocked records that the next n messages to be accounted for
// are discarded: the Flushes waiting for them report them; the others wait
// for the next Flush. Messages are accounted for in the order they were
// accepted, so the next one's sequence number is the count of those
// written or discarded so far. w.mu must be held, and the counters not yet
// updated.
func (w *BatchWriter) noteDiscardsLocked(n uint64) {
	seq := w.stats.Written + w.stats.Discarded
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
// calls return nil.
func (w *BatchWriter) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closing, w.closed = true, true
	if w.space != nil { // waiting Writers give up
		close(w.space)
		w.space = nil
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(w.cfg.closeTimeout)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		w.aborted.Store(true)
		close(w.abort)
		// A write blocked on a peer that does not read would hold Close up
		// to the write timeout: make it fail now.
		restore := func() {}
		if w.writing.Load() {
			restore = w.m.interruptWrites()
		}
		<-w.done
		restore()
	}
	w.m.queue.CompareAndSwap(&w.report, nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unflushed > 0 {
		return fmt.Errorf("%w: %d dropped", ErrUnflushed, w.unflushed)
	}
	return nil
}

// Stats returns a snapshot of the counters and the queue.
func (w *BatchWriter) Stats() BatchStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Queue = w.queueLocked()
	return s
}

func (w *BatchWriter) queueStats() QueueStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queueLocked()
}

func (w *BatchWriter) queueLocked() QueueStats {
	q := w.queued
	switch {
	case !w.sending.IsZero():
		q.OldestAge = time.Since(w.sending)
	case len(w.active.ends) > 0:
		q.OldestAge = time.Since(w.active.first)
	}
	return q
}

// run is the background writer: it takes the queued batch and writes it in
// writes of up to maxBatch bytes, each ending on a message boundary, while
// Write fills the other buffer. A failed write leaves the messages it did
// not finish for the next connection.
func (w *BatchWriter) run() {
	defer close(w.done)
	var (
		out      batch
		next     int // the first message in out not yet written
		maxBatch = w.cfg.maxBatch
		outage   bool // the last write failed: the connection was replaced
	)
	for {
		if next == len(out.ends) {
			out.buf, out.ends, next = out.buf[:0], out.ends[:0], 0
			maxBatch = w.cfg.maxBatch
			if !w.take(&out) {
				w.discard()
				return
			}
		}
		// Wait here, where Close can cut the wait short, not in the
		// Manager's Write; and after a wait, write what queued meanwhile
		// in full-size writes.
		if outage || w.m.live() == nil {
			if !w.m.awaitLive(w.abort) {
				w.discard()
				return
			}
			w.absorb(&out)
			outage = false
		}
		start := out.start(next)
		end := next + 1
		for end < len(out.ends) && out.ends[end]-start <= maxBatch {
			end++
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
		n, err := w.m.writeNow(out.buf[start:out.ends[end-1]])
		w.writing.Store(false)
		done := next
		for done < end && out.ends[done]-start <= n {
			done++
		}
		before := out.start(done) - start // bytes of the write before message done
		w.wrote(&out, next, done, err == nil, done < end && n > before)
		next = done
		switch {
		case err == nil:
		case errors.Is(err, syscall.EMSGSIZE) && end-next > 1:
			maxBatch = 0 // a datagram too large: one message per write
		case errors.Is(err, syscall.EMSGSIZE):
			w.dropUnsendable(&out, next) // can never be sent
			next++
		default:
			outage = true
		}
	}
}

// absorb moves the messages queued during an outage behind those of out,
// so that they go out in writes of full size when the connection is back.
func (w *BatchWriter) absorb(out *batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	base := len(out.buf)
	out.buf = append(out.buf, w.active.buf...)
	for _, end := range w.active.ends {
		out.ends = append(out.ends, base+end)
	}
	w.active.buf, w.active.ends = w.active.buf[:0], w.active.ends[:0]
}

// take swaps the queued batch into out, waiting for one; false means there
// is none and the writer should stop.
func (w *BatchWriter) take(out *batch) bool {
	w.mu.Lock()
	for len(w.active.ends) == 0 {
		if w.closed {
			w.mu.Unlock()
			return false
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.abort:
			return false
		case <-w.m.closing:
			return false
		}
		w.mu.Lock()
	}
	*out, w.active = w.active, *out
	w.sending = out.first
	w.mu.Unlock()
	return true
}

// wrote accounts for messages [from, to) of out written whole by one write
// on the connection; ok says the write succeeded, partial that it failed
// inside message to.
func (w *BatchWriter) wrote(out *batch, from, to int, ok, partial bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok {
		w.stats.Writes++
	}
	if partial {
		w.stats.Retried++
	}
	if to > from {
		bytes := out.start(to) - out.start(from)
		w.stats.Written += uint64(to - from)
		w.stats.WrittenBytes += uint64(bytes)
		w.queued.Messages -= to - from
		w.queued.Bytes -= bytes
		w.signalLocked()
	}
	if to == len(out.ends) {
		w.sending = time.Time{}
	}
}

// dropUnsendable drops message i of out, which the connection refused as
// too large.
func (w *BatchWriter) dropUnsendable(out *batch, i int) {
	size := out.ends[i] - out.start(i)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteDiscardsLocked(1)
	w.stats.Discarded++
	w.stats.Dropped++
	w.stats.DroppedBytes += uint64(size)
	w.queued.Messages--
	w.queued.Bytes -= size
	if i+1 == len(out.ends) {
		w.sending = time.Time{}
	}
	w.signalLocked()
}

// discard drops everything still queued: the Manager was closed, or Close's
// time ran out.
func (w *BatchWriter) discard() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteDiscardsLocked(uint64(w.queued.Messages))
	w.unflushed += uint64(w.queued.Messages)
	w.stats.Discarded += uint64(w.queued.Messages)
	w.stats.Dropped += uint64(w.queued.Messages)
	w.stats.DroppedBytes += uint64(w.queued.Bytes)
	w.queued = QueueStats{}
	w.active.buf, w.active.ends = w.active.buf[:0], w.active.ends[:0]
	w.sending = time.Time{}
	w.closed = true
	w.signalLocked()
}

// signalLocked wakes Writes waiting for room and Flushes waiting for
// progress.
func (w *BatchWriter) signalLocked() {
	if w.space != nil {
		close(w.space)
		w.space = nil
	}
	if w.progress != nil {
		close(w.progress)
		w.progress = nil
	}
}
