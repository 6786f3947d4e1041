package conn

import (
	"errors"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// openBareSpool opens a spool of maxBytes in a new directory, with a
// memory buffer of 1 MiB (a spool buffer, bufMax, of 256 KiB), and no
// syncer or feeder: the test calls the functions they would. The
// BatchWriter holds only the spool and its options.
func openBareSpool(t *testing.T, maxBytes int64, opts ...BatchOption) (*BatchWriter, *spool) {
	t.Helper()
	cfg := batchConfig{size: 1 << 20, spool: true, spoolDir: t.TempDir(), spoolMax: maxBytes}
	for _, o := range opts {
		o.applyBatch(&cfg)
	}
	s, err := openSpool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.wf.Close()
		s.release()
	})
	return &BatchWriter{cfg: cfg, spool: s}, s
}

// appendPayload appends a message of n bytes (a record of n+20).
func appendPayload(t *testing.T, w *BatchWriter, n int) {
	t.Helper()
	if err := w.spoolAppend(make([]byte, n)); err != nil {
		t.Fatalf("append of %d bytes: %v", n, err)
	}
}

// bufStamps returns the time stamps of the records in the spool's buffer.
func bufStamps(s *spool) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for data := s.buf; len(data) >= recHeaderLen; {
		h := peekHead(data)
		out = append(out, h.time)
		data = data[recordCost(h.n):]
	}
	return out
}

// woken empties the syncer's wake channel and says whether it held a nudge.
func woken(s *spool) bool {
	select {
	case <-s.wakeSync:
		return true
	default:
		return false
	}
}

// A spool of 1000 bytes has segments of 500 (half of it).
func TestSpoolAppendProjectsTheSegmentsItsBufferBegins(t *testing.T) {
	w, s := openBareSpool(t, 1000)
	if s.segMax != 500 || s.projEnd != segHeaderLen || s.projRot != 0 {
		t.Fatalf("segMax %d, projEnd %d, projRot %d; want 500, 16, 0", s.segMax, s.projEnd, s.projRot)
	}
	steps := []struct {
		payload       int
		projEnd, rots int64
	}{
		{80, 116, 0},  // 16 + 100
		{364, 500, 0}, // exactly the segment's bound: it still fits
		{0, 36, 1},    // one byte past it: a new segment, its header and the record
	}
	for _, st := range steps {
		appendPayload(t, w, st.payload)
		s.mu.Lock()
		end, rot := s.projEnd, s.projRot
		s.projectLocked() // writeOut's rule, from the buffer
		s.mu.Unlock()
		if end != st.projEnd || rot != st.rots || s.projEnd != end || s.projRot != rot {
			t.Fatalf("after a record of %d bytes: projEnd %d, projRot %d (projectLocked: %d, %d); want %d, %d",
				st.payload, end, rot, s.projEnd, s.projRot, st.projEnd, st.rots)
		}
	}
}

func TestSpoolAppendCountsTheHeaderOfTheSegmentARecordBegins(t *testing.T) {
	w, s := openBareSpool(t, 1000)
	appendPayload(t, w, 80)
	appendPayload(t, w, 364) // the segment holds its 500 bytes
	// The next record begins a segment: 500 + 485 + its 16-byte header
	// would be 1001.
	if err := w.spoolAppend(make([]byte, 465)); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("a record that fits only without the new segment's header: %v, want ErrSpoolFull", err)
	}
	appendPayload(t, w, 464) // 1000: fits, header included
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disk != 984 || s.projRot != 1 || s.projEnd != 500 {
		t.Errorf("disk %d, projRot %d, projEnd %d; want 984 (the header is counted once written), 1, 500", s.disk, s.projRot, s.projEnd)
	}
}

func TestSpoolAppendCountsTheSegmentsAWriteUnderWayBegins(t *testing.T) {
	w, s := openBareSpool(t, 1000)
	s.mu.Lock()
	s.rotInFlight = 1 // as drainLocked leaves it while its write begins a segment
	s.mu.Unlock()
	// 16 + 969 + the segment the write under way begins would be 1001.
	if err := w.spoolAppend(make([]byte, 949)); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("a record that fits only without the segment being begun: %v, want ErrSpoolFull", err)
	}
	appendPayload(t, w, 948)
}

func TestSpoolAppendKeepsTheBufferWithinItsBound(t *testing.T) {
	w, s := openBareSpool(t, 4<<20)
	if s.bufMax != 256<<10 {
		t.Fatalf("bufMax %d, want 256 KiB", s.bufMax)
	}
	appendPayload(t, w, 200000-recHeaderLen)
	appendPayload(t, w, s.bufMax-200000-recHeaderLen) // exactly full: still in the buffer
	s.mu.Lock()
	full, end := len(s.buf), s.segs[len(s.segs)-1].end
	s.mu.Unlock()
	if full != s.bufMax || end != segHeaderLen {
		t.Fatalf("buffer %d bytes, file %d; want %d, %d: nothing written before the buffer is past full", full, end, s.bufMax, segHeaderLen)
	}
	appendPayload(t, w, 0) // past full: the append writes the buffer out first
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) != recHeaderLen || s.bufRecs != 1 || s.written != 2 || s.segs[len(s.segs)-1].end != segHeaderLen+int64(s.bufMax) {
		t.Errorf("buffer %d bytes (%d records), %d written, file %d; want 20 (1), 2, %d",
			len(s.buf), s.bufRecs, s.written, s.segs[len(s.segs)-1].end, segHeaderLen+s.bufMax)
	}
}

func TestSpoolAppendStampsRecordsWithAClockReadingReused(t *testing.T) {
	w, s := openBareSpool(t, 1<<20)
	const old = 12345 // a stamp the clock never gives
	s.mu.Lock()
	s.stamp = old
	s.mu.Unlock()
	before := time.Now().UnixNano()
	appendPayload(t, w, 10) // the first of the buffer: the clock is read
	after := time.Now().UnixNano()
	s.mu.Lock()
	first := s.stamp
	if first < before || first > after || s.stampUses != 1 || s.bufRecs != 1 || s.bufSince != first || s.headTime != first {
		t.Fatalf("stamp %d (uses %d), bufRecs %d, bufSince %d, headTime %d; want a reading in [%d, %d], 1, 1, it, it",
			first, s.stampUses, s.bufRecs, s.bufSince, s.headTime, before, after)
	}
	s.stamp = old // as if that reading were old
	s.mu.Unlock()
	appendPayload(t, w, 10) // the buffer holds one: the reading is reused
	if got := bufStamps(s); len(got) != 2 || got[0] != first || got[1] != old {
		t.Fatalf("stamps %v, want [%d %d]", got, first, old)
	}
	s.mu.Lock()
	if s.stampUses != 2 || s.bufRecs != 2 || s.bufSince != first || s.headTime != first {
		t.Fatalf("uses %d, bufRecs %d, bufSince %d, headTime %d; want 2, 2, %d, %d: the second record changes neither",
			s.stampUses, s.bufRecs, s.bufSince, s.headTime, first, first)
	}
	s.stampUses = stampReuse - 1
	s.mu.Unlock()
	appendPayload(t, w, 10) // the 256th use of the reading
	s.mu.Lock()
	if s.stamp != old || s.stampUses != stampReuse {
		t.Fatalf("stamp %d, uses %d; want %d reused a %dth time", s.stamp, s.stampUses, old, stampReuse)
	}
	s.mu.Unlock()
	before = time.Now().UnixNano()
	appendPayload(t, w, 10) // the 257th: read again
	after = time.Now().UnixNano()
	got := bufStamps(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if last := got[len(got)-1]; last < before || last > after || s.stampUses != 1 {
		t.Errorf("stamp %d, uses %d; want a reading in [%d, %d], 1", last, s.stampUses, before, after)
	}
}

func TestSpoolAppendWakesTheSyncerWhenTheBufferReachesABatch(t *testing.T) {
	w, s := openBareSpool(t, 1<<20)
	appendPayload(t, w, spoolWriteBatch-1020-recHeaderLen)
	if !woken(s) {
		t.Fatal("the first record of the buffer did not wake the syncer (its linger begins)")
	}
	appendPayload(t, w, 1000) // the buffer holds exactly spoolWriteBatch
	if !woken(s) {
		t.Fatal("the record that made a batch did not wake the syncer")
	}
	appendPayload(t, w, 0)
	if woken(s) {
		t.Error("a record after the batch woke the syncer again")
	}
}

func TestSpoolAppendRefusesAtOnceWhenFullAndNotWaiting(t *testing.T) {
	w, s := openBareSpool(t, 1000)
	appendPayload(t, w, 1000-segHeaderLen-recHeaderLen)
	woken(s)
	if err := w.spoolAppend(nil); err != ErrSpoolFull {
		t.Fatalf("append to a full spool: %v, want ErrSpoolFull", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.room != nil {
		t.Error("a refusal that does not wait announced a wait for room")
	}
	if len(s.wakeSync) != 0 {
		t.Error("a refusal that does not wait woke the syncer to free files")
	}
}

func TestSpoolAppendWaitsSpoolStallForAWriteUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, s := openBareSpool(t, 4<<20)
		appendPayload(t, w, s.bufMax-recHeaderLen) // the buffer is full
		s.wmu.Lock()                               // a write is under way
		done := make(chan error, 1)
		go func() { done <- w.spoolAppend(nil) }()
		returned := func() bool {
			synctest.Wait()
			select {
			case err := <-done:
				if err != ErrSpoolFull {
					t.Errorf("append: %v, want ErrSpoolFull", err)
				}
				return true
			default:
				return false
			}
		}
		if returned() {
			t.Fatal("the append did not wait for the write under way")
		}
		time.Sleep(spoolStall - time.Nanosecond)
		if returned() {
			t.Fatal("the append gave up before spoolStall")
		}
		time.Sleep(time.Nanosecond)
		if !returned() {
			t.Fatal("the append still waits at spoolStall")
		}
		s.wmu.Unlock()
	})
}

// A write that fails (the file is closed) leaves the records in the
// buffer, and the append gives up after spoolStall.
func TestSpoolAppendGivesUpWhenItsOwnWriteFails(t *testing.T) {
	w, s := openBareSpool(t, 4<<20)
	appendPayload(t, w, s.bufMax-recHeaderLen)
	s.wmu.Lock()
	s.failing = true // already logged (the BatchWriter has no Manager to log with)
	s.wf.Close()
	s.wmu.Unlock()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.spoolAppend(nil) }()
	select {
	case err := <-done:
		if err != ErrSpoolFull {
			t.Fatalf("append: %v, want ErrSpoolFull", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the append still retries its failing write after 20s")
	}
	if d := time.Since(start); d < spoolStall {
		t.Errorf("gave up after %v, before spoolStall", d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !errors.Is(s.failed, os.ErrClosed) || len(s.buf) != s.bufMax || s.bufRecs != 1 || s.written != 0 {
		t.Errorf("failed %v, buffer %d bytes (%d records), %d written; want os.ErrClosed, %d (1), 0", s.failed, len(s.buf), s.bufRecs, s.written, s.bufMax)
	}
}

func TestSpoolProjectionFollowsWriteOutsRule(t *testing.T) {
	records := func(payloads ...int) []byte {
		var b []byte
		for _, n := range payloads {
			b = appendRecord(b, make([]byte, n), 1)
		}
		return b
	}
	cases := []struct {
		name     string
		end      int64
		payloads []int
		projEnd  int64
		rots     int64
	}{
		{"a record longer than a segment goes in an empty one", 16, []int{180}, 216, 0},
		{"records filling a segment exactly", 16, []int{20, 24}, 100, 0},
		{"a record past the bound begins a segment", 16, []int{20, 30}, 66, 1},
		{"a record past the bound of a segment begun before", 90, []int{0}, 36, 1},
		{"an empty record", 16, []int{0}, 36, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &spool{segMax: 100, segs: []spoolSeg{{id: 1, end: c.end}}, buf: records(c.payloads...)}
			s.projectLocked()
			if s.projEnd != c.projEnd || s.projRot != c.rots {
				t.Errorf("projEnd %d, projRot %d; want %d, %d", s.projEnd, s.projRot, c.projEnd, c.rots)
			}
		})
	}
}

func TestSpoolLingerEndsWithABatchASyncOrClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		small := make([]byte, 100)
		cases := []struct {
			name string
			set  func(s *spool)
			want time.Duration
		}{
			{"an empty buffer", func(s *spool) { s.buf = nil }, 0},
			{"a record", func(s *spool) {}, spoolLinger},
			{"a batch", func(s *spool) { s.buf = make([]byte, spoolWriteBatch) }, 0},
			{"a batch less a byte", func(s *spool) { s.buf = make([]byte, spoolWriteBatch-1) }, spoolLinger},
			{"a Sync waiting", func(s *spool) { s.syncReq, s.syncedRecs = 2, 1 }, 0},
			{"a Sync served", func(s *spool) { s.syncReq, s.syncedRecs = 1, 1 }, spoolLinger},
			{"Close", func(s *spool) { s.noAppends = true }, 0},
		}
		for _, c := range cases {
			s := &spool{buf: small, bufSince: time.Now().UnixNano()}
			c.set(s)
			if got := s.lingerLeft(); got != c.want {
				t.Errorf("%s: linger %v, want %v", c.name, got, c.want)
			}
		}
		s := &spool{buf: small, bufSince: time.Now().UnixNano()}
		time.Sleep(spoolLinger / 4)
		if got := s.lingerLeft(); got != spoolLinger*3/4 {
			t.Errorf("a quarter of the linger later: %v left, want %v", got, spoolLinger*3/4)
		}
		time.Sleep(spoolLinger)
		if got := s.lingerLeft(); got != 0 {
			t.Errorf("past the linger: %v left, want 0", got)
		}
	})
}

func TestSpoolMaxRecordLeavesRoomForBothHeaders(t *testing.T) {
	if got := (&spool{maxBytes: 1000}).maxRecord(); got != 1000-SpoolSegmentOverhead-SpoolRecordOverhead {
		t.Errorf("maxRecord of a 1000-byte spool: %d, want 964", got)
	}
	if got := (&spool{maxBytes: 1 << 40}).maxRecord(); got != 1<<32-1 {
		t.Errorf("maxRecord of a 1 TiB spool: %d, want the record format's bound %d", got, int64(1<<32-1))
	}
}
