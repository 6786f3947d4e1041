package conn

import (
	"bytes"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// syncerWriter opens a durable spool, synced every every, in a new
// directory, for a BatchWriter without goroutines: the tests run the
// syncer's steps themselves. With m nil, nothing is logged.
func syncerWriter(t *testing.T, m *Manager, every time.Duration) (*BatchWriter, *spool) {
	t.Helper()
	w, s := openBareSpool(t, 1<<20, WithDurableSpool(every))
	if m == nil {
		m = &Manager{cfg: defaultConfig()}
	}
	w.m, w.spoolCap = m, math.MaxUint64
	return w, s
}

// loggingManager returns a Manager that logs to a buffer, and a function
// that closes it and returns what it logged.
func loggingManager(t *testing.T) (*Manager, func() string) {
	var buf bytes.Buffer
	m := New("tcp", "127.0.0.1:1", WithLogger(log.NewLogfmtLogger(&buf)))
	t.Cleanup(func() { m.Close() })
	return m, func() string {
		m.Close() // the last notes are delivered
		return buf.String()
	}
}

// appendOld appends records of the sizes given, as a linger ago: the next
// cycle writes them.
func appendOld(t *testing.T, w *BatchWriter, sizes ...int) {
	t.Helper()
	for _, n := range sizes {
		if err := w.spoolAppend(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	s := w.spool
	s.mu.Lock()
	s.bufSince = time.Now().Add(-time.Second).UnixNano()
	s.mu.Unlock()
}

// drain writes the buffer out, as the syncer does.
func drain(w *BatchWriter) error {
	w.spool.wmu.Lock()
	defer w.spool.wmu.Unlock()
	return w.drainLocked()
}

// segEnds returns a copy of the spool's segments.
func segEnds(s *spool) []spoolSeg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]spoolSeg(nil), s.segs...)
}

// recCost is the bytes a record of 10 bytes takes in a file.
const recCost = 10 + recHeaderLen

// A record goes in the segment it fits in exactly; the next begins a new
// segment, and a record longer than a segment has one of its own.
func TestSpoolSyncerRotatesWhereTheNextRecordWouldPassSegMax(t *testing.T) {
	w, s := syncerWriter(t, nil, time.Hour)
	s.segMax = segHeaderLen + 3*recCost
	appendOld(t, w, 10, 10, 10, 10, 200)
	if err := drain(w); err != nil {
		t.Fatal(err)
	}
	want := []spoolSeg{
		{id: 1, end: segHeaderLen + 3*recCost, sealed: true},
		{id: 2, end: segHeaderLen + recCost, sealed: true},
		{id: 3, end: segHeaderLen + 200 + recHeaderLen},
	}
	if have := segEnds(s); !equalSegs(have, want) {
		t.Errorf("segments %+v, want %+v", have, want)
	}
	for _, g := range want {
		if fi, err := os.Stat(s.segName(g.id)); err != nil || fi.Size() != g.end {
			t.Errorf("segment %d: %v, want %d bytes", g.id, err, g.end)
		}
	}
}

func equalSegs(a, b []spoolSeg) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A rotation that fails (the next segment's name is taken) leaves the
// records that did not fit in front of the buffer, counted; once it can,
// the next write begins the new segment with them.
func TestSpoolSyncerPutsBackWhatAFailedRotationLeftUnwritten(t *testing.T) {
	w, s := syncerWriter(t, nil, time.Hour)
	s.segMax = segHeaderLen + 3*recCost
	obstacle := s.segName(2)
	if err := os.WriteFile(obstacle, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	appendOld(t, w, 10, 10, 10, 10, 10)
	if err := drain(w); err == nil {
		t.Fatal("the write succeeded, though the next segment could not be made")
	}
	if s.written != 3 || s.bufRecs != 2 || len(s.buf) != 2*recCost {
		t.Errorf("after the failed rotation: %d written, %d records (%d bytes) in the buffer; want 3, 2 (%d)", s.written, s.bufRecs, len(s.buf), 2*recCost)
	}
	os.Remove(obstacle)
	if err := drain(w); err != nil {
		t.Fatalf("with the name free again: %v", err)
	}
	want := []spoolSeg{{id: 1, end: segHeaderLen + 3*recCost, sealed: true}, {id: 2, end: segHeaderLen + 2*recCost}}
	if have := segEnds(s); s.written != 5 || s.bufRecs != 0 || !equalSegs(have, want) {
		t.Errorf("then: %d written, %d in the buffer, segments %+v; want 5, 0, %+v", s.written, s.bufRecs, have, want)
	}
}

// A write that fails and cannot be truncated away seals its segment:
// nothing more is appended after the torn record. The segment, read to
// its end and so behind the position saved, still stays while it is the
// only one.
func TestSpoolSyncerSealsASegmentItCouldNotTruncate(t *testing.T) {
	w, s := syncerWriter(t, nil, time.Hour)
	appendOld(t, w, 10)
	if err := drain(w); err != nil {
		t.Fatal(err)
	}
	s.wf.Close() // writes, truncates and syncs fail
	appendOld(t, w, 10)
	if err := drain(w); err == nil {
		t.Fatal("a write to a closed file succeeded")
	}
	want := []spoolSeg{{id: 1, end: segHeaderLen + recCost, sealed: true}}
	if have := segEnds(s); !equalSegs(have, want) || s.written != 1 || s.bufRecs != 1 {
		t.Errorf("segments %+v, %d written, %d in the buffer; want %+v, 1, 1", have, s.written, s.bufRecs, want)
	}
	s.marks = []spoolMark{{from: 0, to: 1, pos: spoolPos{seg: 1, off: segHeaderLen + recCost}}}
	w.stats.Written = 1
	w.saveSpoolPosition(&syncerState{}, true)
	if s.ledger.pos != (spoolPos{seg: 1, off: segHeaderLen + recCost}) {
		t.Errorf("ledger at %+v, want past the record", s.ledger.pos)
	}
	if _, err := os.Stat(s.segName(1)); err != nil || len(segEnds(s)) != 1 {
		t.Errorf("the only segment went: %v, %d segments", err, len(segEnds(s)))
	}
}

// Without a Sync waiting, what is written is synced once every has passed
// since the first write not synced; a Sync waiting has it synced at once.
func TestSpoolSyncerSyncsAfterEveryOrWhenASyncWaits(t *testing.T) {
	w, s := syncerWriter(t, nil, time.Hour)
	st := syncerState{lastLedger: time.Now()}
	appendOld(t, w, 10)
	next := w.spoolCycle(&st, false)
	if s.written != 1 || s.syncedRecs != 0 || s.dirtySince.IsZero() {
		t.Errorf("%d written, %d synced, dirty since %v; want 1, 0, now", s.written, s.syncedRecs, s.dirtySince)
	}
	if next <= 59*time.Minute || next > time.Hour {
		t.Errorf("next cycle in %v, want when the sync is due, in an hour", next)
	}
	s.mu.Lock()
	s.syncReq = 1
	s.mu.Unlock()
	next = w.spoolCycle(&st, false)
	if s.syncedRecs != 1 || !s.dirtySince.IsZero() || next != 0 {
		t.Errorf("with a Sync waiting: %d synced, dirty since %v, next cycle in %v; want 1, never, when woken", s.syncedRecs, s.dirtySince, next)
	}
}

// A write that fails is tried again after spoolRetry; the failure is
// logged once, when it begins, and the recovery once. Nothing written
// makes nothing dirty.
func TestSpoolSyncerRetriesAFailedWriteAndLogsTheStreakOnce(t *testing.T) {
	m, logged := loggingManager(t)
	w, s := syncerWriter(t, m, time.Hour)
	s.segMax = segHeaderLen + recCost + 5 // one record per segment
	st := syncerState{lastLedger: time.Now()}
	appendOld(t, w, 10)
	if err := drain(w); err != nil {
		t.Fatal(err)
	}
	s.wmu.Lock()
	err := s.syncLocked()
	s.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	obstacle := s.segName(2)
	if err := os.WriteFile(obstacle, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	appendOld(t, w, 10)
	for i := range 2 {
		if next := w.spoolCycle(&st, false); next != 250*time.Millisecond {
			t.Errorf("cycle %d failed; next in %v, want 250ms", i, next)
		}
		if s.failed == nil || !s.failing || !s.dirtySince.IsZero() || s.written != 1 {
			t.Errorf("cycle %d: failed %v, failing %v, dirty since %v, %d written; want the error, true, never, 1",
				i, s.failed, s.failing, s.dirtySince, s.written)
		}
	}
	m.log(level.InfoValue(), "test: room again") // notes are delivered in order
	os.Remove(obstacle)
	for i := range 2 {
		w.spoolCycle(&st, false)
		if s.failed != nil || s.failing || s.written != 2 {
			t.Errorf("cycle %d after: failed %v, failing %v, %d written; want nil, false, 2", i, s.failed, s.failing, s.written)
		}
	}
	out := logged()
	failed, again := `msg="spool write failed; messages stay in memory and are written again"`, `msg="spool writes again"`
	if n := strings.Count(out, failed); n != 1 {
		t.Errorf("the failure logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, again); n != 1 {
		t.Errorf("the recovery logged %d times, want once:\n%s", n, out)
	}
	iFailed, iRoom, iAgain := strings.Index(out, failed), strings.Index(out, "test: room again"), strings.Index(out, again)
	if iFailed < 0 || iFailed > iRoom || iRoom > iAgain || !strings.Contains(out[iFailed:iRoom], "file exists") {
		t.Errorf("want the failure, with its error, logged before the room came back, the recovery after:\n%s", out)
	}
}

// markAt returns the mark of record from alone, of 10 bytes, ending in
// segment seg after its k-th record.
func markAt(from uint64, seg uint64, k int64) spoolMark {
	return spoolMark{from: from, to: from + 1, pos: spoolPos{seg: seg, off: segHeaderLen + k*recCost}}
}

// The read position is saved at most once per every, the window of
// duplicates after a crash, unless space is short: the files behind it
// are half the spool, or an append waits for room. The next cycle is then
// due when the save is, if that comes before the sync.
func TestSpoolPositionIsSavedOncePerEveryUnlessSpaceIsShort(t *testing.T) {
	w, s := syncerWriter(t, nil, time.Hour)
	appendOld(t, w, 10, 10, 10)
	if err := drain(w); err != nil {
		t.Fatal(err)
	}
	s.marks = []spoolMark{markAt(0, 1, 1), markAt(1, 1, 2), markAt(2, 1, 3)}
	w.stats.Written = 1
	s.maxBytes = 2 * s.disk // half full exactly: not short
	start := s.ledger.pos
	st := syncerState{lastLedger: time.Now().Add(-30 * time.Minute)}
	next := w.spoolCycle(&st, false)
	if s.ledger.pos != start || len(s.marks) != 3 {
		t.Errorf("ledger at %+v, %d marks; want unsaved at %+v, 3", s.ledger.pos, len(s.marks), start)
	}
	if next <= 29*time.Minute || next > 30*time.Minute {
		t.Errorf("next cycle in %v, want when the save is due, in 30 minutes (the sync in an hour)", next)
	}
	room := make(chan struct{})
	s.mu.Lock()
	s.room = room // an append waits
	s.mu.Unlock()
	w.spoolCycle(&st, false)
	if want := markAt(0, 1, 1).pos; s.ledger.pos != want || len(s.marks) != 2 {
		t.Errorf("with an append waiting: ledger at %+v, %d marks; want %+v, 2", s.ledger.pos, len(s.marks), want)
	}
	select {
	case <-room:
		t.Error("no segment was removed, yet the append waiting for room was woken")
	default:
	}
}

// Saving the position trims the marks settled, those ending at the
// frontier included, and removes the segments wholly behind it, not the
// one it points into; a segment that cannot be removed is logged. While
// marks are pending the syncer looks again after every, but at least
// 10 ms; with none, when woken.
func TestSpoolPositionTrimsTheSettledMarksAndRemovesTheSegmentsBehind(t *testing.T) {
	m, logged := loggingManager(t)
	w, s := syncerWriter(t, m, 0)
	s.segMax = segHeaderLen + 2*recCost
	appendOld(t, w, 10, 10, 10, 10, 10)
	if err := drain(w); err != nil {
		t.Fatal(err)
	}
	s.marks = []spoolMark{
		{from: 0, to: 2, pos: spoolPos{seg: 1, off: segHeaderLen + 2*recCost}},
		markAt(2, 2, 1), markAt(3, 2, 2), markAt(4, 3, 1),
	}
	w.stats.Written = 3
	var st syncerState
	if d := w.saveSpoolPosition(&st, false); d != 10*time.Millisecond {
		t.Errorf("with marks pending, look again in %v, want 10ms", d)
	}
	if s.ledger.pos != markAt(2, 2, 1).pos || len(s.marks) != 2 || s.marks[0].from != 3 {
		t.Errorf("ledger at %+v, marks %+v; want %+v, from 3 on", s.ledger.pos, s.marks, markAt(2, 2, 1).pos)
	}
	if have := segEnds(s); len(have) != 2 || have[0].id != 2 {
		t.Errorf("segments %+v, want 2 and 3", have)
	}
	if _, err := os.Stat(s.segName(1)); !os.IsNotExist(err) {
		t.Errorf("segment 1: %v, want removed", err)
	}
	// Segment 2 cannot be removed: a directory with a file in it took its name.
	if err := os.Remove(s.segName(2)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.segName(2)+"/x", 0o700); err != nil {
		t.Fatal(err)
	}
	w.stats.Written = 5
	if d := w.saveSpoolPosition(&st, false); d != 0 {
		t.Errorf("with no mark pending, look again in %v, want 0", d)
	}
	if have := segEnds(s); len(s.marks) != 0 || len(have) != 1 || have[0].id != 3 || s.disk != segHeaderLen+recCost {
		t.Errorf("marks %+v, segments %+v, disk %d; want none, 3, %d", s.marks, have, s.disk, segHeaderLen+recCost)
	}
	out := logged()
	if n := strings.Count(out, `msg="spool segment not removed"`); n != 1 || !strings.Contains(out, "0000000000000002") {
		t.Errorf("logged %d segments not removed, want segment 2's alone:\n%s", n, out)
	}
}

// With nothing due, the syncer sleeps until woken: no cycle runs (a cycle
// would clear the failure recorded).
func TestSpoolSyncerSleepsWhenNothingIsDue(t *testing.T) {
	w, s := syncerWriter(t, nil, time.Hour)
	w.m.closing = make(chan struct{})
	failure := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.failed
	}
	s.failed = errors.New("before the first cycle")
	go w.runSpoolSyncer()
	defer func() {
		close(s.stop)
		<-s.synced
	}()
	wake(s.wakeSync)
	for deadline := time.Now().Add(10 * time.Second); failure() != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the syncer did not run the cycle it was woken for")
		}
	}
	idle := errors.New("recorded while the syncer sleeps")
	s.mu.Lock()
	s.failed = idle
	s.mu.Unlock()
	time.Sleep(100 * time.Millisecond) // a window in which nothing may happen
	if err := failure(); err != idle {
		t.Errorf("a cycle ran with nothing due: the failure is %v", err)
	}
}

// The syncer sleeps until the soonest of its deadlines; one of 0 or less
// is none, and none at all is 0 (until woken).
func TestSyncerSleepsUntilTheSoonerOfTwoWaits(t *testing.T) {
	for _, c := range []struct{ a, b, want time.Duration }{
		{0, 0, 0}, {5, 0, 5}, {0, 5, 5}, {3, 5, 3}, {5, 3, 3}, {4, 4, 4},
		{-1, 5, 5}, {5, -1, 5}, {-1, -2, 0}, {-1, 0, 0},
	} {
		if got := sooner(c.a, c.b); got != c.want {
			t.Errorf("sooner(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// A write cut short counts the whole records it wrote: an empty message's
// record (its header alone) included, a record cut anywhere excluded.
func TestCountRecordsCountsWholeRecordsOnly(t *testing.T) {
	data := appendRecord(appendRecord(nil, []byte("ab"), 1), nil, 2) // 22 + 20 bytes
	for _, c := range []struct {
		cut  int
		want uint64
	}{{len(data), 2}, {len(data) - 1, 1}, {22, 1}, {21, 0}, {recHeaderLen, 0}, {0, 0}} {
		if got := countRecords(data[:c.cut]); got != c.want {
			t.Errorf("the first %d of %d bytes hold %d whole records, want %d", c.cut, len(data), got, c.want)
		}
	}
}
