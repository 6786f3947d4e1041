package conn

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The BatchWriter's queue: producers (Write) enter it without a lock; one
// consumer (the background writer) reads it in order.
//
// Messages live in a chain of segments. A segment is a slotted page: the
// payloads grow from its front, contiguous, so the consumer writes a run of
// them straight from the page; a slot per message (its length) grows from
// its back. A producer claims room for its payload and its slot with one
// atomic add on the segment's tail (message count and payload end in one
// word), copies its payload, and publishes the slot with an atomic store.
// The claim that first does not fit seals the segment and installs the
// next one, with its own message already in it; producers whose claims
// also missed wait the few instructions that takes. Order is the order of
// claims: a Write that returned before another began is ahead of it.
//
// A segment lives once: sealed, it stays sealed, and a producer that still
// holds it (loaded before the seal, run late) only ever sees its claim
// miss. What is reused is the page: once the consumer has read every
// message of a segment, every producer with a valid claim on it has
// finished copying, so the page can go under a new segment. Reusing the
// segments themselves would let a late producer claim in, or wait on, a
// later life of its segment.
//
// Memory: the room a message takes in the buffer is its length plus
// MessageOverhead (its slot), reserved before the claim, so the bytes held
// in pages never exceed the buffer size; a segment sealed early wastes less
// than the message that did not fit, which goes in the next one (or the
// run of them, at most a quarter of a segment: putRun), so the pages hold
// at most twice the buffer, plus the one being filled and the spares. Written pages are kept as spares or left to the collector: after
// an outage the memory goes back.
//
// Acknowledged delivery can keep messages past their write: segments stay
// in the chain until released, and every message has a sequence number
// (its segment's base plus its slot), so replay is a second cursor.

// MessageOverhead is what a BatchWriter's buffer holds for each message
// besides its bytes: a message of n bytes takes n + MessageOverhead of
// WithBufferSize.
const MessageOverhead = 8

const (
	countShift = 40
	endMask    = 1<<countShift - 1
	// invalid marks the tail of a closed queue's last segment, and the
	// sealed value of a segment.
	invalid = 1 << 63
	// maxSegment bounds a segment holding several messages so that its
	// slot count stays far below the invalid bit.
	maxSegment = 16 << 20
	// maxBufferSize keeps every claim's end far below 1 << countShift: 64
	// GiB. On 32-bit platforms it is 256 MiB: the pages may hold twice the
	// buffer, the collector wants as much again, and the address space
	// is 2 to 4 GiB.
	maxBufferSize = 256<<20 + is64*(1<<36-256<<20)
	// is64 is 1 where an int has 64 bits, 0 where it has 32.
	is64 = (math.MaxInt>>32 + 1) >> 31
	// maxSparePages bounds the written pages kept for reuse, so that a
	// producer sealing a segment under load rarely allocates one: as many
	// as half the buffer holds, at least minSparePages. Four were too
	// few: a writer that empties a full queue in bursts recycled more
	// pages than four at a time and dropped the rest, and the producers
	// then allocated them again (a page for a third of the seals of a
	// 256 MiB drain; bench/ BenchmarkSpoolDrain).
	maxSparePages = 16
	minSparePages = 4
)

// A page is the memory of a segment: payloads from the front as bytes,
// slots from the back as words. The slots are the only words the queue
// reads and writes with the sync/atomic functions rather than its types;
// on 32-bit platforms those need 8-byte alignment, which holds because
// words is an allocated []uint64: its first word is aligned (sync/atomic's
// rule), and so every one after it.
type page struct {
	words []uint64 // slot i is words[len(words)-1-i]
	data  []byte   // the same memory as bytes
}

func newPage(size int) *page {
	words := make([]uint64, (size+7)/8)
	return &page{
		words: words,
		data:  unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8),
	}
}

// A segment is one life of a page: a run of messages.
type segment struct {
	*page

	// tail packs the claims: count<<countShift | end of payloads. A claim
	// is valid while it fits: payloads and slots do not meet.
	tail atomic.Uint64
	// sealed is the last valid tail value | invalid, once the segment takes
	// no more claims; 0 before.
	sealed atomic.Uint64
	last   atomic.Bool // sealed by close: no segment follows
	next   atomic.Pointer[segment]

	seq   uint64 // messages in the segments before this one; set before it is shared
	bytes uint64 // their payload bytes
}

func unpack(v uint64) (count, end int) {
	return int(v &^ invalid >> countShift), int(v & endMask)
}

// fits reports whether tail value v is a valid claim on s.
func (s *segment) fits(v uint64) bool {
	count, end := unpack(v)
	return v&invalid == 0 && end+count*MessageOverhead <= len(s.data)
}

// claimed returns how many messages s holds or will hold (claimed, maybe
// not yet published), and whether that is final; ok is false while a seal
// is under way.
func (s *segment) claimed() (count, end int, final, ok bool) {
	if v := s.tail.Load(); s.fits(v) {
		count, end = unpack(v)
		return count, end, false, true
	}
	if v := s.sealed.Load(); v != 0 {
		count, end = unpack(v)
		return count, end, true, true
	}
	return 0, 0, false, false
}

func (s *segment) slot(i int) *uint64 { return &s.words[len(s.words)-1-i] }

// publish makes message i, of n bytes, visible to the consumer.
func (s *segment) publish(i, n int) { atomic.StoreUint64(s.slot(i), uint64(n)+1) }

// published returns the length of message i, or -1 if it is not yet
// published. i must be below the claimed count.
func (s *segment) published(i int) int { return int(atomic.LoadUint64(s.slot(i))) - 1 }

// whole returns how many of the k published messages from i, of size
// bytes in all, a write of n bytes carried whole, and their bytes.
func (s *segment) whole(i, k, size, n int) (done, bytes int) {
	if n >= size {
		return k, size
	}
	for { // n < size: a message of the k does not fit
		l := s.published(i + done)
		if bytes+l > n {
			return done, bytes
		}
		done, bytes = done+1, bytes+l
	}
}

// queue is the chain of segments and the room left in the buffer.
type queue struct {
	size    int // WithBufferSize
	segSize int // bytes of a page for messages that fit in one

	// Read by every claim, written rarely: apart from what changes often.
	active   atomic.Pointer[segment]
	closed   atomic.Bool // claims fail
	close1   sync.Once
	spares   [maxSparePages]atomic.Pointer[page] // clean pages for the next seals; the first spareCap are used
	spareCap int

	_    cacheLinePad
	used atomic.Int64 // room reserved: messages queued, at n + MessageOverhead each
	_    cacheLinePad
}

// cacheLinePad keeps fields that one goroutine writes often off the cache
// lines that others read on every Write (two lines: CPUs fetch pairs).
type cacheLinePad struct{ _ [128]byte }

// newQueue returns a queue and its first segment, where the consumer
// starts.
func newQueue(size, segSize int) (*queue, *segment) {
	q := &queue{size: size, segSize: segSize, spareCap: min(max(size/2/segSize, minSparePages), maxSparePages)}
	s := &segment{page: newPage(segSize)}
	q.active.Store(s)
	return q, s
}

// cost is the room a message of n bytes takes in the buffer.
func cost(n int) int64 { return int64(n) + MessageOverhead }

// reserve takes room for a message of n bytes, if there is.
func (q *queue) reserve(n int) bool {
	c := cost(n)
	for {
		u := q.used.Load()
		if u+c > int64(q.size) {
			return false
		}
		if q.used.CompareAndSwap(u, u+c) {
			return true
		}
	}
}

// release gives back the room of messages written or dropped: count
// messages of bytes payload bytes.
func (q *queue) release(count, bytes int) {
	q.used.Add(-int64(bytes) - int64(count)*MessageOverhead)
}

// A place is where a message is in the queue: its sequence number, and
// the payload bytes of the messages before it.
type place struct{ seq, bytes uint64 }

// put appends p, for which room was reserved, as one message, and returns
// its place. It returns false if the queue is closed.
func (q *queue) put(p []byte) (at place, ok bool) {
	n := len(p)
	delta := uint64(1)<<countShift | uint64(n)
	for {
		s := q.active.Load()
		v := s.tail.Add(delta)
		if s.fits(v) {
			count, end := unpack(v)
			copy(s.data[end-n:end], p)
			s.publish(count-1, n)
			return place{s.seq + uint64(count-1), s.bytes + uint64(end-n)}, true
		}
		if v&invalid != 0 { // close sets closed, then invalid
			return place{}, false
		}
		if prev := v - delta; s.fits(prev) {
			return q.seal(s, prev, p), true // this claim is the first that missed
		}
		for q.active.Load() == s { // another claim is sealing s
			runtime.Gosched()
		}
	}
}

// putRun appends the messages run, of total payload bytes, for which room
// was reserved, with one claim: they take consecutive places, the first at
// at. n says how many were put: all, or only the first when the claim was
// the first to miss the active segment, which the first then begins (the
// caller puts the rest again). It returns false if the queue is closed.
// One claim and one synchronising store for the run, rather than one each
// per message: the consumer reads the tail and the slots on other cores.
func (q *queue) putRun(run [][]byte, total int) (at place, n int, ok bool) {
	delta := uint64(len(run))<<countShift | uint64(total)
	for {
		s := q.active.Load()
		v := s.tail.Add(delta)
		if s.fits(v) {
			count, end := unpack(v)
			first, off := count-len(run), end-total
			at = place{s.seq + uint64(first), s.bytes + uint64(off)}
			// The slots after the first are plain stores: the consumer
			// reads slots in order, so it loads them only after it has
			// seen the first's store, which they happen before.
			off += copy(s.data[off:], run[0])
			for i := 1; i < len(run); i++ {
				off += copy(s.data[off:], run[i])
				*s.slot(first + i) = uint64(len(run[i])) + 1
			}
			s.publish(first, len(run[0]))
			return at, len(run), true
		}
		if v&invalid != 0 { // close sets closed, then invalid
			return place{}, 0, false
		}
		if prev := v - delta; s.fits(prev) {
			return q.seal(s, prev, run[0]), 1, true // this claim is the first that missed
		}
		for q.active.Load() == s { // another claim is sealing s
			runtime.Gosched()
		}
	}
}

// seal closes s to claims at tail value last and installs its successor
// with p as the first message, whose place it returns. Nobody else can
// reach the successor before it is linked, so its first claim is a plain
// store.
func (q *queue) seal(s *segment, last uint64, p []byte) place {
	s.sealed.Store(last | invalid)
	count, end := unpack(last)
	next := &segment{page: q.fresh(len(p)), seq: s.seq + uint64(count), bytes: s.bytes + uint64(end)}
	next.tail.Store(uint64(1)<<countShift | uint64(len(p)))
	copy(next.data, p)
	next.publish(0, len(p))
	s.next.Store(next) // before active: counting follows next
	q.active.Store(next)
	return place{next.seq, next.bytes}
}

// fresh returns a clean page with room for a message of n bytes.
func (q *queue) fresh(n int) *page {
	if int(cost(n)) > q.segSize {
		return newPage(int(cost(n))) // a message alone
	}
	for i := range q.spareCap {
		if pg := q.spares[i].Swap(nil); pg != nil {
			return pg
		}
	}
	return newPage(q.segSize)
}

// close makes every later claim fail and seals the last segment. It waits
// for a seal under way.
func (q *queue) close() {
	q.close1.Do(func() {
		q.closed.Store(true)
		for {
			s := q.active.Load()
			old := s.tail.Or(invalid)
			if s.fits(old) {
				s.last.Store(true)
				s.sealed.Store(old | invalid)
				return
			}
			for q.active.Load() == s { // a claim that missed is sealing s
				runtime.Gosched()
			}
		}
	})
}

// accepted counts the messages claimed so far, and their bytes.
func (q *queue) accepted() (count, bytes uint64) {
	s := q.active.Load()
	for {
		n, end, final, ok := s.claimed()
		switch {
		case !ok:
		case !final || s.last.Load():
			return s.seq + uint64(n), s.bytes + uint64(end)
		default:
			if next := s.next.Load(); next != nil {
				s = next
				continue
			}
		}
		runtime.Gosched() // a seal is under way
	}
}

// ensureSpare makes sure the next seal finds a page ready, so that the
// producer sealing does not allocate. Consumer only.
func (q *queue) ensureSpare() {
	for i := range q.spareCap {
		if q.spares[i].Load() != nil {
			return
		}
	}
	q.spares[0].CompareAndSwap(nil, newPage(q.segSize))
}

// trimSpares leaves one spare: the writer is idle, and the others go back
// to the collector. Consumer only.
func (q *queue) trimSpares() {
	for i := 1; i < q.spareCap; i++ {
		q.spares[i].Store(nil)
	}
}

// recycle keeps the page of s, whose messages the consumer has all read,
// as a spare if it is of the usual size and there is room for one. The
// segment s stays sealed for any producer that still holds it. Consumer
// only.
func (q *queue) recycle(s *segment) {
	free := -1
	for i := range q.spareCap {
		if q.spares[i].Load() == nil {
			free = i
			break
		}
	}
	if len(s.data) != q.segSize || free < 0 {
		return
	}
	count, end := unpack(s.sealed.Load())
	clear(s.data[:end])
	clear(s.words[len(s.words)-count:])
	q.spares[free].Store(s.page) // only the consumer fills a slot
}
