package conn

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"
)

// writeSegment writes segment id of dir: a header, then a record of each
// payload length, stamped 100, 200, ... Records cost 20 bytes more.
func writeSegment(t *testing.T, dir string, id uint64, payloads ...int) {
	t.Helper()
	b := segmentHeader()
	for i, n := range payloads {
		b = appendRecord(b, make([]byte, n), int64(100*(i+1)))
	}
	if err := os.WriteFile((&spool{dir: dir}).segName(id), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// saveLedger makes the ledger of dir point at pos.
func saveLedger(t *testing.T, dir string, pos spoolPos) {
	t.Helper()
	l, err := openLedger(dir, pos)
	if err != nil {
		t.Fatal(err)
	}
	if l.pos != pos {
		if err := l.write(pos); err != nil {
			t.Fatal(err)
		}
	}
	l.f.Close()
}

// reopenSpool opens the spool of dir, with nothing running, and closes it
// at the end of the test.
func reopenSpool(t *testing.T, dir string) *spool {
	t.Helper()
	s, err := openSpool(batchConfig{size: 1 << 20, spool: true, spoolDir: dir, spoolMax: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.wf.Close()
		s.release()
	})
	return s
}

func TestSpoolOpenCountsWhatFollowsTheSavedPosition(t *testing.T) {
	// Segment 1: records of 30, 40 and 50 bytes (16 to 136); segment 2:
	// one of 30.
	cases := []struct {
		name     string
		pos      spoolPos
		pending  int64
		headTime int64
	}{
		{"at the first record", spoolPos{1, 16}, 150, 100},
		{"after the first record", spoolPos{1, 46}, 120, 200},
		{"at the end of the first segment", spoolPos{1, 136}, 30, 0},
		{"past the end of the first segment, cut", spoolPos{1, 150}, 30, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSegment(t, dir, 1, 10, 20, 30)
			writeSegment(t, dir, 2, 10)
			saveLedger(t, dir, c.pos)
			s := reopenSpool(t, dir)
			s.mu.Lock()
			read, pending, headTime := s.read, s.pendingRecB, s.headTime
			s.mu.Unlock()
			if read != c.pos || pending != c.pending || headTime != c.headTime {
				t.Errorf("read %v, pending %d bytes, headTime %d; want %v, %d, %d", read, pending, headTime, c.pos, c.pending, c.headTime)
			}
			if st := s.stats(); st.Bytes != c.pending || st.Files != 3 || st.DiskBytes != 136+46+16 {
				t.Errorf("stats %+v: want %d bytes, 3 files, %d on disk", st, c.pending, 136+46+16)
			}
		})
	}
}

func TestSpoolOpenRemovesTheSegmentsBehindTheSavedPosition(t *testing.T) {
	dir := t.TempDir()
	writeSegment(t, dir, 1, 10)
	writeSegment(t, dir, 2, 10, 20)
	saveLedger(t, dir, spoolPos{2, 46}) // segment 1 delivered, its removal cut short
	s := reopenSpool(t, dir)
	if _, err := os.Stat(s.segName(1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("segment 1, behind the position: %v, want it removed", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.segs) != 2 || s.segs[0].id != 2 || s.segs[1].id != 3 || s.pendingRecB != 40 || s.disk != 16+30+40+16 {
		t.Errorf("segments %+v, pending %d, disk %d; want 2 and 3, 40, %d", s.segs, s.pendingRecB, s.disk, 16+30+40+16)
	}
}

func TestSpoolOpenWithNothingToSendPointsTheLedgerAtItsNewSegment(t *testing.T) {
	dir := t.TempDir()
	first, err := openSpool(batchConfig{size: 1 << 20, spool: true, spoolDir: dir, spoolMax: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	first.wf.Close()
	first.release()
	s := reopenSpool(t, dir)
	want := spoolPos{2, segHeaderLen}
	if s.ledger.pos != want || s.read != want || len(s.segs) != 1 || s.segs[0].id != 2 || s.disk != segHeaderLen {
		t.Errorf("ledger %v, read %v, segments %+v, disk %d; want %v, %v, only 2, 16", s.ledger.pos, s.read, s.segs, s.disk, want, want)
	}
	if _, err := os.Stat(s.segName(1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("segment 1, empty: %v, want it removed", err)
	}
	l, err := openLedger(dir, spoolPos{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.f.Close()
	if l.pos != want {
		t.Errorf("the ledger on disk points at %v, want %v", l.pos, want)
	}
}

func TestCheckSegmentReadsTheHeaderOfAFileWithNoRecords(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "seg")
	newer := segmentHeader()
	binary.LittleEndian.PutUint32(newer[8:], spoolVersion+1)
	binary.LittleEndian.PutUint32(newer[12:], crc32c(newer[:12]))
	cases := []struct {
		name    string
		content []byte
		size    int64
		err     error
	}{
		{"a header of a newer format", newer, 0, ErrSpoolVersion},
		{"a header", segmentHeader(), segHeaderLen, nil},
		{"a header cut short", segmentHeader()[:segHeaderLen-1], segHeaderLen, nil},
		{"nothing", nil, segHeaderLen, nil},
	}
	for _, c := range cases {
		if err := os.WriteFile(name, c.content, 0o600); err != nil {
			t.Fatal(err)
		}
		size, err := checkSegment(name)
		if size != c.size || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%s: size %d, %v; want %d, %v", c.name, size, err, c.size, c.err)
		}
	}
}

func TestSpoolBufferBoundIsAQuarterOfTheMemoryBuffer(t *testing.T) {
	for _, c := range []struct{ size, bufMax int }{
		{1 << 20, 256 << 10}, // at least 256 KiB
		{4 << 20, 1 << 20},
		{64 << 20, 4 << 20}, // at most 4 MiB
	} {
		_, s := openBareSpool(t, 1<<20, WithBufferSize(c.size))
		if s.bufMax != c.bufMax {
			t.Errorf("memory buffer %d: spool buffer %d, want %d", c.size, s.bufMax, c.bufMax)
		}
	}
}

func TestWithSpoolTakesAGiBForABoundBelowOne(t *testing.T) {
	for _, c := range []struct{ maxBytes, want int64 }{{1, 1}, {0, 1 << 30}, {-1, 1 << 30}} {
		var cfg batchConfig
		WithSpool("dir", c.maxBytes).applyBatch(&cfg)
		if cfg.spoolMax != c.want {
			t.Errorf("WithSpool(dir, %d): bound %d, want %d", c.maxBytes, cfg.spoolMax, c.want)
		}
	}
}

func TestSpoolStatsAgeTheOldestRecordHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		then := time.Now().Add(-5 * time.Second).UnixNano()
		cases := []struct {
			name     string
			pending  int64
			headTime int64
			want     time.Duration
		}{
			{"a record stamped 5s ago", 30, then, 5 * time.Second},
			{"nothing held", 0, then, 0},
			{"a record whose stamp is unknown", 30, 0, 0},
		}
		for _, c := range cases {
			s := &spool{pendingRecB: c.pending, headTime: c.headTime}
			if got := s.stats().OldestAge; got != c.want {
				t.Errorf("%s: OldestAge %v, want %v", c.name, got, c.want)
			}
		}
	})
}

// Records fed from the spool in three runs: sequence numbers [0, 3) of 30
// bytes, [3, 5) of 40 (20 each), [7, 10) of 60.
func TestSpoolUnsettledCountsTheFedRecordsFromTheFrontierOn(t *testing.T) {
	s := &spool{marks: []spoolMark{
		{from: 0, to: 3, fromB: 0, toB: 30},
		{from: 3, to: 5, fromB: 30, toB: 70},
		{from: 7, to: 10, fromB: 100, toB: 160},
	}}
	cases := []struct {
		frontier, settledB uint64
		n, b               uint64
	}{
		{0, 0, 8, 130},
		{4, 50, 4, 80}, // inside the second run
		{5, 70, 3, 60},
		{8, 120, 2, 40}, // inside the third
		{10, 160, 0, 0},
	}
	for _, c := range cases {
		if n, b := s.unsettled(c.frontier, c.settledB); n != c.n || b != c.b {
			t.Errorf("from %d (%d bytes before): %d records, %d bytes; want %d, %d", c.frontier, c.settledB, n, b, c.n, c.b)
		}
	}
}

func TestSpoolFailedErrIsTheLatestFailureOrFull(t *testing.T) {
	s := &spool{}
	if err := s.failedErr(); err != ErrSpoolFull {
		t.Errorf("with no failure: %v, want ErrSpoolFull", err)
	}
	failure := errors.New("disk on fire")
	s.failed = failure
	if err := s.failedErr(); err != failure {
		t.Errorf("after a failure: %v, want it", err)
	}
}
