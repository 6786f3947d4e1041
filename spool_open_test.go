package conn_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// segmentFiles lists the files of dir named as the spool names its
// segments.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "seg-????????????????.spool"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// writeLedgerAt writes a ledger whose two slots point at offset off of
// segment seg (the layout in spoolledger.go).
func writeLedgerAt(t *testing.T, dir string, seg, off uint64) {
	t.Helper()
	b := make([]byte, 128)
	for slot := range 2 {
		s := b[slot*64:]
		copy(s, "CONNLEDG")
		binary.LittleEndian.PutUint32(s[8:], 1)
		binary.LittleEndian.PutUint64(s[12:], uint64(100+slot))
		binary.LittleEndian.PutUint64(s[20:], seg)
		binary.LittleEndian.PutUint64(s[28:], off)
		binary.LittleEndian.PutUint32(s[36:], crc32c(s[:36]))
	}
	if err := os.WriteFile(filepath.Join(dir, "ledger"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Every open makes a segment; an open with nothing to send must remove
// those of earlier lives, or each idle open leaves one more behind and
// they fill maxBytes with nothing in them.
func TestSpoolIdleOpensLeaveNoEmptySegmentsBehind(t *testing.T) {
	dir := t.TempDir()
	m := newFake(t, &fakeNet{})
	for range 10 {
		w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 100))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if segs := segmentFiles(t, dir); len(segs) > 1 {
		t.Errorf("after 10 idle opens, %d segment files, want at most 1: %v", len(segs), segs)
	}
	down := newFake(t, &fakeNet{dialErr: errors.New("down")})
	w, err := conn.OpenBatchWriter(down, conn.WithSpool(dir, 100), conn.WithDurableSpool(0), conn.WithCloseTimeout(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("x")); err != nil {
		st := w.Stats().Spool
		t.Errorf("a 1-byte Write into an empty 100-byte spool: %v, want it accepted (DiskBytes %d, Files %d)", err, st.DiskBytes, st.Files)
	}
}

// A crash can leave the ledger missing, or empty or cut short as it was
// made: the spool must open and send every segment it holds, as the
// error for a damaged ledger promises.
func TestSpoolWithALedgerMissingEmptyOrCutShortSendsEverySegment(t *testing.T) {
	cases := []struct {
		name   string
		lines  []string
		ledger func(t *testing.T, name string) error
	}{
		{"removed", spoolLines(0, 100), func(t *testing.T, name string) error { return os.Remove(name) }},
		{"zero-length", spoolLines(0, 100), func(t *testing.T, name string) error { return os.Truncate(name, 0) }},
		{"cut short in its first slot", spoolLines(0, 100), func(t *testing.T, name string) error { return os.Truncate(name, 20) }},
		{"zero-length with no segment", nil, func(t *testing.T, name string) error { return os.WriteFile(name, nil, 0o600) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.lines != nil {
				spoolToDisk(t, dir, 0, c.lines)
			}
			if err := c.ledger(t, filepath.Join(dir, "ledger")); err != nil {
				t.Fatal(err)
			}
			want := strings.Join(c.lines, "")
			if got, st, _, _ := deliverSpool(t, dir, 0); got != want {
				t.Fatalf("delivered %d bytes, want every segment's %d; spool %+v", len(got), len(want), st.Spool)
			}
			// The ledger is whole again: nothing is sent twice.
			if got, _, _, _ := deliverSpool(t, dir, 0); got != "" {
				t.Errorf("the next open sent %d bytes again, want none", len(got))
			}
		})
	}
}

// Only the spool's own spelling of a segment name is one of its files.
// Another spelling of an id must neither fail the open (it opened the
// canonical name) nor be read as a second copy of a segment (the feeder
// sent its records again and again), and it is left where it is.
func TestSpoolIgnoresFilesNotSpelledAsItsSegments(t *testing.T) {
	for _, stray := range []string{
		"seg-000000000000000A.spool",  // upper case
		"seg-1.spool",                 // short
		"seg-00000000000000001.spool", // long
	} {
		t.Run(stray, func(t *testing.T) {
			dir := t.TempDir()
			lines := spoolLines(0, 10)
			spoolToDisk(t, dir, 0, lines)
			if err := os.WriteFile(filepath.Join(dir, stray), []byte("junk"), 0o600); err != nil {
				t.Fatal(err)
			}
			f := &fakeNet{}
			w, err := conn.OpenBatchWriter(newFake(t, f), conn.WithSpool(dir, 0))
			if err != nil {
				t.Fatalf("open with a stray %s: %v, want it ignored", stray, err)
			}
			defer w.Close()
			flushWithin(t, w, 5*time.Second)
			time.Sleep(20 * time.Millisecond) // a segment read twice would send more meanwhile
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := received(f), strings.Join(lines, ""); got != want {
				t.Errorf("delivered %d bytes, want the %d spooled once; Recovered %d", len(got), len(want), w.Stats().Spool.Recovered)
			}
			if b, err := os.ReadFile(filepath.Join(dir, stray)); err != nil || string(b) != "junk" {
				t.Errorf("the stray file: %q, %v, want it untouched", b, err)
			}
		})
	}
}

// A ledger past the end of its segment, an empty and a headless segment
// after the last, files the spool did not write: the open sends what
// follows the ledger, calls none of it damaged, leaves the other files
// alone, and the next idle open keeps a single segment.
func TestSpoolOpensADirectoryWithOddFiles(t *testing.T) {
	dir := t.TempDir()
	spoolToDisk(t, dir, 512<<10, spoolLines(0, 6000))
	recs := spoolRecords(t, dir)
	files := map[string]bool{}
	for _, r := range recs {
		files[r.file] = true
	}
	if len(files) < 3 {
		t.Fatalf("%d segment files, want at least 3", len(files))
	}
	writeLedgerAt(t, dir, 1, 1<<40) // segment 1 was delivered
	others := map[string]string{"seg-zz.spool": "x", "notes.txt": "y"}
	for name, data := range others {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	empty := filepath.Join(dir, fmt.Sprintf("seg-%016x.spool", len(files)+5))
	headless := filepath.Join(dir, fmt.Sprintf("seg-%016x.spool", len(files)+6))
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(headless, make([]byte, 10), 0o600); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, r := range recs {
		if r.file != recs[0].file {
			want.WriteString(r.payload)
		}
	}
	got, st, _, _ := deliverSpool(t, dir, 512<<10)
	if got != want.String() {
		t.Errorf("delivered %d bytes, want the %d after the ledger; spool %+v", len(got), want.Len(), st.Spool)
	}
	if st.Spool.Damaged != 0 {
		t.Errorf("Damaged %d, want 0: a segment too short for its header is one a crash cut as it was made", st.Spool.Damaged)
	}
	if got, _, _, _ = deliverSpool(t, dir, 512<<10); got != "" {
		t.Errorf("the next open sent %d bytes, want none", len(got))
	}
	if segs := segmentFiles(t, dir); len(segs) != 1 {
		t.Errorf("after an idle open, segment files %v, want one", segs)
	}
	for name, data := range others {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != data {
			t.Errorf("%s: %q, %v, want it untouched", name, b, err)
		}
	}
}

// A spool found full at open must make room as it delivers: the syncer,
// which alone removes delivered segments, was woken only by appends, and
// every append waited for room.
func TestSpoolFullAtOpenTakesWritesOnceDelivered(t *testing.T) {
	const maxBytes = 100 << 10
	dir := t.TempDir()
	line := []byte(strings.Repeat("y", 999) + "\n")
	w0, err := conn.OpenBatchWriter(newFake(t, &fakeNet{dialErr: errors.New("down")}), conn.WithSpool(dir, maxBytes), conn.WithDurableSpool(0),
		conn.WithCloseTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; n < 1000; n++ {
		if _, err := w0.Write(line); err != nil {
			break
		}
	}
	w0.Close()
	if n == 1000 {
		t.Fatalf("a %d-byte spool took all %d messages of %d bytes, want it full before", maxBytes, n, len(line))
	}

	f := &fakeNet{}
	w, err := conn.OpenBatchWriter(newFake(t, f), conn.WithSpool(dir, maxBytes), conn.WithDurableSpool(0), conn.WithWaitWhenFull(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	flushWithin(t, w, 10*time.Second)
	if got := len(received(f)); got != n*len(line) {
		t.Fatalf("delivered %d bytes, want the %d spooled", got, n*len(line))
	}
	if _, err := w.Write(line); err != nil {
		st := w.Stats().Spool
		t.Errorf("Write after all %d spooled messages were delivered: %v, want it accepted; DiskBytes %d of %d, Files %d", n, err, st.DiskBytes, maxBytes, st.Files)
	}
}

// Replaying a recovered spool with no Write coming must still move the
// ledger and remove the delivered segments, not wait for Close: a crash
// would send it all again.
func TestSpoolReplayMovesTheLedgerWithoutWrites(t *testing.T) {
	dir := t.TempDir()
	lines := spoolLines(0, 6000)
	spoolToDisk(t, dir, 512<<10, lines)
	ledger := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "ledger"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := ledger()
	f := &fakeNet{}
	w, err := conn.OpenBatchWriter(newFake(t, f), conn.WithSpool(dir, 512<<10), conn.WithDurableSpool(0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	flushWithin(t, w, 20*time.Second)
	if got, want := received(f), strings.Join(lines, ""); got != want {
		t.Fatalf("delivered %d bytes, want %d", len(got), len(want))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		moved, segs := ledger() != before, segmentFiles(t, dir)
		if moved && len(segs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after all %d recovered messages were delivered: ledger moved %v, segment files %v, want it moved and one left; stats %+v", len(lines), moved, segs, w.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
