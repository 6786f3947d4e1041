package conn_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

func TestSpoolDefaultsAreTheDocumentedValues(t *testing.T) {
	if conn.DefaultSpoolSync != 250*time.Millisecond {
		t.Errorf("DefaultSpoolSync %v, want 250ms", conn.DefaultSpoolSync)
	}
	if conn.SpoolRecordOverhead+conn.SpoolSegmentOverhead != 36 {
		t.Errorf("overheads %d + %d, want 36 bytes (WithSpool)", conn.SpoolRecordOverhead, conn.SpoolSegmentOverhead)
	}
}

func TestSpoolCountsTheBytesOfADamagedRegion(t *testing.T) {
	dir := t.TempDir()
	lines := spoolLines(0, 50)
	spoolToDisk(t, dir, 1<<20, lines)
	recs := spoolRecords(t, dir)
	last := recs[len(recs)-1]
	if err := os.Truncate(last.file, last.start+7); err != nil { // 7 bytes of its header left
		t.Fatal(err)
	}
	got, st, _, _ := deliverSpool(t, dir, 1<<20)
	if want := strings.Join(lines[:len(lines)-1], ""); got != want {
		t.Errorf("delivered %d bytes, want the %d before the cut record", len(got), len(want))
	}
	if st.Spool.Damaged != 1 || st.Spool.DamagedBytes != 7 {
		t.Errorf("Damaged %d (%d bytes), want 1 region of 7 bytes", st.Spool.Damaged, st.Spool.DamagedBytes)
	}
}
