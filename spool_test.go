package conn_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// spoolLines returns n numbered lines, from first on.
func spoolLines(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("line %07d %s\n", first+i, strings.Repeat("x", i%37))
	}
	return out
}

// received joins what every connection of f received.
func received(f *fakeNet) string {
	f.mu.Lock()
	conns := append([]*fakeConn(nil), f.conns...)
	f.mu.Unlock()
	var b strings.Builder
	for _, c := range conns {
		b.WriteString(c.data())
	}
	return b.String()
}

func writeAll(t *testing.T, w *conn.BatchWriter, lines []string) {
	t.Helper()
	for _, l := range lines {
		if _, err := w.Write([]byte(l)); err != nil {
			t.Fatalf("Write(%q): %v", l, err)
		}
	}
}

func TestSpoolTakesAnOutageLongerThanMemoryAndKeepsOrder(t *testing.T) {
	f := &fakeNet{dialErr: errors.New("down")}
	m := newFake(t, f, conn.WithBackoff(time.Millisecond, 5*time.Millisecond))
	w, err := conn.OpenBatchWriter(m, conn.WithBufferSize(4<<10), conn.WithSpool(t.TempDir(), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lines := spoolLines(0, 20000) // about 600 KB: 150 times the memory buffer
	writeAll(t, w, lines)
	st := w.Stats()
	if st.Rejected != 0 || st.Spool.Spooled == 0 || st.Accepted != uint64(len(lines)) {
		t.Fatalf("after the writes: %+v", st)
	}
	f.set(func(f *fakeNet) { f.dialErr = nil })
	flushWithin(t, w, 20*time.Second)
	if got, want := received(f), strings.Join(lines, ""); got != want {
		t.Fatalf("received %d bytes, want %d in order", len(got), len(want))
	}
	st = w.Stats()
	if st.Written != uint64(len(lines)) || st.Queue.Messages != 0 || st.Spool.Bytes != 0 || st.Dropped != 0 {
		t.Errorf("after the flush: %+v", st)
	}
	// Memory again once the spool has given everything back.
	more := spoolLines(len(lines), 100)
	writeAll(t, w, more)
	flushWithin(t, w, 10*time.Second)
	if s2 := w.Stats(); s2.Spool.Spooled != st.Spool.Spooled {
		t.Errorf("with the connection keeping up, %d more messages went to disk", s2.Spool.Spooled-st.Spool.Spooled)
	}
}

func TestDurableSpoolKeepsWhatCloseLeftForTheNextWriter(t *testing.T) {
	dir := t.TempDir()
	f := &fakeNet{dialErr: errors.New("down")}
	m := newFake(t, f, conn.WithBackoff(time.Millisecond, 5*time.Millisecond))
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0), conn.WithDurableSpool(conn.DefaultSpoolSync), conn.WithCloseTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	lines := spoolLines(0, 5000)
	writeAll(t, w, lines)
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := w.Stats()
	if st.Dropped != 0 || st.Left == 0 {
		t.Errorf("after Close: %+v", st)
	}

	f.set(func(f *fakeNet) { f.dialErr = nil })
	w2, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0))
	if err != nil {
		t.Fatal(err)
	}
	more := spoolLines(len(lines), 10)
	writeAll(t, w2, more)
	flushWithin(t, w2, 20*time.Second)
	if got, want := received(f), strings.Join(append(lines, more...), ""); got != want {
		t.Fatalf("received %d bytes, want %d in order", len(got), len(want))
	}
	if st := w2.Stats(); st.Spool.Recovered != uint64(len(lines)) {
		t.Errorf("recovered %d, want %d", st.Spool.Recovered, len(lines))
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "seg-*"))
	if len(segs) > 1 {
		t.Errorf("%d segment files left after everything was delivered: %v", len(segs), segs)
	}
}

func TestSpoolDirectoryHasOneOwner(t *testing.T) {
	dir := t.TempDir()
	m := newFake(t, &fakeNet{})
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0))
	if err != nil {
		t.Fatal(err)
	}
	w2, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0))
	if err == nil || w2 != nil {
		t.Fatalf("second open: %v, %v", w2, err)
	}
	w3 := conn.NewBatchWriter(m, conn.WithSpool(dir, 0))
	if _, err3 := w3.Write([]byte("x")); err3 == nil || err3.Error() != err.Error() {
		t.Errorf("Write on a writer whose spool did not open: %v, want %v", err3, err)
	}
	w3.Close()
	w.Close()
	w4, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0))
	if err != nil {
		t.Fatalf("open after Close: %v", err)
	}
	w4.Close()
}

func TestSpoolEndsWithItsManager(t *testing.T) {
	dir := t.TempDir()
	f := &fakeNet{dialErr: errors.New("down")}
	m := newFake(t, f)
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0), conn.WithDurableSpool(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	lines := spoolLines(0, 100)
	writeAll(t, w, lines)
	m.Close() // before the BatchWriter: what the spool holds is written and synced
	// A Write racing the Manager's Close is refused, or kept like the rest.
	if _, err := w.Write([]byte("late\n")); err == nil {
		lines = append(lines, "late\n")
	} else if !errors.Is(err, conn.ErrClosed) {
		t.Errorf("Write after the Manager's Close: %v, want ErrClosed", err)
	}
	if err := w.Sync(context.Background()); err != nil {
		t.Errorf("Sync after the Manager's Close: %v", err)
	}
	w.Close()
	if got, _, _, _ := deliverSpool(t, dir, 0); got != strings.Join(lines, "") {
		t.Errorf("the next writer delivered %d bytes, want %d", len(got), len(strings.Join(lines, "")))
	}
}
