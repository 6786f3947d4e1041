package conn

import (
	"bytes"
	"math"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"
)

// consume reads every published message of s from message i on, as the
// background writer does, and returns them.
func consume(t *testing.T, s *segment, i, off int) [][]byte {
	t.Helper()
	count, _, _, ok := s.claimed()
	if !ok {
		t.Fatal("a seal is under way")
	}
	var out [][]byte
	for ; i < count; i++ {
		l := s.published(i)
		if l < 0 {
			t.Fatalf("message %d claimed, not published", i)
		}
		out = append(out, s.data[off:off+l])
		off += l
	}
	return out
}

// A segment takes claims until its payloads and slots would meet.
func TestSegmentFitsUntilPayloadsMeetSlots(t *testing.T) {
	q, _ := newQueue(1<<20, 64)
	s := q.active.Load()
	for _, n := range []int{20, 12} { // 32 bytes and 2 slots of 8: 48
		if !q.putOK(make([]byte, n)) {
			t.Fatal("put failed")
		}
	}
	if !q.putOK(make([]byte, 8)) || q.active.Load() != s { // 40 + 24 = 64: still fits
		t.Fatal("a claim that meets the slots exactly did not fit")
	}
	if !q.putOK(nil) || q.active.Load() == s { // 40 + 32 > 64
		t.Fatal("a claim past the slots did not seal the segment")
	}
	count, end, final, ok := s.claimed()
	if count != 3 || end != 40 || !final || !ok {
		t.Errorf("sealed segment: %d messages, %d bytes, final %v, ok %v; want 3, 40, true, true", count, end, final, ok)
	}
	next := q.active.Load()
	if next.seq != 3 || next.bytes != 40 || s.next.Load() != next {
		t.Errorf("successor: seq %d, bytes %d, linked %v", next.seq, next.bytes, s.next.Load() == next)
	}
	if n, b := q.accepted(); n != 4 || b != 40 {
		t.Errorf("accepted %d messages, %d bytes; want 4, 40", n, b)
	}
}

// Messages are read back whole and in order across seals, also one larger
// than a segment, which gets a segment of its own.
func TestQueueKeepsMessagesWholeAcrossSegments(t *testing.T) {
	q, head := newQueue(1<<20, 256)
	var want [][]byte
	for i := range 100 {
		m := bytes.Repeat([]byte{byte('a' + i%26)}, i%37)
		if i == 50 {
			m = bytes.Repeat([]byte{'Z'}, 1000)
		}
		if !q.putOK(m) {
			t.Fatal("put failed")
		}
		want = append(want, m)
	}
	var have [][]byte
	for s := head; s != nil; s = s.next.Load() {
		have = append(have, consume(t, s, 0, 0)...)
		if len(s.data) > 256 && (len(s.data) < 1000+MessageOverhead) {
			t.Errorf("a segment of %d bytes", len(s.data))
		}
	}
	if !slices.EqualFunc(have, want, bytes.Equal) {
		t.Errorf("read back %d messages, not the %d put, or not in order", len(have), len(want))
	}
}

// fillAndSeal puts 10-byte messages until the active segment is sealed,
// and returns it and its successor.
func fillAndSeal(q *queue) (*segment, *segment) {
	a := q.active.Load()
	for a.next.Load() == nil {
		q.putOK([]byte("0123456789"))
	}
	return a, a.next.Load()
}

// A producer that loaded a segment before it was sealed, and runs late,
// only ever sees its claim miss, also once the segment's page serves a
// later segment; the page comes back clean.
func TestStaleClaimAfterThePageIsReused(t *testing.T) {
	q, _ := newQueue(1<<20, 64)
	q.spares[0].Store(nil) // the spare made at start would be used first
	a, _ := fillAndSeal(q)
	consume(t, a, 0, 0)
	q.recycle(a)
	pg := q.spares[0].Load()
	if pg != a.page {
		t.Fatal("the consumed segment's page was not kept as a spare")
	}
	if slices.ContainsFunc(pg.words, func(w uint64) bool { return w != 0 }) {
		t.Error("a recycled page is not clean")
	}
	b := q.active.Load()
	for q.active.Load() == b {
		q.putOK([]byte("abcdefghij"))
	}
	c := q.active.Load()
	if c.page != pg {
		t.Fatal("the seal did not reuse the spare page")
	}
	delta := uint64(1)<<countShift | 10
	if v := a.tail.Add(delta); a.fits(v) {
		t.Fatal("a late claim on a sealed segment is valid")
	}
	if count, end, _, _ := c.claimed(); count != 1 || end != 10 {
		t.Errorf("the segment reusing the page holds %d messages, %d bytes; want the sealer's alone", count, end)
	}
	if got := consume(t, c, 0, 0); len(got) != 1 || string(got[0]) != "abcdefghij" {
		t.Errorf("the segment reusing the page holds %q", got)
	}
}

// Counting returns while a seal is under way: the sealer has linked its
// segment but not yet made it active, and the consumer has already
// recycled the page of the one it sealed.
func TestAcceptedDuringASeal(t *testing.T) {
	q, _ := newQueue(1<<20, 64)
	a, _ := fillAndSeal(q)
	q.active.Store(a) // the sealer, paused before q.active.Store(b)
	consume(t, a, 0, 0)
	q.recycle(a)
	count, _, _, _ := a.claimed()
	if n, _ := q.accepted(); n != uint64(count)+1 {
		t.Errorf("accepted %d, want %d", n, count+1)
	}
}

// A producer whose claim missed waits for the seal, then claims in the new
// segment, even when the page of the segment it waited on is reused
// meanwhile; it never waits on a later life of that page.
func TestMissedClaimFollowsTheSeal(t *testing.T) {
	q, _ := newQueue(1<<20, 64)
	a, _ := fillAndSeal(q)
	q.active.Store(a) // the sealer, paused before q.active.Store(b)
	put := make(chan bool)
	go func() { put <- q.putOK([]byte("late")) }()
	for range 100 {
		runtime.Gosched() // the late put misses on a and waits
	}
	sealed := len(consume(t, a, 0, 0))
	q.recycle(a)
	q.active.Store(a.next.Load()) // the sealer resumes
	select {
	case ok := <-put:
		if !ok {
			t.Error("the late put failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the late put never returned")
	}
	if n, _ := q.accepted(); n != uint64(sealed)+2 {
		t.Errorf("accepted %d, want %d: the sealed segment's, the sealer's and the late one", n, sealed+2)
	}
}

// close seals the last segment where the claims stood; later claims fail,
// and a second close returns.
func TestQueueClose(t *testing.T) {
	q, _ := newQueue(1<<20, 4096)
	q.putOK([]byte("one"))
	q.putOK([]byte("two"))
	q.close()
	q.close()
	if q.putOK([]byte("three")) {
		t.Error("put after close succeeded")
	}
	s := q.active.Load()
	if count, end, final, _ := s.claimed(); count != 2 || end != 6 || !final || !s.last.Load() {
		t.Errorf("closed segment: %d messages, %d bytes, final %v, last %v", count, end, final, s.last.Load())
	}
	if n, b := q.accepted(); n != 2 || b != 6 {
		t.Errorf("accepted %d, %d bytes after close; want 2, 6", n, b)
	}
}

// reserve takes room exactly up to the size, counting each message's slot.
func TestQueueReserve(t *testing.T) {
	q, _ := newQueue(100, 4096)
	if !q.reserve(100-MessageOverhead) || q.reserve(0) {
		t.Fatal("a full buffer is not exactly full")
	}
	q.release(1, 100-MessageOverhead-10) // 90 of 100 back: 10 still used
	if !q.reserve(90-MessageOverhead) || q.reserve(0) {
		t.Errorf("after giving back 90 bytes and taking them again, used %d", q.used.Load())
	}
}

// Slots are read and written with the sync/atomic functions, which on
// 32-bit platforms (386, arm, mips) panic on a word that is not 8-byte
// aligned. Every slot of every page is aligned: the pages of the usual
// size, those of a message alone, and those made at odd sizes. CI runs
// this on linux/386, where a misaligned word would also make the queue's
// other tests panic.
func TestSlotsAre64BitAligned(t *testing.T) {
	q, head := newQueue(1<<20, 1000)
	pages := []*page{head.page, q.fresh(10), q.fresh(5000)}
	for _, size := range []int{1, 7, 9, 63, 4095} {
		pages = append(pages, newPage(size))
	}
	for _, pg := range pages {
		s := &segment{page: pg}
		for i := range len(pg.words) {
			if addr := uintptr(unsafe.Pointer(s.slot(i))); addr%8 != 0 {
				t.Fatalf("slot %d of a page of %d bytes at %#x: not 8-byte aligned", i, len(pg.data), addr)
			}
		}
	}
	// And through the atomic functions themselves, on every slot of a
	// segment that fills up.
	for i := 0; q.putOK([]byte("x")) && q.active.Load() == head; i++ {
		if head.published(i) != 1 {
			t.Fatalf("message %d: published %d", i, head.published(i))
		}
	}
}

// The buffer's cap is what the platform can hold: 64 GiB where an int has
// 64 bits, 256 MiB where it has 32 (twice the buffer must fit in the
// address space). A huge WithMaxBatch does not overflow the segment size.
func TestBufferCapFitsThePlatform(t *testing.T) {
	want := int64(256 << 20)
	if strconv.IntSize == 64 {
		want = 1 << 36
	}
	var c batchConfig
	WithBufferSize(math.MaxInt).applyBatch(&c)
	if int64(maxBufferSize) != want || c.size != maxBufferSize {
		t.Errorf("cap %d, WithBufferSize(MaxInt) gives %d; want %d on %d bits", maxBufferSize, c.size, want, strconv.IntSize)
	}
	WithBufferSize(4 << 20).applyBatch(&c)
	for _, tc := range []struct{ maxBatch, size, want int }{
		{64 << 10, 4 << 20, 128 << 10},
		{1, 4 << 20, 64 << 10},
		{64 << 10, 1000, 4 << 10},
		{64 << 10, 5000, 5000},
		{64 << 10, 5001, 5008},
		{maxSegment, maxBufferSize, maxSegment},
		{math.MaxInt, maxBufferSize, maxSegment},
		{math.MaxInt/2 + 1, maxBufferSize, maxSegment},
	} {
		if have := segmentSize(batchConfig{maxBatch: tc.maxBatch, size: tc.size}); have != tc.want {
			t.Errorf("segmentSize(maxBatch %d, size %d) = %d, want %d", tc.maxBatch, tc.size, have, tc.want)
		}
	}
}

// putOK is put for tests that do not look at sequence numbers.
func (q *queue) putOK(p []byte) bool {
	_, ok := q.put(p)
	return ok
}

// The spare pages kept for the next seals follow the buffer: as many as
// half of it holds, at least minSparePages, at most maxSparePages; the
// consumer keeps no more than that, and an idle writer keeps one.
func TestSparePagesFollowTheBuffer(t *testing.T) {
	for _, c := range []struct{ size, seg, want int }{
		{4 << 20, 128 << 10, 16}, {1 << 20, 64 << 10, 8}, {64 << 10, 64 << 10, 4}, {1 << 30, 128 << 10, 16}, {9 * 64 << 10, 64 << 10, 4},
		{10 * 64 << 10, 64 << 10, 5},
	} {
		if got := newQueueCap(c.size, c.seg); got != c.want {
			t.Errorf("buffer %d, segments of %d: %d spare pages, want %d", c.size, c.seg, got, c.want)
		}
	}
	q, _ := newQueue(1<<20, 64<<10) // 8
	for range 12 {
		q.recycle(&segment{page: newPage(64 << 10)})
	}
	kept := 0
	for i := range q.spares {
		if q.spares[i].Load() != nil {
			kept++
		}
	}
	if kept != 8 {
		t.Errorf("%d pages kept of 12 recycled, want 8", kept)
	}
	for range 8 {
		if pg := q.fresh(10); pg == nil || len(pg.data) != 64<<10 {
			t.Fatal("fresh returned no page of the usual size")
		}
	}
	q.ensureSpare()
	q.recycle(&segment{page: newPage(64 << 10)})
	q.trimSpares()
	kept = 0
	for i := range q.spares {
		if q.spares[i].Load() != nil {
			kept++
		}
	}
	if kept != 1 {
		t.Errorf("%d pages kept by an idle writer, want 1", kept)
	}
}

func newQueueCap(size, seg int) int {
	q, _ := newQueue(size, seg)
	return q.spareCap
}
