package conn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// A record of this life damaged on disk before it is read back is never
// fed to memory: it must count as Discarded, not stay queued for ever and
// hold every Flush up to its context's end.
func TestSpoolRecordDamagedWhileRunningIsDiscardedAndDoesNotHoldUpFlush(t *testing.T) {
	dir := t.TempDir()
	f := &fakeNet{dialErr: errors.New("down")}
	m := newFake(t, f, conn.WithBackoff(time.Millisecond, 3*time.Millisecond))
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0), conn.WithDurableSpool(0), conn.WithBufferSize(4<<10),
		conn.WithCloseTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lines := spoolLines(0, 12000) // over 600 KB on disk: more than the feeder reads ahead (256 KiB)
	writeAll(t, w, lines)
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := spoolRecords(t, dir)
	r := recs[len(recs)-10] // not yet read back: memory holds about 100
	flip(t, r.file, r.start+25)
	f.set(func(f *fakeNet) { f.dialErr = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ferr := w.Flush(ctx)
	st := w.Stats()
	if ferr != nil && !errors.Is(ferr, conn.ErrUnflushed) {
		t.Errorf("Flush: %v, want nil or ErrUnflushed for the damaged record", ferr)
	}
	if st.Written != uint64(len(lines)-1) || st.Spool.Damaged != 1 || st.Discarded != 1 || st.Queue.Messages != 0 {
		t.Errorf("Written %d, Damaged %d, Discarded %d, Queue.Messages %d; want %d, 1, 1, 0",
			st.Written, st.Spool.Damaged, st.Discarded, st.Queue.Messages, len(lines)-1)
	}
}
