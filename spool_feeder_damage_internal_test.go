package conn

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// A feederRig is a BatchWriter with a spool and none of its goroutines:
// the test calls the feeder's functions itself, and reads what they did
// in the spool, the memory queue and the log.
type feederRig struct {
	w    *BatchWriter
	s    *spool
	logs *damageLog
}

// damageLog keeps the spool's damage warnings as "from-to reason".
type damageLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *damageLog) Log(kv ...any) error {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[fmt.Sprint(kv[i])] = kv[i+1]
	}
	if m["msg"] == "spool record damaged; skipped" {
		l.mu.Lock()
		l.lines = append(l.lines, fmt.Sprintf("%v-%v %v", m["from"], m["to"], m["reason"]))
		l.mu.Unlock()
	}
	return nil
}

// newFeederRig returns a rig whose memory queue holds queueSize bytes;
// its spool has no segments yet (addSegment).
func newFeederRig(t *testing.T, queueSize int) *feederRig {
	logs := &damageLog{}
	m := newNullManager(WithLogger(logs))
	t.Cleanup(func() { m.Close() })
	q, _ := newQueue(queueSize, 64<<10)
	s := &spool{dir: t.TempDir(), wakeSync: make(chan struct{}, 1), wakeFeed: make(chan struct{}, 1), noAppends: true}
	w := &BatchWriter{m: m, q: q, spool: s, wake: make(chan struct{}, 1), abort: make(chan struct{}), fedDone: make(chan struct{})}
	w.cfg.size = queueSize
	w.drops.over = true // no drop report of its own: the log has every damage
	return &feederRig{w: w, s: s, logs: logs}
}

// addSegment writes segment id holding b and appends it to the spool,
// its records counted in the pending bytes; the read position is its
// first record if the spool had no segment.
func (g *feederRig) addSegment(t *testing.T, id uint64, b []byte) spoolSeg {
	t.Helper()
	writeFile(t, g.s.segName(id), b)
	seg := spoolSeg{id: id, end: int64(len(b)), sealed: true}
	if len(g.s.segs) == 0 {
		g.s.read = spoolPos{seg: id, off: segHeaderLen}
	}
	g.s.segs = append(g.s.segs, seg)
	g.s.pendingRecB += seg.end - segHeaderLen
	return seg
}

// feed runs feedSegment on seg, which must not stop the feeder; as
// runSpoolFeeder does, it moves the read position to seg's first record
// if it is in another segment.
func (g *feederRig) feed(t *testing.T, seg spoolSeg) {
	t.Helper()
	g.s.mu.Lock()
	if g.s.read.seg != seg.id {
		g.s.read = spoolPos{seg: seg.id, off: segHeaderLen}
	}
	g.s.mu.Unlock()
	var r segReader
	defer r.close()
	if !g.w.feedSegment(&r, seg) {
		t.Fatal("feedSegment stopped the feeder")
	}
}

// damages returns the damage warnings logged. It closes the Manager: its
// log lines are delivered by a goroutine of their own, and Close waits
// for them.
func (g *feederRig) damages() []string {
	g.w.m.Close()
	g.logs.mu.Lock()
	defer g.logs.mu.Unlock()
	return slices.Clone(g.logs.lines)
}

// fed returns the messages the feeder put in memory, and their bytes.
func (g *feederRig) fed() (uint64, uint64) { return g.w.q.accepted() }

// The spool's accounting of what was read: the read position, the bytes
// pending, the damaged regions and bytes.
func (g *feederRig) check(t *testing.T, read spoolPos, pending int64, damaged, damagedB uint64) {
	t.Helper()
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read != read || s.pendingRecB != pending || s.damaged != damaged || s.damagedB != damagedB {
		t.Errorf("read %+v, pending %d bytes, damaged %d (%d bytes); want %+v, %d, %d (%d)",
			s.read, s.pendingRecB, s.damaged, s.damagedB, read, pending, damaged, damagedB)
	}
}

// withLength rewrites the length in the header of the record at off, its
// header checksum made to match: a header that is whole, with a length
// that lies.
func withLength(b []byte, off int64, n uint32) {
	h := b[off : off+recHeaderLen]
	binary.LittleEndian.PutUint32(h[4:], n)
	binary.LittleEndian.PutUint32(h[0:], crc32c(h[4:]))
}

func payloads(sizes ...int) [][]byte {
	var out [][]byte
	for i, n := range sizes {
		out = append(out, patterned(n, byte(i)))
	}
	return out
}

func sum(sizes ...int) (n uint64) {
	for _, x := range sizes {
		n += uint64(x)
	}
	return n
}

// The feeder skips a record whose payload fails its checksum and one
// whose header says a length past the segment's end, reports each exactly
// and feeds the records around them; the bytes pending go down by every
// byte read, fed or skipped.
func TestSpoolFeederSkipsDamagedRecordsAndCountsTheirBytes(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	sizes := []int{10, 20, 30, 40, 50, 60}
	b, at := segmentOf(1, payloads(sizes...)...)
	b[at[1]+recHeaderLen+3] ^= 0x10 // record 1's payload
	withLength(b, at[3], 1<<20)     // record 3: a length past the end, records after it
	seg := g.addSegment(t, 1, b)
	g.s.pendingRecB += 1000 // as if another segment followed
	g.feed(t, seg)
	want := []string{
		fmt.Sprintf("%d-%d checksum mismatch", at[1], at[2]),
		fmt.Sprintf("%d-%d length past the end", at[3], at[4]),
	}
	g.check(t, spoolPos{seg: 1, off: seg.end}, 1000, 2, uint64(at[2]-at[1]+at[4]-at[3]))
	if n, bytes := g.fed(); n != 4 || bytes != sum(10, 30, 50, 60) {
		t.Errorf("fed %d messages (%d bytes), want 4 (%d)", n, bytes, sum(10, 30, 50, 60))
	}
	if got := g.damages(); !slices.Equal(got, want) {
		t.Errorf("damage reported %q, want %q", got, want)
	}
}

// A segment's last record cut short, its header whole, is reported as cut
// short, from its header to the segment's end.
func TestSpoolFeederReportsALastRecordCutShort(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	b, at := segmentOf(1, payloads(10, 20)...)
	b = b[:at[1]+recHeaderLen+5]
	seg := g.addSegment(t, 1, b)
	g.feed(t, seg)
	g.check(t, spoolPos{seg: 1, off: seg.end}, 0, 1, uint64(seg.end-at[1]))
	if n, _ := g.fed(); n != 1 {
		t.Errorf("fed %d messages, want 1", n)
	}
	if got, want := g.damages(), []string{fmt.Sprintf("%d-%d cut short", at[1], seg.end)}; !slices.Equal(got, want) {
		t.Errorf("damage reported %q, want %q", got, want)
	}
}

// A segment whose header is damaged is skipped to its first valid record:
// the header is reported, and the pending bytes go down by the record
// bytes skipped, not by the header's.
func TestSpoolFeederSkipsABadSegmentHeaderToTheFirstValidRecord(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	b, at := segmentOf(1, payloads(10, 20, 30)...)
	clear(b[:segHeaderLen])
	b[at[0]+recHeaderLen] ^= 0x10 // and the first record: resync skips it
	seg := g.addSegment(t, 1, b)
	g.s.pendingRecB += 1000
	g.feed(t, seg)
	g.check(t, spoolPos{seg: 1, off: seg.end}, 1000, 1, uint64(at[1]))
	if n, bytes := g.fed(); n != 2 || bytes != 50 {
		t.Errorf("fed %d messages (%d bytes), want 2 (50)", n, bytes)
	}
	if got, want := g.damages(), []string{fmt.Sprintf("0-%d bad segment header", at[1])}; !slices.Equal(got, want) {
		t.Errorf("damage reported %q, want %q", got, want)
	}
}

// A segment that cannot be opened is skipped whole, from the read
// position.
func TestSpoolFeederSkipsASegmentItCannotOpen(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	seg := spoolSeg{id: 7, end: 1000, sealed: true} // no such file
	g.s.segs = []spoolSeg{seg}
	g.s.read = spoolPos{seg: 7, off: 100}
	g.s.pendingRecB = 5000
	g.feed(t, seg)
	g.check(t, spoolPos{seg: 7, off: 1000}, 5000-900, 1, 900)
	if got := g.damages(); len(got) != 1 || got[0][:len("100-1000 unreadable: ")] != "100-1000 unreadable: " {
		t.Errorf("damage reported %q, want 100-1000 unreadable", got)
	}
}

// What the feeder skips of the records this BatchWriter spooled is
// counted, with their bytes, when it catches up: they were dropped.
func TestSpoolFeederCountsTheSkippedRecordsOfThisLife(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	b, at := segmentOf(1, payloads(10, 20, 30)...)
	b[at[1]+recHeaderLen] ^= 0x10
	g.addSegment(t, 1, b)
	s := g.s
	s.appended, s.appendedB, s.written = 3, 60, 3 // of this life: firstNew is 0
	g.w.runSpoolFeeder()
	if s.skipped != 1 || s.skippedB != 20 || s.caughtUp != 4 || s.pendingRecB != 0 {
		t.Errorf("skipped %d (%d bytes), caughtUp %d, pending %d; want 1 (20), 4, 0", s.skipped, s.skippedB, s.caughtUp, s.pendingRecB)
	}
	if got := g.damages(); len(got) != 1 {
		t.Errorf("damage reported %q, want one region", got)
	}
}

// After a damaged header the search for the next record begins past it,
// never before: bytes before it belong to the record just fed, though
// they and the damage may read as a valid record. Built here: an empty
// record whose header begins with the last byte of the record before
// the damage.
func TestSpoolFeederResyncsPastADamagedHeaderNeverBeforeIt(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	ghost := make([]byte, recHeaderLen) // an empty record: length 0, payload checksum 0
	copy(ghost[8:], "\x7f\x01\x02\x03\x04\x05\x06\x07")
	binary.LittleEndian.PutUint32(ghost, crc32c(ghost[4:]))
	b, at := segmentOf(1, append([]byte("abc"), ghost[0]))
	b = append(b, ghost[1:]...) // the damaged header: at[1], one byte into the ghost
	after := int64(len(b))
	b = appendRecord(b, []byte("after"), 1)
	seg := g.addSegment(t, 1, b)
	if h, ok := parseHead(b[at[1]-1:]); !ok || h.n != 0 {
		t.Fatalf("the ghost record is not valid: %+v %v", h, ok)
	}
	g.feed(t, seg)
	g.check(t, spoolPos{seg: 1, off: seg.end}, 0, 1, uint64(after-at[1]))
	if n, bytes := g.fed(); n != 2 || bytes != 9 {
		t.Errorf("fed %d messages (%d bytes), want 2 (9): the records before and after the damage", n, bytes)
	}
	if got, want := g.damages(), []string{fmt.Sprintf("%d-%d checksum mismatch", at[1], after)}; !slices.Equal(got, want) {
		t.Errorf("damage reported %q, want %q", got, want)
	}
}
