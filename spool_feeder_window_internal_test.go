package conn

import (
	"fmt"
	"testing"
	"time"
)

// flipTime damages the time stamp of the record at off: its header
// checksum fails, its payload's holds.
func flipTime(b []byte, off int64) { b[off+8] ^= 0x10 }

// A record whose time stamp alone is damaged is fed from the window: the
// payload's checksum covers the length it was taken over, and the time
// stamp is only OldestAge's. So is the window's last record, an empty one.
func TestSpoolFeederFeedsARecordWhoseTimeStampAloneIsDamaged(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	b, at := segmentOf(1, payloads(1, 2, 3, 0)...)
	flipTime(b, at[1])
	flipTime(b, at[3])
	seg := g.addSegment(t, 1, b)
	g.feed(t, seg)
	g.check(t, spoolPos{seg: 1, off: seg.end}, 0, 0, 0)
	if n, bytes := g.fed(); n != 4 || bytes != 6 {
		t.Errorf("fed %d messages (%d bytes), want 4 (6)", n, bytes)
	}
	if got := g.damages(); len(got) != 0 {
		t.Errorf("damage reported %q, want none", got)
	}
}

// A record across the window's end is read alone, whole, also when it
// ends the segment; the window then holds what follows it, and a record
// alone in it is fed from it (an empty one, its time stamp damaged, as
// above).
func TestSpoolFeederFeedsRecordsAcrossTheWindowsEnd(t *testing.T) {
	g := newFeederRig(t, 4<<20)
	sizes := make([]int, 255, 257)
	for i := range sizes {
		sizes[i] = 1000
	}
	sizes = append(sizes, 10000) // from 260116 to 270136: across the first window's end, 262144
	last, at := segmentOf(1, payloads(sizes...)...)
	if at[len(sizes)-1] >= spoolReadSize || at[len(sizes)] <= spoolReadSize {
		t.Fatalf("the last record, %d to %d, is not across the window's end", at[len(sizes)-1], at[len(sizes)])
	}
	after, at2 := segmentOf(1, payloads(append(sizes, 0)...)...)
	flipTime(after, at2[len(sizes)])
	seg1, seg2 := g.addSegment(t, 1, last), g.addSegment(t, 2, after)
	g.feed(t, seg1)
	g.check(t, spoolPos{seg: 1, off: seg1.end}, seg2.end-segHeaderLen, 0, 0)
	g.feed(t, seg2)
	g.check(t, spoolPos{seg: 2, off: seg2.end}, 0, 0, 0)
	if n, bytes := g.fed(); n != 2*256+1 || bytes != 2*sum(sizes...) {
		t.Errorf("fed %d messages (%d bytes), want %d (%d)", n, bytes, 2*256+1, 2*sum(sizes...))
	}
	if got := g.damages(); len(got) != 0 {
		t.Errorf("damage reported %q, want none", got)
	}
}

// The whole records of a window are counted, and their room in memory
// taken, before the first of them is put: each record then costs no
// atomic operation of its own. Seen when the feeder publishes after
// feedPublish records, held there by the marks' lock.
func TestSpoolFeederTakesAWindowsRecordsAheadOfPuttingThem(t *testing.T) {
	g := newFeederRig(t, 1<<20)
	sizes := make([]int, 300)
	for i := range sizes[:299] {
		sizes[i] = i%7 + 1
	}
	b, _ := segmentOf(1, payloads(sizes...)...) // the last one empty, at the window's end
	seg := g.addSegment(t, 1, b)
	s := g.s
	total, room := sum(sizes...), int64(sum(sizes...))+300*MessageOverhead
	counts := func() string {
		return fmt.Sprintf("feeding %d (%d bytes), room taken %d", s.feeding.Load(), s.feedingB.Load(), g.w.q.used.Load())
	}
	want := fmt.Sprintf("feeding %d (%d bytes), room taken %d", 300, total, room)

	s.marksMu.Lock()
	held := true
	release := func() {
		if held {
			held = false
			s.marksMu.Unlock()
		}
	}
	defer release()
	done := make(chan bool, 1)
	go func() {
		var r segReader
		defer r.close()
		done <- g.w.feedSegment(&r, seg)
	}()
	for deadline := time.Now().Add(10 * time.Second); s.fedNew.Load() < feedPublish; {
		if time.Now().After(deadline) {
			release()
			t.Fatalf("the feeder put %d records in 10 s, want %d before it publishes", s.fedNew.Load(), feedPublish)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if got := counts(); got != want || s.fedNew.Load() != feedPublish {
		t.Errorf("with %d of the window's 300 records put: %s; want %s", s.fedNew.Load(), got, want)
	}
	release()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("feedSegment stopped the feeder")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("feedSegment did not return in 10 s")
	}
	if got := counts(); got != want || s.fedNew.Load() != 300 {
		t.Errorf("at the end, with %d put: %s; want %s", s.fedNew.Load(), got, want)
	}
	if n, bytes := g.fed(); n != 300 || bytes != total {
		t.Errorf("fed %d messages (%d bytes), want 300 (%d)", n, bytes, total)
	}
}
