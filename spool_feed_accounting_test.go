package conn_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// A record that a writer with a large memory buffer spooled, and that the
// next writer's smaller buffer cannot hold, is skipped as damage naming
// its exact bytes; the records around it are delivered.
func TestSpoolSkipsARecordLargerThanTheNextWritersMemoryBuffer(t *testing.T) {
	dir := t.TempDir()
	f := &fakeNet{dialErr: errors.New("down")}
	m := newFake(t, f, conn.WithBackoff(time.Millisecond, 5*time.Millisecond))
	w, err := conn.OpenBatchWriter(m, conn.WithBufferSize(64<<10), conn.WithSpool(dir, 0),
		conn.WithDurableSpool(conn.DefaultSpoolSync), conn.WithCloseTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	first, big, last := "first\n", strings.Repeat("b", 8<<10), "last\n"
	writeAll(t, w, []string{first, big, last})
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := w.Stats(); st.Left != 3 {
		t.Fatalf("the first writer left %d messages on disk, want 3: %+v", st.Left, st)
	}

	f.set(func(f *fakeNet) { f.dialErr = nil })
	var mu sync.Mutex
	var reports []conn.DropReport
	w2, err := conn.OpenBatchWriter(m, conn.WithBufferSize(4<<10), conn.WithSpool(dir, 0), conn.WithDropHook(func(r conn.DropReport) {
		mu.Lock()
		reports = append(reports, r)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	flushWithin(t, w2, 20*time.Second)
	if err := w2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := received(f); got != first+last {
		t.Errorf("received %q, want %q", got, first+last)
	}
	from := int64(conn.SpoolSegmentOverhead + conn.SpoolRecordOverhead + len(first))
	to := from + int64(conn.SpoolRecordOverhead+len(big))
	st := w2.Stats()
	if st.Spool.Recovered != 2 || st.Spool.Damaged != 1 || st.Spool.DamagedBytes != uint64(to-from) || st.Spool.Bytes != 0 {
		t.Errorf("Recovered %d, Damaged %d of %d bytes, %d bytes left in the spool; want 2, 1 of %d, 0",
			st.Spool.Recovered, st.Spool.Damaged, st.Spool.DamagedBytes, st.Spool.Bytes, to-from)
	}
	mu.Lock()
	defer mu.Unlock()
	var damage *conn.SpoolDamageError
	if len(reports) == 0 || !errors.As(reports[len(reports)-1].Err, &damage) {
		t.Fatalf("drop reports %+v, want the last to name the skipped record", reports)
	}
	if damage.From != from || damage.To != to || !strings.Contains(damage.Reason, "larger than the memory buffer") {
		t.Errorf("skipped %d-%d (%s), want %d-%d as larger than the memory buffer", damage.From, damage.To, damage.Reason, from, to)
	}
}
