package conn_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// A spooledRecord is a record as it lies in a segment file (the layout in
// spoolformat.go: a 16-byte file header, then 20-byte record headers with
// the payload's length at byte 4).
type spooledRecord struct {
	file       string
	start, end int64
	payload    string
}

// spoolRecords parses the segment files of dir, in order.
func spoolRecords(t *testing.T, dir string) []spooledRecord {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "seg-*.spool"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	var out []spooledRecord
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for off := 16; off+20 <= len(b); {
			n := int(binary.LittleEndian.Uint32(b[off+4:]))
			if off+20+n > len(b) {
				break
			}
			out = append(out, spooledRecord{file: f, start: int64(off), end: int64(off + 20 + n), payload: string(b[off+20 : off+20+n])})
			off += 20 + n
		}
	}
	return out
}

// spoolToDisk writes lines into a durable spool in dir whose connection is
// down and closes it, leaving them all on disk.
func spoolToDisk(t *testing.T, dir string, maxBytes int64, lines []string) {
	t.Helper()
	m := newFake(t, &fakeNet{dialErr: errors.New("down")})
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, maxBytes), conn.WithDurableSpool(conn.DefaultSpoolSync), conn.WithCloseTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeAll(t, w, lines)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Left+uint64(st.Spool.Bytes) == 0 || st.Dropped != 0 {
		t.Fatalf("nothing left on disk: %+v", st)
	}
}

// lockedLog keeps what a logger was given.
type lockedLog struct {
	mu   sync.Mutex
	logs []string
}

func (l *lockedLog) Log(kv ...any) error {
	var b bytes.Buffer
	log.NewLogfmtLogger(&b).Log(kv...)
	l.mu.Lock()
	l.logs = append(l.logs, b.String())
	l.mu.Unlock()
	return nil
}

func (l *lockedLog) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, x := range l.logs {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}

// deliverSpool opens the spool in dir with a working connection, sends
// what it holds and returns what arrived, the stats, the drop reports and
// the log.
func deliverSpool(t *testing.T, dir string, maxBytes int64) (string, conn.BatchStats, []conn.DropReport, *lockedLog) {
	t.Helper()
	f := &fakeNet{}
	logs := &lockedLog{}
	m := newFake(t, f, conn.WithLogger(logs))
	var mu sync.Mutex
	var reports []conn.DropReport
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, maxBytes), conn.WithDropHook(func(r conn.DropReport) {
		mu.Lock()
		reports = append(reports, r)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	flushWithin(t, w, 20*time.Second)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return received(f), w.Stats(), reports, logs
}

// survivors returns the payloads of the records outside every damaged
// range [from, to) of file.
func survivors(recs []spooledRecord, file string, from, to int64) string {
	var b strings.Builder
	for _, r := range recs {
		if r.file == file && r.start < to && r.end > from {
			continue
		}
		b.WriteString(r.payload)
	}
	return b.String()
}

func TestSpoolSkipsDamagedRecordsAndDeliversTheRest(t *testing.T) {
	lines := spoolLines(0, 12000) // about 600 KB with headers, over five segments of 128 KiB
	cases := []struct {
		name   string
		damage func(t *testing.T, recs []spooledRecord) (file string, from, to int64)
		reason string
	}{
		{"a byte flipped in a payload", func(t *testing.T, recs []spooledRecord) (string, int64, int64) {
			r := recs[len(recs)/2]
			flip(t, r.file, r.start+25)
			return r.file, r.start + 25, r.start + 26
		}, "checksum mismatch"},
		{"a byte flipped in a header", func(t *testing.T, recs []spooledRecord) (string, int64, int64) {
			r := recs[100]
			flip(t, r.file, r.start+5)
			return r.file, r.start + 5, r.start + 6
		}, "checksum mismatch"},
		{"a page zeroed as after a power loss", func(t *testing.T, recs []spooledRecord) (string, int64, int64) {
			r := recs[len(recs)/3]
			zero(t, r.file, 8192, 4096)
			return r.file, 8192, 8192 + 4096
		}, "checksum mismatch"},
		{"the last record cut mid-way", func(t *testing.T, recs []spooledRecord) (string, int64, int64) {
			r := recs[len(recs)-1]
			if err := os.Truncate(r.file, r.start+7); err != nil {
				t.Fatal(err)
			}
			return r.file, r.start, r.end
		}, "cut short"},
		{"a segment's file header zeroed", func(t *testing.T, recs []spooledRecord) (string, int64, int64) {
			r := recs[len(recs)/2]
			zero(t, r.file, 0, 16)
			return r.file, 0, 16
		}, "bad segment header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			spoolToDisk(t, dir, 1<<20, lines)
			recs := spoolRecords(t, dir)
			if len(recs) != len(lines) {
				t.Fatalf("%d records on disk, want %d", len(recs), len(lines))
			}
			file, from, to := c.damage(t, recs)
			want := survivors(recs, file, from, to)
			got, st, reports, logs := deliverSpool(t, dir, 1<<20)
			if got != want {
				t.Fatalf("delivered %d bytes, want %d (the records outside the damage, in order)", len(got), len(want))
			}
			if st.Spool.Damaged != 1 || st.Spool.DamagedBytes == 0 {
				t.Errorf("Damaged %d (%d bytes), want 1 region", st.Spool.Damaged, st.Spool.DamagedBytes)
			}
			var damaged uint64
			var de *conn.SpoolDamageError
			for _, r := range reports {
				damaged += r.Damaged
				if errors.As(r.Err, &de) && (de.File != file || de.From > from || de.To < min(to, de.To) || !strings.Contains(de.Reason, c.reason)) {
					t.Errorf("reported %v, want file %s around %d-%d, %q", de, file, from, to, c.reason)
				}
			}
			if damaged != 1 || de == nil {
				t.Errorf("drop reports %+v: want one damaged region with its *SpoolDamageError", reports)
			}
			if l := logs.matching("spool record damaged"); len(l) != 1 || !strings.Contains(l[0], filepath.Base(file)) {
				t.Errorf("log %q: want one warning naming %s", l, filepath.Base(file))
			}
		})
	}
}

func flip(t *testing.T, name string, off int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func zero(t *testing.T, name string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), off); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolOfANewerFormatIsRefused(t *testing.T) {
	for _, file := range []string{"seg", "ledger"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			spoolToDisk(t, dir, 0, spoolLines(0, 10))
			name := filepath.Join(dir, "ledger")
			if file == "seg" {
				name = spoolRecords(t, dir)[0].file
			}
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			// Version 2, with checksums that match: a file this build did
			// not write, not a damaged one.
			if file == "seg" {
				binary.LittleEndian.PutUint32(b[8:], 2)
				binary.LittleEndian.PutUint32(b[12:], crc32c(b[:12]))
			} else {
				for slot := 0; slot+40 <= len(b); slot += 64 {
					binary.LittleEndian.PutUint32(b[slot+8:], 2)
					binary.LittleEndian.PutUint32(b[slot+36:], crc32c(b[slot:slot+36]))
				}
			}
			if err := os.WriteFile(name, b, 0o600); err != nil {
				t.Fatal(err)
			}
			before := dirListing(t, dir)
			m := newFake(t, &fakeNet{})
			w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0))
			if !errors.Is(err, conn.ErrSpoolVersion) || w != nil || !strings.Contains(err.Error(), "version 2") {
				t.Fatalf("open: %v, want ErrSpoolVersion naming version 2", err)
			}
			if after := dirListing(t, dir); after != before {
				t.Errorf("the refused spool was changed:\n%s\nnow\n%s", before, after)
			}
			// The refusal gave the lock back: a second open is refused for
			// the version again, not as in use.
			if _, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0)); !errors.Is(err, conn.ErrSpoolVersion) {
				t.Errorf("second open: %v, want ErrSpoolVersion again", err)
			}
		})
	}
}

func dirListing(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		fi, _ := e.Info()
		if fi != nil {
			fmt.Fprintf(&b, "%s %d %v\n", e.Name(), fi.Size(), fi.ModTime())
		}
	}
	return b.String()
}

func TestSpoolLedgerSurvivesATornSlot(t *testing.T) {
	dir := t.TempDir()
	lines := spoolLines(0, 200)
	spoolToDisk(t, dir, 0, lines)
	// Deliver half, so that the ledger's second slot holds a position.
	got, _, _, _ := deliverSpool(t, dir, 0)
	if got != strings.Join(lines, "") {
		t.Fatalf("first delivery: %d bytes", len(got))
	}
	more := spoolLines(200, 50)
	spoolToDisk(t, dir, 0, more)
	ledger := filepath.Join(dir, "ledger")
	b, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	// Tear the newest slot (the higher generation at byte 12): the older
	// position is used. What was delivered after it may be sent again;
	// nothing is lost.
	newest := 0
	if len(b) >= 104 && binary.LittleEndian.Uint64(b[64+12:]) > binary.LittleEndian.Uint64(b[12:]) {
		newest = 64
	}
	b[newest+30] ^= 0xff
	if err := os.WriteFile(ledger, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, _, _ = deliverSpool(t, dir, 0)
	if !strings.HasSuffix(got, strings.Join(more, "")) {
		t.Errorf("with the newest ledger slot torn, delivered %d bytes, want the 50 new lines at the end", len(got))
	}
	// Both slots torn: a clear error, not a guess.
	b[(64-newest)+30] ^= 0xff
	if err := os.WriteFile(ledger, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m := newFake(t, &fakeNet{})
	if _, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0)); err == nil || !strings.Contains(err.Error(), "ledger") {
		t.Errorf("open with both ledger slots torn: %v", err)
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }
