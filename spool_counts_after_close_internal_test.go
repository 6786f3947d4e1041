package conn

import (
	"context"
	"errors"
	"math"
	"testing"
)

// closedChan is a channel already closed: a feeder that has returned.
func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Close's accounting, in its order: discard (the queue, when Close's time
// ran out), countSpoolLost (the buffer a failing disk never took),
// countSpoolLeft (what was spooled and never fed). Every message accepted
// ends delivered, discarded or left, by count and by bytes.
//
// The queue holds 12 messages of 5 to 16 bytes: 0-3 written, 4 dropped
// earlier (too large for a datagram), 2-9 fed from the spool in two runs,
// the first of which straddles the settled frontier (5), 10-11 from
// memory. The spool also holds 3 records of 20 bytes never fed, one of 17
// skipped as damaged, and 2 (30 and 31 bytes) in the buffer that the disk
// never took.
func TestCountsAfterCloseAddUpByMessagesAndBytes(t *testing.T) {
	q, _ := newQueue(1<<20, 4096)
	var before []uint64 // payload bytes before message i
	var total uint64
	for i := range 12 {
		at, ok := q.put(make([]byte, 5+i))
		if !ok {
			t.Fatal("put failed")
		}
		before = append(before, at.bytes)
		total += uint64(5 + i)
	}
	before = append(before, total) // 126
	s := &spool{
		marks: []spoolMark{
			{from: 2, to: 6, fromB: before[2], toB: before[6]},
			{from: 6, to: 10, fromB: before[6], toB: before[10]},
		},
		appended:  8 + 3 + 1 + 2,
		appendedB: (before[10] - before[2]) + 3*20 + 17 + 30 + 31,
		skipped:   1,
		skippedB:  17,
	}
	s.feeding.Store(8)
	s.feedingB.Store(before[10] - before[2])
	for _, n := range []int{30, 31} {
		s.buf = appendRecord(s.buf, make([]byte, n), 1)
	}
	s.bufRecs = 2
	w := &BatchWriter{q: q, spool: s, fedDone: closedChan(), spoolCap: math.MaxUint64}
	w.drops.over = true // no report is scheduled
	w.stats.Written, w.stats.WrittenBytes = 4, before[4]
	w.stats.Discarded, w.discardedBytes = 1, 9

	w.discard()
	// Left: 5 (message 5 of the first run, all four of the second), 10+11+12+13+14 bytes;
	// discarded: 10 and 11, 15+16 bytes.
	if w.left != 5 || w.leftB != 60 || w.stats.Discarded != 3 || w.discardedBytes != 9+31 {
		t.Errorf("after discard: left %d (%d bytes), discarded %d (%d bytes); want 5 (60), 3 (40)",
			w.left, w.leftB, w.stats.Discarded, w.discardedBytes)
	}
	if w.unflushed != 2 || w.unreported != 2 || w.spoolCap != 5 {
		t.Errorf("after discard: unflushed %d, unreported %d, spoolCap %d; want 2, 2, 5", w.unflushed, w.unreported, w.spoolCap)
	}
	if want := int64(60 + 5*recHeaderLen); s.pendingRecB != want {
		t.Errorf("the spool's pending bytes grew to %d, want %d: the left records, headers included", s.pendingRecB, want)
	}
	w.mu.Lock()
	settled, frontier := w.settledLocked(), w.spoolFrontierLocked()
	w.mu.Unlock()
	if settled != 12 || frontier != 5 {
		t.Errorf("settled %d, spool frontier %d; want all 12, and the 5 settled before", settled, frontier)
	}

	w.countSpoolLost()
	if s.lost != 2 || s.lostB != 61 || s.buf != nil || s.bufRecs != 0 {
		t.Errorf("lost %d (%d bytes), buffer %d bytes, %d records; want 2 (61), empty", s.lost, s.lostB, len(s.buf), s.bufRecs)
	}
	if w.stats.Discarded != 5 || w.discardedBytes != 40+61 || w.unflushed != 4 {
		t.Errorf("after the lost: discarded %d (%d bytes), unflushed %d; want 5 (101), 4", w.stats.Discarded, w.discardedBytes, w.unflushed)
	}

	w.countSpoolLeft()
	if w.left != 5+3 || w.leftB != 60+60 {
		t.Errorf("after the spool's: left %d (%d bytes), want 8 (120)", w.left, w.leftB)
	}

	st := w.Stats()
	if st.Accepted != 18 || st.AcceptedBytes != 264 || st.Written != 4 || st.WrittenBytes != 26 ||
		st.Discarded != 6 || st.DroppedBytes != 101+17 || st.Left != 8 {
		t.Errorf("Stats: accepted %d (%d bytes), written %d (%d), discarded %d (dropped bytes %d), left %d; want 18 (264), 4 (26), 6 (118), 8",
			st.Accepted, st.AcceptedBytes, st.Written, st.WrittenBytes, st.Discarded, st.DroppedBytes, st.Left)
	}
	if st.Queue.Messages != 0 || st.Queue.Bytes != 0 {
		t.Errorf("Stats after Close: queue %d messages, %d bytes; want 0, 0", st.Queue.Messages, st.Queue.Bytes)
	}
}

// countSpoolLost with nothing in the buffer counts nothing and reports no
// drop.
func TestCountSpoolLostWithAnEmptyBufferCountsNothing(t *testing.T) {
	w := &BatchWriter{spool: &spool{}}
	w.drops.over = true
	w.countSpoolLost()
	if w.stats.Discarded != 0 || w.discardedBytes != 0 || w.unflushed != 0 || w.drops.cause.Load() != nil {
		t.Errorf("discarded %d (%d bytes), unflushed %d, cause %v; want nothing", w.stats.Discarded, w.discardedBytes, w.unflushed, w.drops.cause.Load())
	}
}

// durableSpoolWriter is a BatchWriter with a durable spool and no
// goroutines, for Sync.
func durableSpoolWriter(appended, synced uint64) (*BatchWriter, *spool) {
	s := &spool{durable: true, wakeSync: make(chan struct{}, 1), wakeFeed: make(chan struct{}, 1), appended: appended, syncedRecs: synced}
	return &BatchWriter{spool: s}, s
}

// Sync returns at once when everything appended is synced: it does not
// look at its context then.
func TestSyncWithEverythingSyncedReturnsAtOnce(t *testing.T) {
	w, s := durableSpoolWriter(5, 5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Sync(ctx); err != nil {
		t.Errorf("Sync: %v, want nil", err)
	}
	if s.syncReq != 5 || s.syncNote != nil {
		t.Errorf("syncReq %d, a note made %v; want 5, none", s.syncReq, s.syncNote != nil)
	}
}

// After the syncer's last cycle, Sync says how many messages it left
// unsynced; with a failure, it returns the failure.
func TestSyncAfterCloseSaysHowManyWereNotSynced(t *testing.T) {
	w, s := durableSpoolWriter(5, 3)
	s.syncStopped = true
	err := w.Sync(context.Background())
	if err == nil || err.Error() != "conn: spool: 2 messages not synced at Close" {
		t.Errorf("Sync after Close: %v, want 2 messages not synced", err)
	}
	failed := errors.New("disk full")
	s.failed = failed
	if err := w.Sync(context.Background()); err != failed {
		t.Errorf("Sync after a failure: %v, want it", err)
	}
}
