package conn

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// segmentOf returns the bytes of a segment file holding records of the
// payloads, stamped at t, and where each record begins; the last entry is
// the file's end.
func segmentOf(t int64, payloads ...[]byte) ([]byte, []int64) {
	b := segmentHeader()
	at := make([]int64, 0, len(payloads)+1)
	for _, p := range payloads {
		at = append(at, int64(len(b)))
		b = appendRecord(b, p, t)
	}
	return b, append(at, int64(len(b)))
}

// patterned returns n bytes that differ from their neighbours, seeded by
// seed: a misplaced slice of them does not compare equal.
func patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i%251) + seed
	}
	return b
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// openReader opens a segReader on name with limit, closed with the test.
func openReader(t *testing.T, name string, limit int64) *segReader {
	t.Helper()
	r := &segReader{}
	if err := r.open(name, limit); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

// The reader gives the bytes at an offset, no more than the file holds
// nor past the limit, and keeps what it read as its window.
func TestSegReaderReadsWithinTheFileAndTheLimit(t *testing.T) {
	name := filepath.Join(t.TempDir(), "seg")
	file := patterned(1000, 1)
	writeFile(t, name, file[:100])
	r := openReader(t, name, 1000) // the file ends before the limit

	if got := r.bytesAt(0, 10); !bytes.Equal(got, file[:10]) {
		t.Fatalf("bytesAt(0, 10) = %v", got)
	}
	if got := r.buffered(0); !bytes.Equal(got, file[:100]) {
		t.Fatalf("buffered(0): %d bytes, want the 100 the file holds", len(got))
	}
	if got := r.buffered(40); !bytes.Equal(got, file[40:100]) {
		t.Fatalf("buffered(40): %d bytes, want 60", len(got))
	}
	if got := r.buffered(100); got != nil {
		t.Fatalf("buffered at the window's end = %v, want nil", got)
	}
	if got := r.bytesAt(90, 50); !bytes.Equal(got, file[90:100]) {
		t.Fatalf("bytesAt(90, 50) = %d bytes, want the 10 the file holds", len(got))
	}
	r.bytesAt(0, 10) // the window: [0, 100) again

	// The file grows: bytes past the window are read from it.
	writeFile(t, name, file)
	if got := r.bytesAt(50, 100); !bytes.Equal(got, file[50:150]) {
		t.Fatalf("bytesAt(50, 100) after the file grew = %v", got)
	}
	if got := r.buffered(60); !bytes.Equal(got, file[60:1000]) {
		t.Fatalf("buffered(60): %d bytes, want 940, to the limit", len(got))
	}

	// The same file with a lower limit keeps its window, but gives nothing
	// past the limit, even from the window.
	if err := r.open(name, 100); err != nil {
		t.Fatal(err)
	}
	if got := r.buffered(60); !bytes.Equal(got, file[60:100]) {
		t.Fatalf("buffered(60) with limit 100: %d bytes, want 40 from the window kept", len(got))
	}
	if got := r.bytesAt(60, 100); !bytes.Equal(got, file[60:100]) {
		t.Fatalf("bytesAt(60, 100) with limit 100: %d bytes, want 40", len(got))
	}
	if got := r.bytesAt(100, 10); len(got) != 0 {
		t.Fatalf("bytesAt at the limit: %d bytes", len(got))
	}
}

// A window is never read past the limit: bytes beyond it may be a record
// still being written, and are read again once the limit takes them in.
func TestSegReaderWindowStopsAtTheLimit(t *testing.T) {
	name := filepath.Join(t.TempDir(), "seg")
	file := patterned(100, 1)
	writeFile(t, name, file)
	r := openReader(t, name, 50)
	if got := r.bytesAt(10, 10); !bytes.Equal(got, file[10:20]) {
		t.Fatalf("bytesAt(10, 10) = %v", got)
	}
	now := patterned(100, 7) // the bytes past the limit change meanwhile
	copy(now, file[:50])
	writeFile(t, name, now)
	if err := r.open(name, 100); err != nil {
		t.Fatal(err)
	}
	if got := r.buffered(10); !bytes.Equal(got, file[10:50]) {
		t.Fatalf("buffered(10) once the limit grew: %d bytes, want the 40 read within the old limit", len(got))
	}
	if got := r.bytesAt(40, 30); !bytes.Equal(got, now[40:70]) {
		t.Fatalf("bytesAt(40, 30) = %v, want the file's bytes now", got)
	}
}

// What the window holds is served from it, up to its last byte, without
// reading the file again (the probe: the file is changed underneath, which
// the spool never does to bytes within a segment's end).
func TestSegReaderServesTheWindowWithoutReadingAgain(t *testing.T) {
	name := filepath.Join(t.TempDir(), "seg")
	old := patterned(300, 1)
	writeFile(t, name, old)
	r := openReader(t, name, 300)
	r.bytesAt(100, 20) // the window: [100, 300)
	writeFile(t, name, patterned(300, 9))
	if got := r.bytesAt(100, 20); !bytes.Equal(got, old[100:120]) {
		t.Errorf("bytesAt at the window's start read the file again")
	}
	if got := r.bytesAt(280, 20); !bytes.Equal(got, old[280:300]) {
		t.Errorf("bytesAt up to the window's last byte read the file again")
	}
	if got := r.bytesAt(150, 100); !bytes.Equal(got, old[150:250]) {
		t.Errorf("bytesAt inside the window read the file again")
	}
}

// Opening the file already open keeps its window; opening another reads
// that one and closes the first; close closes it.
func TestSegReaderOpenSwitchesFilesAndClosesThem(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, patterned(100, 1))
	writeFile(t, b, patterned(100, 2))
	r := openReader(t, a, 100)
	r.bytesAt(0, 10)
	fa := r.f
	if err := r.open(a, 100); err != nil || r.f != fa || len(r.buffered(0)) != 100 {
		t.Fatalf("open of the same file: err %v, same file %v, window %d bytes; want the window kept", err, r.f == fa, len(r.buffered(0)))
	}
	if err := r.open(b, 100); err != nil {
		t.Fatal(err)
	}
	if got := r.bytesAt(0, 100); !bytes.Equal(got, patterned(100, 2)) {
		t.Fatalf("after open of another file, read %v", got[:10])
	}
	if _, err := fa.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the first file after open of another: read error %v, want os.ErrClosed", err)
	}
	fb := r.f
	r.close()
	if _, err := fb.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) || r.f != nil || r.buffered(0) != nil {
		t.Errorf("after close: read error %v (want os.ErrClosed), f %v, window %d bytes", err, r.f, len(r.buffered(0)))
	}
}

// The window's buffer is reused from read to read at the usual size; a
// large record's grows it, and the next read at the usual size goes back
// to spoolReadSize unless the buffer is no more than four times that.
func TestSegReaderWindowBufferIsReusedAndShrinksAfterALargeRecord(t *testing.T) {
	name := filepath.Join(t.TempDir(), "seg")
	size := 2<<20 + 3*spoolReadSize
	writeFile(t, name, patterned(size, 3))
	r := openReader(t, name, int64(size))

	r.bytesAt(0, 20)
	first := &r.buf[:1][0]
	if cap(r.buf) != spoolReadSize {
		t.Fatalf("window of %d bytes, want %d", cap(r.buf), spoolReadSize)
	}
	r.bytesAt(spoolReadSize+100, 20) // a full window again
	if &r.buf[:1][0] != first {
		t.Errorf("a read of the usual size made a new buffer")
	}

	r.bytesAt(0, 4*spoolReadSize) // a large record: as large as the window may stay
	big := &r.buf[:1][0]
	r.bytesAt(4*spoolReadSize+10, 20)
	if &r.buf[:1][0] != big || cap(r.buf) != 4*spoolReadSize {
		t.Errorf("after a record of 4*spoolReadSize the window has %d bytes, new %v; want it kept", cap(r.buf), &r.buf[:1][0] != big)
	}

	r.bytesAt(0, 2<<20) // larger: the next usual read shrinks the window back
	if cap(r.buf) != 2<<20 {
		t.Fatalf("window of %d bytes for a 2 MiB record", cap(r.buf))
	}
	if got := r.bytesAt(2<<20+10, 20); !bytes.Equal(got, patterned(size, 3)[2<<20+10:2<<20+30]) {
		t.Fatalf("bytesAt after the large record = %v", got)
	}
	if cap(r.buf) != spoolReadSize {
		t.Errorf("after a 2 MiB record and a usual read, the window has %d bytes, want %d", cap(r.buf), spoolReadSize)
	}
}

// resync finds the first offset where both checksums of a record match,
// a record that ends exactly at the limit included.
func TestSegReaderResyncFindsARecordEndingAtTheLimit(t *testing.T) {
	for _, payload := range []string{"", "abc"} {
		seg, _ := segmentOf(1, []byte(payload))
		rec := seg[segHeaderLen:]
		b := append(append(segmentHeader(), "garbage"...), rec...)
		name := filepath.Join(t.TempDir(), "seg")
		writeFile(t, name, b)
		r := openReader(t, name, int64(len(b)))
		if got, want := r.resync(segHeaderLen), int64(segHeaderLen+len("garbage")); got != want {
			t.Errorf("resync before a record of %d bytes at the end = %d, want %d", len(payload), got, want)
		}
		if got := r.resync(int64(segHeaderLen + len("garbage") + 1)); got != int64(len(b)) {
			t.Errorf("resync past it = %d, want the limit %d", got, len(b))
		}
		// With the limit one byte short, it is not a record.
		if err := r.open(name, int64(len(b)-1)); err != nil {
			t.Fatal(err)
		}
		if got := r.resync(segHeaderLen); got != int64(len(b)-1) {
			t.Errorf("resync with the record past the limit = %d, want the limit %d", got, len(b)-1)
		}
	}
}
