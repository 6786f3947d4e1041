package conn

import (
	"bytes"
	"slices"
	"testing"
)

// feedRunWindow takes room ahead for records of the given payload sizes,
// as a window holding them does, and returns the batch, the records and
// where the record after each begins.
func feedRunWindow(w *BatchWriter, sizes ...int) (*feedBatch, [][]byte, []spoolPos) {
	fb := &feedBatch{}
	var recs [][]byte
	var ends []spoolPos
	var b uint64
	var c int64
	off := int64(segHeaderLen)
	for i, n := range sizes {
		recs = append(recs, bytes.Repeat([]byte{byte('a' + i%26)}, n))
		off += recordCost(n)
		ends = append(ends, spoolPos{seg: 1, off: off})
		b, c = b+uint64(n), c+cost(n)
	}
	w.takeAhead(fb, uint64(len(sizes)), b, c)
	return fb, recs, ends
}

// queued returns the messages the queue holds from its first segment on.
func queued(t *testing.T, w *BatchWriter, head *segment) [][]byte {
	t.Helper()
	var out [][]byte
	for s := head; s != nil; s = s.next.Load() {
		out = append(out, consume(t, s, 0, 0)...)
	}
	return out
}

// A window's records whose room was taken ahead go in the queue together,
// with one claim, once the run is put: side by side, in order, counted
// as fed, with one mark for them all.
func TestFeederPutsAWindowsRecordsInOneRun(t *testing.T) {
	w := feedAccountingWriter(1 << 20)
	head := w.q.active.Load()
	fb, recs, ends := feedRunWindow(w, 3, 5, 7)
	for i, p := range recs {
		if !w.feedInRun(fb, p, 0, ends[i]) {
			t.Fatal("feedInRun failed")
		}
	}
	if n, _ := w.q.accepted(); n != 0 || len(fb.run) != 3 || fb.runBytes != 15 || fb.room != 0 {
		t.Fatalf("before the run is put: %d queued, run of %d records, %d bytes, room %d left; want 0, 3, 15, 0", n, len(fb.run), fb.runBytes, fb.room)
	}
	if !w.feedRun(fb) {
		t.Fatal("feedRun failed")
	}
	if got := queued(t, w, head); !bytes.Equal(bytes.Join(got, nil), bytes.Join(recs, nil)) || len(got) != 3 {
		t.Errorf("queued %q, want %q", got, recs)
	}
	want := spoolMark{from: 0, to: 3, fromB: 0, toB: 15, pos: ends[2]}
	if len(fb.marks) != 1 || fb.marks[0] != want {
		t.Errorf("marks %+v, want [%+v]", fb.marks, want)
	}
	if fb.n != 3 || fb.bytes != 15+3*recHeaderLen || fb.read != ends[2] || fb.pre != 0 || fb.preB != 0 {
		t.Errorf("batch: %d fed, %d bytes, read %+v, %d records of %d bytes counted ahead; want 3, %d, %+v, 0, 0",
			fb.n, fb.bytes, fb.read, fb.pre, fb.preB, 15+3*recHeaderLen, ends[2])
	}
	if got, want := feedAccountingOf(w), (feedAccounting{used: 15 + 3*MessageOverhead, feeding: 3, feedingB: 15, fedNew: 3}); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
	if len(fb.run) != 0 || len(fb.ends) != 0 || fb.runBytes != 0 {
		t.Errorf("the run was not emptied: %d records, %d ends, %d bytes", len(fb.run), len(fb.ends), fb.runBytes)
	}
	if !w.feedRun(fb) || fb.n != 3 {
		t.Errorf("an empty run put: %d fed, want 3", fb.n)
	}
}

// A run holds at most runLen records: the next one puts it first.
func TestFeederRunHoldsAtMostRunLenRecords(t *testing.T) {
	w := feedAccountingWriter(1 << 20)
	fb, recs, ends := feedRunWindow(w, slices.Repeat([]int{1}, runLen+1)...)
	for i, p := range recs {
		if !w.feedInRun(fb, p, 0, ends[i]) {
			t.Fatal("feedInRun failed")
		}
		if n, _ := w.q.accepted(); i < runLen && n != 0 || i == runLen && n != runLen {
			t.Fatalf("after %d records, %d queued", i+1, n)
		}
	}
	if len(fb.run) != 1 || fb.n != runLen {
		t.Errorf("run of %d records after %d fed; want 1 after %d", len(fb.run), fb.n, runLen)
	}
}

// A run holds at most a quarter of a segment's bytes (and at most
// runBytes): a claim that misses wastes little of the segment it seals.
func TestFeederRunHoldsAtMostAQuarterOfASegment(t *testing.T) {
	w := feedAccountingWriter(1 << 20) // segments of 4 KiB: runs of at most 1 KiB
	fb, recs, ends := feedRunWindow(w, 256, 256, 256, 256, 1)
	for i, p := range recs {
		if !w.feedInRun(fb, p, 0, ends[i]) {
			t.Fatal("feedInRun failed")
		}
	}
	if n, _ := w.q.accepted(); n != 4 || len(fb.run) != 1 || fb.runBytes != 1 {
		t.Errorf("%d queued, a run of %d records, %d bytes; want the 1,024 bytes of 4 put, then a run of 1, 1 byte", n, len(fb.run), fb.runBytes)
	}
	if runBytes != 16<<10 {
		t.Errorf("runBytes = %d, want 16 KiB", runBytes)
	}
	big := feedAccountingWriter(1 << 30)
	big.q.segSize = 1 << 20
	fb, recs, ends = feedRunWindow(big, 8<<10, 8<<10, 1)
	for i, p := range recs {
		if !big.feedInRun(fb, p, 0, ends[i]) {
			t.Fatal("feedInRun failed")
		}
	}
	if n, _ := big.q.accepted(); n != 2 || len(fb.run) != 1 {
		t.Errorf("with 1 MiB segments, %d queued and a run of %d after 16 KiB and 1 byte; want 2 and 1", n, len(fb.run))
	}
}

// A record whose room was not taken ahead goes alone, after the run, so
// that order is kept.
func TestFeederRecordWithoutRoomTakenAheadFollowsTheRun(t *testing.T) {
	w := feedAccountingWriter(1 << 20)
	head := w.q.active.Load()
	fb, recs, ends := feedRunWindow(w, 2, 2)
	for i, p := range recs {
		if !w.feedInRun(fb, p, 0, ends[i]) {
			t.Fatal("feedInRun failed")
		}
	}
	alone := []byte("alone")
	next := spoolPos{seg: 1, off: ends[1].off + recordCost(len(alone))}
	if !w.feedInRun(fb, alone, 0, next) {
		t.Fatal("feedInRun failed")
	}
	got := queued(t, w, head)
	if len(got) != 3 || string(got[2]) != "alone" || string(got[0]) != string(recs[0]) {
		t.Errorf("queued %q, want the run's two records, then %q", got, alone)
	}
	if fb.read != next || fb.n != 3 || len(fb.run) != 0 {
		t.Errorf("read %+v, %d fed, run of %d; want %+v, 3, 0", fb.read, fb.n, len(fb.run), next)
	}
	if got, want := feedAccountingOf(w), (feedAccounting{used: 9 + 3*MessageOverhead, feeding: 3, feedingB: 9, fedNew: 3}); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
}

// Recovered records (an earlier life's) are not counted in feeding or
// fedNew: they were never accepted by this BatchWriter.
func TestFeederRunOfRecoveredRecordsCountsNoFeeding(t *testing.T) {
	w := feedAccountingWriter(1 << 20)
	fb := &feedBatch{recovered: true}
	w.takeAhead(fb, 2, 6, cost(3)*2)
	for i, p := range [][]byte{[]byte("abc"), []byte("def")} {
		if !w.feedInRun(fb, p, 0, spoolPos{seg: 1, off: segHeaderLen + int64(i+1)*recordCost(3)}) {
			t.Fatal("feedInRun failed")
		}
	}
	if !w.feedRun(fb) {
		t.Fatal("feedRun failed")
	}
	if got, want := feedAccountingOf(w), (feedAccounting{used: 2 * cost(3)}); got != want || fb.n != 2 {
		t.Errorf("counters %+v with %d fed, want %+v with 2", got, fb.n, want)
	}
}

// A run the closed queue refuses gives its room back to the batch, and
// its records stay counted ahead (giveBack returns both); nothing counts
// as fed.
func TestFeederRunTheClosedQueueRefusedGivesItsRoomBack(t *testing.T) {
	w := feedAccountingWriter(1 << 20)
	fb, recs, ends := feedRunWindow(w, 4, 6)
	for i, p := range recs {
		if !w.feedInRun(fb, p, 0, ends[i]) {
			t.Fatal("feedInRun failed")
		}
	}
	w.q.close()
	if w.feedRun(fb) {
		t.Fatal("a closed queue took the run")
	}
	if fb.room != cost(4)+cost(6) || fb.pre != 2 || fb.preB != 10 || fb.n != 0 || len(fb.run) != 0 {
		t.Errorf("after the refusal: room %d, %d records of %d bytes ahead, %d fed, run %d; want %d, 2, 10, 0, 0",
			fb.room, fb.pre, fb.preB, fb.n, len(fb.run), cost(4)+cost(6))
	}
	w.giveBack(fb)
	if got := feedAccountingOf(w); got != (feedAccounting{}) {
		t.Errorf("after giveBack: %+v, want nothing used or counted", got)
	}
}

// Putting a run wakes a background writer that sleeps, and publishes the
// feeder's progress every feedPublish records.
func TestFeederRunWakesTheWriterAndPublishes(t *testing.T) {
	w := feedAccountingWriter(1 << 20)
	w.wake = make(chan struct{}, 1)
	w.sleeping.Store(true)
	fb, recs, ends := feedRunWindow(w, slices.Repeat([]int{1}, feedPublish)...)
	for i, p := range recs {
		if !w.feedInRun(fb, p, 0, ends[i]) {
			t.Fatal("feedInRun failed")
		}
	}
	if w.sleeping.Load() {
		t.Error("the writer sleeps on: not woken by the runs put")
	}
	select {
	case <-w.wake:
	default:
		t.Error("the writer was not nudged")
	}
	if fb.n != feedPublish-runLen {
		t.Fatalf("%d fed and not yet published, want %d", fb.n, feedPublish-runLen)
	}
	if !w.feedRun(fb) {
		t.Fatal("feedRun failed")
	}
	if fb.n != 0 || w.spool.read != ends[len(ends)-1] {
		t.Errorf("after %d records: %d not published, read position %+v; want 0, %+v", feedPublish, fb.n, w.spool.read, ends[len(ends)-1])
	}
}
