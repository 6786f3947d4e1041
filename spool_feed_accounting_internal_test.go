package conn

import (
	"slices"
	"testing"
)

// feedAccountingWriter returns a BatchWriter with only what the feeder's accounting
// touches: a memory queue of size bytes and a spool with no files. No
// goroutine runs: the test is the feeder.
func feedAccountingWriter(size int) *BatchWriter {
	q, _ := newQueue(size, 4<<10)
	return &BatchWriter{
		q:       q,
		fedDone: make(chan struct{}),
		spool: &spool{
			wakeSync: make(chan struct{}, 1), wakeFeed: make(chan struct{}, 1),
			firstNew: 1, read: spoolPos{seg: 1, off: segHeaderLen},
		},
	}
}

// feedAccountingClosed reports whether c is closed.
func feedAccountingClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// feedAccounting are the feeder's counters that Stats and the queue read.
type feedAccounting struct {
	used              int64
	feeding, feedingB uint64
	fedNew            uint64
}

func feedAccountingOf(w *BatchWriter) feedAccounting {
	return feedAccounting{w.q.used.Load(), w.spool.feeding.Load(), w.spool.feedingB.Load(), w.spool.fedNew.Load()}
}

// What a window took ahead and did not use goes back exactly: its room in
// the memory queue (waking the Writes that wait for room) and the count
// Stats subtracts.
func TestFeederGivesBackExactlyWhatItsWindowTookAheadAndDidNotUse(t *testing.T) {
	w := feedAccountingWriter(1000)
	w.q.used.Store(300)
	w.spool.feeding.Store(5)
	w.spool.feedingB.Store(50)
	room := w.roomChan()
	fb := &feedBatch{room: 120, pre: 2, preB: 20}
	w.giveBack(fb)
	if got, want := feedAccountingOf(w), (feedAccounting{used: 180, feeding: 3, feedingB: 30}); got != want {
		t.Errorf("after giving back 120 bytes of room and 2 records of 20 bytes: %+v, want %+v", got, want)
	}
	if fb.room != 0 || fb.pre != 0 || fb.preB != 0 {
		t.Errorf("the batch still holds room %d, %d records of %d bytes", fb.room, fb.pre, fb.preB)
	}
	if !feedAccountingClosed(room) {
		t.Error("room given back, and the Write waiting for room was not woken")
	}
}

// A window that took nothing ahead gives nothing back, and wakes nobody
// waiting for room: there is no more of it.
func TestFeederGivingBackNothingWakesNoWriteWaitingForRoom(t *testing.T) {
	w := feedAccountingWriter(1000)
	w.q.used.Store(300)
	room := w.roomChan()
	w.giveBack(&feedBatch{})
	if got, want := feedAccountingOf(w), (feedAccounting{used: 300}); got != want {
		t.Errorf("after giving back nothing: %+v, want %+v", got, want)
	}
	if feedAccountingClosed(room) {
		t.Error("a Write waiting for room was woken though no room was made")
	}
}

// A window's records take their room ahead all at once only if the memory
// queue stays at most half full after it; recovered records are not
// counted in feeding (they were never counted as accepted).
func TestFeederTakesAWindowAheadOnlyIfTheQueueStaysAtMostHalfFull(t *testing.T) {
	for _, c := range []struct {
		name      string
		used, c   int64
		recovered bool
		taken     bool
	}{
		{"to exactly half", 0, 500, false, true},
		{"past half of an empty queue", 0, 501, false, false},
		{"past half after what is queued", 300, 300, false, false},
		{"to exactly half after what is queued", 300, 200, false, true},
		{"recovered records", 100, 400, true, true},
	} {
		w := feedAccountingWriter(1000)
		w.q.used.Store(c.used)
		fb := &feedBatch{recovered: c.recovered}
		w.takeAhead(fb, 7, 70, c.c)
		want, wantFB := feedAccounting{used: c.used}, feedBatch{recovered: c.recovered}
		if c.taken {
			want.used += c.c
			wantFB.room = c.c
			if !c.recovered {
				want.feeding, want.feedingB = 7, 70
				wantFB.pre, wantFB.preB = 7, 70
			}
		}
		if got := feedAccountingOf(w); got != want {
			t.Errorf("%s: %d used, a window of 7 records costing %d: %+v, want %+v", c.name, c.used, c.c, got, want)
		}
		if fb.room != wantFB.room || fb.pre != wantFB.pre || fb.preB != wantFB.preB {
			t.Errorf("%s: the batch took room %d, %d records of %d bytes; want %d, %d, %d",
				c.name, fb.room, fb.pre, fb.preB, wantFB.room, wantFB.pre, wantFB.preB)
		}
	}
}

// One record takes room if the queue stays at most half full after it,
// or if the queue is empty and the record fits in it at all.
func TestFeederReservesARecordOnlyIfTheQueueStaysAtMostHalfFull(t *testing.T) {
	for _, c := range []struct {
		name string
		used int64
		n    int // payload bytes: it costs n + MessageOverhead
		ok   bool
	}{
		{"to exactly half", 100, 400 - MessageOverhead, true},
		{"past half", 100, 401 - MessageOverhead, false},
		{"past half of an empty queue", 0, 1000 - MessageOverhead, true},
		{"larger than the queue", 0, 1001 - MessageOverhead, false},
	} {
		w := feedAccountingWriter(1000)
		w.q.used.Store(c.used)
		ok := w.reserveFeed(c.n)
		want := c.used
		if c.ok {
			want += cost(c.n)
		}
		if got := w.q.used.Load(); ok != c.ok || got != want {
			t.Errorf("%s: reserving %d bytes with %d of 1000 used: %v, %d used; want %v, %d", c.name, cost(c.n), c.used, ok, got, c.ok, want)
		}
	}
}

// publishFed appends the batch's runs to the spool's marks, merging a run
// into the last mark when it follows it and the merged run covers at most
// markRun records; it wakes the syncer when the marks were empty, and
// moves the read position and the pending bytes exactly.
func TestPublishFedMergesFollowingRunsUpToMarkRunRecords(t *testing.T) {
	pos := func(off int64) spoolPos { return spoolPos{seg: 1, off: off} }
	for _, c := range []struct {
		name       string
		marks, fed []spoolMark
		want       []spoolMark
	}{
		{"into no marks", nil,
			[]spoolMark{{from: 0, to: 3, fromB: 0, toB: 30, pos: pos(100)}},
			[]spoolMark{{from: 0, to: 3, fromB: 0, toB: 30, pos: pos(100)}}},
		{"following, far from 0", []spoolMark{{from: 3000, to: 3100, fromB: 9, toB: 90, pos: pos(100)}},
			[]spoolMark{{from: 3100, to: 3200, fromB: 90, toB: 180, pos: pos(200)}},
			[]spoolMark{{from: 3000, to: 3200, fromB: 9, toB: 180, pos: pos(200)}}},
		{"following, to exactly markRun", []spoolMark{{from: 10, to: 100, fromB: 1, toB: 2, pos: pos(100)}},
			[]spoolMark{{from: 100, to: 10 + markRun, fromB: 2, toB: 3, pos: pos(200)}},
			[]spoolMark{{from: 10, to: 10 + markRun, fromB: 1, toB: 3, pos: pos(200)}}},
		{"following, past markRun", []spoolMark{{from: 10, to: 100, fromB: 1, toB: 2, pos: pos(100)}},
			[]spoolMark{{from: 100, to: 11 + markRun, fromB: 2, toB: 3, pos: pos(200)}},
			[]spoolMark{{from: 10, to: 100, fromB: 1, toB: 2, pos: pos(100)}, {from: 100, to: 11 + markRun, fromB: 2, toB: 3, pos: pos(200)}}},
		{"after a gap", []spoolMark{{from: 10, to: 100, fromB: 1, toB: 2, pos: pos(100)}},
			[]spoolMark{{from: 150, to: 200, fromB: 3, toB: 4, pos: pos(200)}},
			[]spoolMark{{from: 10, to: 100, fromB: 1, toB: 2, pos: pos(100)}, {from: 150, to: 200, fromB: 3, toB: 4, pos: pos(200)}}},
		{"two runs, the first following", []spoolMark{{from: 0, to: 5, fromB: 0, toB: 5, pos: pos(100)}},
			[]spoolMark{{from: 5, to: 6, fromB: 5, toB: 7, pos: pos(150)}, {from: 9, to: 10, fromB: 8, toB: 9, pos: pos(200)}},
			[]spoolMark{{from: 0, to: 6, fromB: 0, toB: 7, pos: pos(150)}, {from: 9, to: 10, fromB: 8, toB: 9, pos: pos(200)}}},
	} {
		w := feedAccountingWriter(1000)
		s := w.spool
		s.marks = slices.Clone(c.marks)
		s.pendingRecB = 1000
		fb := &feedBatch{n: 4, bytes: 300, read: pos(200), marks: slices.Clone(c.fed)}
		w.publishFed(fb)
		if !slices.Equal(s.marks, c.want) {
			t.Errorf("%s: marks %+v after publishing %+v: %+v, want %+v", c.name, c.marks, c.fed, s.marks, c.want)
		}
		if woke := len(s.wakeSync) == 1; woke != (len(c.marks) == 0) {
			t.Errorf("%s: the syncer woken: %v, want %v (only when the marks were empty)", c.name, woke, len(c.marks) == 0)
		}
		if s.read != pos(200) || s.pendingRecB != 700 || s.recovered != 0 {
			t.Errorf("%s: read %+v, pending %d bytes, %d recovered; want %+v, 700, 0", c.name, s.read, s.pendingRecB, s.recovered, pos(200))
		}
		if fb.n != 0 || fb.bytes != 0 || len(fb.marks) != 0 {
			t.Errorf("%s: the batch still holds %d records of %d bytes, marks %+v", c.name, fb.n, fb.bytes, fb.marks)
		}
	}
}

// Records fed alone (their window took no room ahead) each take their
// own room and count themselves, nothing twice: the queue's used room,
// feeding and the batch's run of sequence numbers are exact after each.
func TestFeederRecordsFedAloneTakeTheirOwnRoom(t *testing.T) {
	w := feedAccountingWriter(1000)
	s := w.spool
	p1, p2 := []byte("abcd"), []byte("efghij")
	c := cost(len(p1)) + cost(len(p2))
	fb := &feedBatch{}
	next1 := spoolPos{seg: 1, off: segHeaderLen + recordCost(len(p1))}
	next2 := spoolPos{seg: 1, off: next1.off + recordCost(len(p2))}

	if !w.feedRecord(p1, 0, next1, fb) {
		t.Fatal("feedRecord failed")
	}
	if got, want := feedAccountingOf(w), (feedAccounting{used: cost(len(p1)), feeding: 1, feedingB: 4, fedNew: 1}); got != want {
		t.Errorf("after the first record: %+v, want %+v", got, want)
	}
	if want := []spoolMark{{from: 0, to: 1, fromB: 0, toB: 4, pos: next1}}; !slices.Equal(fb.marks, want) {
		t.Errorf("after the first record: marks %+v, want %+v", fb.marks, want)
	}

	if !w.feedRecord(p2, 0, next2, fb) {
		t.Fatal("feedRecord failed")
	}
	if got, want := feedAccountingOf(w), (feedAccounting{used: c, feeding: 2, feedingB: 10, fedNew: 2}); got != want {
		t.Errorf("after the second record: %+v, want %+v", got, want)
	}
	if fb.room != 0 || fb.pre != 0 || fb.preB != 0 {
		t.Errorf("after the second record the batch holds room %d, %d records of %d bytes; want none", fb.room, fb.pre, fb.preB)
	}
	if want := []spoolMark{{from: 0, to: 2, fromB: 0, toB: 10, pos: next2}}; !slices.Equal(fb.marks, want) {
		t.Errorf("after the second record: marks %+v, want %+v", fb.marks, want)
	}
	if fb.n != 2 || fb.bytes != recordCost(len(p1))+recordCost(len(p2)) || fb.read != next2 || len(s.marks) != 0 {
		t.Errorf("batch of %d records, %d bytes, read %+v; spool marks %+v; want 2, %d, %+v and none published",
			fb.n, fb.bytes, fb.read, s.marks, recordCost(len(p1))+recordCost(len(p2)), next2)
	}
	if n, b := w.q.accepted(); n != 2 || b != 10 {
		t.Errorf("the queue holds %d messages of %d bytes, want 2 of 10", n, b)
	}
}

// The feeder publishes its progress every feedPublish records, not
// before.
func TestFeederPublishesEveryFeedPublishRecords(t *testing.T) {
	w := feedAccountingWriter(1 << 20)
	s := w.spool
	s.pendingRecB = 10 * feedPublish * recordCost(1)
	fb := &feedBatch{}
	next := spoolPos{seg: 1, off: segHeaderLen}
	for i := range feedPublish {
		next.off += recordCost(1)
		if !w.feedRecord([]byte{'x'}, 0, next, fb) {
			t.Fatal("feedRecord failed")
		}
		if i < feedPublish-1 && (fb.n != i+1 || len(s.marks) != 0) {
			t.Fatalf("after %d records: %d in the batch, marks %+v; want %d and none published", i+1, fb.n, s.marks, i+1)
		}
	}
	want := []spoolMark{{from: 0, to: feedPublish, fromB: 0, toB: feedPublish, pos: next}}
	if fb.n != 0 || !slices.Equal(s.marks, want) || s.read != next || s.pendingRecB != 9*feedPublish*recordCost(1) {
		t.Errorf("after %d records: %d in the batch, marks %+v, read %+v, pending %d; want 0, %+v, %+v, %d",
			feedPublish, fb.n, s.marks, s.read, s.pendingRecB, want, next, 9*feedPublish*recordCost(1))
	}
}

// A record fed into a closed queue gives back its room and its count:
// nothing is counted as fed.
func TestFeederGivesBackARecordTheClosedQueueRefused(t *testing.T) {
	w := feedAccountingWriter(1000)
	w.q.close()
	fb := &feedBatch{}
	if w.feedRecord([]byte("abcde"), 0, spoolPos{seg: 1, off: segHeaderLen + recordCost(5)}, fb) {
		t.Fatal("feedRecord into a closed queue succeeded")
	}
	if got := feedAccountingOf(w); got != (feedAccounting{}) {
		t.Errorf("after the refused record: %+v, want all zero", got)
	}
	if fb.n != 0 || len(fb.marks) != 0 {
		t.Errorf("the batch holds %d records, marks %+v; want none", fb.n, fb.marks)
	}
}

// A Flush waits until every record appended before it is in memory, or
// the feeder has read past them all; no longer, no shorter.
func TestSpoolWaitFedWaitsForEveryRecordAppendedBeforeIt(t *testing.T) {
	for _, c := range []struct {
		name             string
		fedNew, caughtUp uint64
		done             bool
	}{
		{"all 5 fed", 5, 0, true},
		{"4 fed, none skipped", 4, 0, false},
		{"3 fed, the feeder read 4", 3, 5, false},
		{"3 fed, the feeder read all 5", 3, 6, true},
	} {
		w := feedAccountingWriter(1000)
		s := w.spool
		s.appended = 5
		s.fedNew.Store(c.fedNew)
		s.caughtUp = c.caughtUp
		gone := make(chan struct{})
		close(gone) // so that waiting returns false at once
		if got := w.spoolWaitFed(gone); got != c.done {
			t.Errorf("%s: done %v, want %v", c.name, got, c.done)
		}
	}
}
