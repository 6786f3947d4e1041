package conn

import (
	"io"
	"os"
)

// spoolReadSize is the feeder's read: large enough that reading a backlog
// costs few system calls, small enough to stay far inside the memory
// buffer's bound.
const spoolReadSize = 256 << 10

// A segReader reads one segment file through a window of its bytes.
type segReader struct {
	name  string
	f     *os.File
	buf   []byte // the window: the file's bytes at [at, at+len(buf))
	at    int64
	limit int64 // bytes past this are not read: the segment's end
}

// open points r at segment file name, whose good bytes end at limit.
func (r *segReader) open(name string, limit int64) error {
	if r.name == name && r.f != nil {
		r.limit = limit
		return nil
	}
	r.close()
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	r.name, r.f, r.limit = name, f, limit
	r.buf, r.at = r.buf[:0], 0
	return nil
}

func (r *segReader) close() {
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.name = nil, ""
	r.buf = r.buf[:0]
}

// bytesAt returns the n bytes at off, or fewer where the file or the
// limit ends first. The slice is valid until the next call.
func (r *segReader) bytesAt(off int64, n int) []byte {
	n = int(min(int64(n), max(r.limit-off, 0)))
	if off >= r.at && off+int64(n) <= r.at+int64(len(r.buf)) {
		return r.buf[off-r.at : off-r.at+int64(n)]
	}
	want := max(n, spoolReadSize)
	want = int(min(int64(want), max(r.limit-off, 0)))
	if cap(r.buf) < want || cap(r.buf) > 4*spoolReadSize && want <= spoolReadSize {
		r.buf = make([]byte, want) // a large record's window goes back to the usual size after it
	}
	r.buf = r.buf[:want]
	got, err := r.f.ReadAt(r.buf, off)
	if err != nil && err != io.EOF {
		got = 0
	}
	r.buf, r.at = r.buf[:got], off
	return r.buf[:min(n, got)]
}

// buffered returns the bytes read already from off to the window's end
// (within the limit), or nil.
func (r *segReader) buffered(off int64) []byte {
	end := min(r.at+int64(len(r.buf)), r.limit)
	if off < r.at || off >= end {
		return nil
	}
	return r.buf[off-r.at : end-r.at]
}

// resync returns the offset of the first valid record after from, or the
// limit: both checksums must match, the header's first.
func (r *segReader) resync(from int64) int64 {
	for off := from; ; off++ {
		b := r.bytesAt(off, recHeaderLen) // short at the limit: the search ends
		if len(b) < recHeaderLen {
			break
		}
		h, ok := parseHead(b)
		if !ok || off+recordCost(h.n) > r.limit {
			continue
		}
		p := r.bytesAt(off+recHeaderLen, h.n)
		if len(p) == h.n && crc32c(p) == h.pcrc {
			return off
		}
	}
	return r.limit
}

// runSpoolFeeder is the spool's feeder: it reads records in order and puts
// them in the memory queue as room allows. It returns when Close has
// stopped appends and everything is fed, when Close's time runs out, or
// when the queue closes (the Manager's Close).
func (w *BatchWriter) runSpoolFeeder() {
	defer close(w.fedDone)
	s := w.spool
	var r segReader
	defer r.close()
	for {
		s.mu.Lock()
		i := 0
		for i < len(s.segs)-1 && s.segs[i].id < s.read.seg {
			i++
		}
		g, last := s.segs[i], i == len(s.segs)-1
		if g.id != s.read.seg { // the read position's segment was removed underneath
			s.read = spoolPos{seg: g.id, off: segHeaderLen}
		}
		off := s.read.off
		if off >= g.end && last { // caught up
			if s.written == s.appended && len(s.buf) == 0 {
				s.pendingRecB = 0
				s.headTime = 0
				s.caughtUp = s.written + 1 // everything appended so far was read (fed, or skipped as damaged)
				s.skipped = s.appended - s.feeding.Load()
				s.skippedB = s.appendedB - s.feedingB.Load()
				s.movedLocked()
				if !s.durable {
					w.spilling.Store(false) // under mu: no append is under way
				}
				if s.noAppends {
					s.mu.Unlock()
					return
				}
			}
			s.mu.Unlock()
			select {
			case <-s.wakeFeed:
			case <-w.abort:
				return
			case <-w.m.closing:
				return
			}
			continue
		}
		if off >= g.end { // a sealed segment read to its end: on to the next, found by id (segments before may go meanwhile)
			s.read = spoolPos{seg: s.segs[i+1].id, off: segHeaderLen}
			s.movedLocked()
			s.mu.Unlock()
			r.close()
			continue
		}
		s.mu.Unlock()
		if !w.feedSegment(&r, g) {
			return
		}
	}
}

// feedSegment feeds the records of segment g from the read position to
// its end as it is now. It returns false if the feeder must stop.
func (w *BatchWriter) feedSegment(r *segReader, g spoolSeg) bool {
	s := w.spool
	name := s.segName(g.id)
	s.mu.Lock()
	off := s.read.off
	s.mu.Unlock()
	if err := r.open(name, g.end); err != nil {
		w.spoolDamaged(&SpoolDamageError{File: name, From: off, To: g.end, Reason: "unreadable: " + err.Error()})
		w.skipTo(spoolPos{seg: g.id, off: g.end}, g.end-off)
		return true
	}
	if off == segHeaderLen {
		if err := checkSegmentHeader(name, r.bytesAt(0, segHeaderLen)); err != nil {
			to := r.resync(segHeaderLen)
			w.spoolDamaged(&SpoolDamageError{File: name, From: 0, To: to, Reason: "bad segment header"})
			w.skipTo(spoolPos{seg: g.id, off: to}, to-off)
			off = to
		}
	}
	fb := feedBatch{recovered: g.id < s.firstNew}
	defer w.publishFed(&fb)
	for off < g.end {
		// The usual case: whole, valid records in the bytes read already.
		// The window ends within the segment (r's limit is g.end): a
		// record that fits in it ends within the segment.
		if win := r.buffered(off); len(win) >= recHeaderLen {
			var k, b uint64 // the whole records in the window, as their headers say
			var c int64
			for rest := win; len(rest) >= recHeaderLen; k++ {
				h := peekHead(rest)
				rc := recordCost(h.n)
				if int64(len(rest)) < rc {
					break
				}
				b, c, rest = b+uint64(h.n), c+cost(h.n), rest[rc:]
			}
			w.takeAhead(&fb, k, b, c)
			fed := false
			for len(win) >= recHeaderLen {
				// The payload's checksum alone: it covers the length it was
				// taken over, and a header that fails it is checked whole
				// below. Only the time stamp goes unchecked: OldestAge's.
				h := peekHead(win)
				c := recordCost(h.n)
				if int64(len(win)) < c {
					break
				}
				p := win[recHeaderLen:c]
				if crc32c(p) != h.pcrc {
					break
				}
				next := spoolPos{seg: g.id, off: off + c}
				if !w.feedInRun(&fb, p, h.time, next) {
					w.giveBack(&fb)
					return false
				}
				off, win, fed = off+c, win[c:], true
			}
			if !w.feedRun(&fb) {
				w.giveBack(&fb)
				return false
			}
			w.giveBack(&fb)
			if fed {
				continue
			}
		}
		// A record across the window's end, or damage: read it alone.
		b := r.bytesAt(off, recHeaderLen)
		if len(b) < recHeaderLen {
			w.publishFed(&fb)
			w.damage(name, g.id, off, g.end, "cut short")
			return true
		}
		h, ok := parseHead(b)
		if ok && off+recordCost(h.n) > g.end {
			w.publishFed(&fb)
			if to := r.resync(off + 1); to < g.end {
				w.damage(name, g.id, off, to, "length past the end")
				off = to
				continue
			}
			w.damage(name, g.id, off, g.end, "cut short")
			return true
		}
		var p []byte
		if ok {
			p = r.bytesAt(off+recHeaderLen, h.n)
			ok = len(p) == h.n && crc32c(p) == h.pcrc
		}
		if !ok {
			w.publishFed(&fb)
			to := r.resync(off + 1)
			w.damage(name, g.id, off, to, "checksum mismatch")
			off = to
			continue
		}
		next := spoolPos{seg: g.id, off: off + recordCost(h.n)}
		if !w.feedRecord(p, h.time, next, &fb) {
			return false
		}
		off = next.off
	}
	return true
}

// damage reports the bytes [from, to) of a segment as damaged and moves
// the read position past them.
func (w *BatchWriter) damage(name string, seg uint64, from, to int64, reason string) {
	w.spoolDamaged(&SpoolDamageError{File: name, From: from, To: to, Reason: reason})
	w.skipTo(spoolPos{seg: seg, off: to}, to-from)
}

// skipTo moves the read position past n bytes that held no record.
func (w *BatchWriter) skipTo(pos spoolPos, n int64) {
	s := w.spool
	s.mu.Lock()
	s.read = pos
	s.pendingRecB = max(s.pendingRecB-n, 0)
	s.movedLocked()
	s.mu.Unlock()
}

// A feedBatch is what the feeder has fed and not yet published under
// s.mu: publishing once per feedPublish records keeps the feeder off the
// lock that Writes take, and bounds the records one spoolMark covers, so
// that the ledger moves while a long run is still being delivered.
type feedBatch struct {
	recovered bool        // the records come from an earlier life
	n         int         // records fed since the last publish
	bytes     int64       // their bytes on disk
	read      spoolPos    // where the next record begins
	marks     []spoolMark // their runs of sequence numbers

	// Taken ahead for the rest of a window's records, so that each record
	// does not pay for its own atomic operations: room in the memory
	// queue, and the count Stats subtracts (feeding).
	room      int64
	pre, preB uint64

	// Records of the window, with their room taken, waiting to go in the
	// queue together (feedRun); ends[i] is where the record after run[i]
	// begins. The payloads are the window's bytes.
	run      [][]byte
	ends     []spoolPos
	runBytes int
}

// A run of records goes in the queue with one claim (queue.putRun): at
// most runLen records, and runBytes bytes, so that a claim that misses a
// segment wastes little of it.
const (
	runLen   = 64
	runBytes = 16 << 10
)

// giveBack returns what fb took ahead and did not use.
func (w *BatchWriter) giveBack(fb *feedBatch) {
	if fb.room > 0 {
		w.q.used.Add(-fb.room)
		w.makeRoom()
	}
	if fb.pre != 0 {
		w.spool.feeding.Add(-fb.pre)
		w.spool.feedingB.Add(-fb.preB)
	}
	fb.room, fb.pre, fb.preB = 0, 0, 0
}

// takeAhead reserves room and counts for the k records of payload bytes
// b and queue cost c that a window holds, if the queue has room for all.
func (w *BatchWriter) takeAhead(fb *feedBatch, k, b uint64, c int64) {
	q := w.q
	limit := int64(q.size / 2)
	for {
		u := q.used.Load()
		if u+c > limit {
			return // one at a time, as room allows
		}
		if q.used.CompareAndSwap(u, u+c) {
			break
		}
	}
	fb.room = c
	if !fb.recovered {
		fb.pre, fb.preB = k, b
		w.spool.feedingB.Add(b)
		w.spool.feeding.Add(k)
	}
}

// feedInRun feeds the record p, spooled at t, whose successor begins at
// next: in the run if its room was taken ahead, else alone after the run.
// It returns false if the feeder must stop.
func (w *BatchWriter) feedInRun(fb *feedBatch, p []byte, t int64, next spoolPos) bool {
	c := cost(len(p))
	if fb.room < c {
		return w.feedRun(fb) && w.feedRecord(p, t, next, fb)
	}
	if len(fb.run) == runLen || fb.runBytes+len(p) > min(runBytes, w.q.segSize/4) {
		if !w.feedRun(fb) {
			return false
		}
	}
	fb.room -= c
	fb.run = append(fb.run, p)
	fb.ends = append(fb.ends, next)
	fb.runBytes += len(p)
	return true
}

// feedRun puts the run in the memory queue. It returns false if the
// feeder must stop (the queue closed): the room of what was not put goes
// back with the rest of fb.room (giveBack).
func (w *BatchWriter) feedRun(fb *feedBatch) bool {
	s := w.spool
	run, ends, total := fb.run, fb.ends, fb.runBytes
	defer func() { fb.run, fb.ends, fb.runBytes = fb.run[:0], fb.ends[:0], 0 }()
	if len(run) == 0 {
		return true
	}
	for len(run) > 0 {
		at, k, ok := w.q.putRun(run, total)
		if !ok {
			for _, p := range run {
				fb.room += cost(len(p))
			}
			return false
		}
		b := 0
		for _, p := range run[:k] {
			b += len(p)
		}
		fb.mark(at, uint64(k), uint64(b), ends[k-1])
		if !fb.recovered { // counted ahead with the others of their window
			fb.pre, fb.preB = fb.pre-uint64(k), fb.preB-uint64(b)
			s.fedNew.Add(uint64(k)) // after the put: a Flush that sees it finds it queued
		}
		fb.n += k
		fb.bytes += int64(b) + int64(k)*recHeaderLen
		fb.read = ends[k-1]
		run, ends, total = run[k:], ends[k:], total-b
	}
	if fb.n >= feedPublish {
		w.publishFed(fb)
	}
	if w.sleeping.Load() && w.sleeping.CompareAndSwap(true, false) {
		w.nudge()
	}
	return true
}

// mark records that k messages of b payload bytes went in the queue at
// at, the record after them beginning at next.
func (fb *feedBatch) mark(at place, k, b uint64, next spoolPos) {
	if n := len(fb.marks); n > 0 && fb.marks[n-1].to == at.seq {
		m := &fb.marks[n-1]
		m.to, m.toB, m.pos = at.seq+k, at.bytes+b, next
		return
	}
	fb.marks = append(fb.marks, spoolMark{from: at.seq, to: at.seq + k, fromB: at.bytes, toB: at.bytes + b, pos: next})
}

const feedPublish = 256

// markRun bounds the records one spoolMark covers: the ledger moves in
// steps of at most this many records, and the marks of a large backlog
// in memory stay few.
const markRun = 4096

// publishFed makes the feeder's progress visible: the read position,
// the pending bytes, the recovered count; and wakes the Flushes waiting.
func (w *BatchWriter) publishFed(fb *feedBatch) {
	if fb.n == 0 {
		return
	}
	s := w.spool
	s.marksMu.Lock()
	first := len(s.marks) == 0
	for _, m := range fb.marks {
		if k := len(s.marks); k > 0 && s.marks[k-1].to == m.from && m.to-s.marks[k-1].from <= markRun {
			last := &s.marks[k-1]
			last.to, last.toB, last.pos = m.to, m.toB, m.pos
			continue
		}
		s.marks = append(s.marks, m)
	}
	s.marksMu.Unlock()
	fb.marks = fb.marks[:0]
	if first { // the syncer looks at the marks until they are settled
		wake(s.wakeSync)
	}
	s.mu.Lock()
	s.read = fb.read
	s.pendingRecB = max(s.pendingRecB-fb.bytes, 0)
	s.headTime = 0
	if fb.recovered {
		s.recovered += uint64(fb.n)
	}
	s.movedLocked()
	s.mu.Unlock()
	fb.n, fb.bytes = 0, 0
}

// feedRecord puts the record p, spooled at t, in the memory queue alone,
// taking its room and counting it itself (a record whose room its window
// did not take ahead, or one across the window's end), waiting for room;
// next is where the record after it begins. It returns false if the
// feeder must stop.
func (w *BatchWriter) feedRecord(p []byte, t int64, next spoolPos, fb *feedBatch) bool {
	s := w.spool
	if cost(len(p)) > int64(w.q.size) {
		w.publishFed(fb)
		w.spoolDamaged(&SpoolDamageError{File: s.segName(next.seg), From: next.off - recordCost(len(p)), To: next.off,
			Reason: "message larger than the memory buffer (WithBufferSize)"})
		w.skipTo(next, recordCost(len(p)))
		return true
	}
	n := uint64(len(p))
	if !w.reserveFeed(len(p)) {
		w.publishFed(fb)
		s.mu.Lock()
		s.headTime = t
		s.mu.Unlock()
		if !w.feederWaitForRoom(len(p)) {
			return false
		}
	}
	if !fb.recovered { // before the put: Stats may count it late, never twice
		s.feedingB.Add(n)
		s.feeding.Add(1)
	}
	at, ok := w.q.put(p)
	if !ok {
		w.q.release(1, len(p))
		if !fb.recovered {
			s.feedingB.Add(-n)
			s.feeding.Add(^uint64(0))
		}
		return false
	}
	fb.mark(at, 1, n, next)
	if !fb.recovered {
		s.fedNew.Add(1) // after the put: a Flush that sees it finds it queued
	}
	fb.n++
	fb.bytes += recordCost(len(p))
	fb.read = next
	if fb.n >= feedPublish {
		w.publishFed(fb)
	}
	if w.sleeping.Load() && w.sleeping.CompareAndSwap(true, false) {
		w.nudge()
	}
	return true
}

// reserveFeed takes room in the memory queue for a record of n bytes, if
// the queue is less than half full after it (or empty): the connection
// needs no more to stay busy, and the memory stays well inside its bound
// while a large backlog drains.
func (w *BatchWriter) reserveFeed(n int) bool {
	q := w.q
	c, limit := cost(n), int64(q.size/2)
	for {
		u := q.used.Load()
		if u+c > limit && (u > 0 || c > int64(q.size)) {
			return false
		}
		if q.used.CompareAndSwap(u, u+c) {
			return true
		}
	}
}

// feederWaitForRoom reserves room for a record of n bytes, waiting as long
// as it takes; false if the feeder must stop instead.
func (w *BatchWriter) feederWaitForRoom(n int) bool {
	for {
		room := w.roomChan()
		if w.q.closed.Load() {
			return false
		}
		if w.reserveFeed(n) {
			return true
		}
		select {
		case <-room:
		case <-w.abort:
			return false
		case <-w.m.closing:
			return false
		}
	}
}

// movedLocked wakes the Flushes waiting for the feeder: it moved. s.mu
// must be held.
func (s *spool) movedLocked() {
	if s.fedNote != nil {
		close(s.fedNote)
		s.fedNote = nil
	}
}

// spoolWaitFed waits until the feeder has put in memory every record the
// spool held when it was called, or ctx is done, or the feeder stopped.
func (w *BatchWriter) spoolWaitFed(done <-chan struct{}) bool {
	s := w.spool
	s.mu.Lock()
	target := s.appended
	// Done when every record appended before the call is in memory, or
	// the feeder has read past them all (a damaged one is never fed).
	for (s.fedNew.Load() < target || s.read.seg < s.firstNew) && s.caughtUp <= target {
		if s.fedNote == nil {
			s.fedNote = make(chan struct{})
		}
		note := s.fedNote
		s.mu.Unlock()
		select {
		case <-note:
		case <-w.fedDone:
			return true
		case <-done:
			return false
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return true
}
