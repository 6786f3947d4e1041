package conn_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// tmpfs mounts a file system of size bytes for the test, or skips it
// where mounting is not permitted.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// A drain whose records span two segments, on a disk that fills in the
// second, writes the first part: what goes back to the buffer for the
// next attempt is the rest only. The whole buffer went back, and the part
// already written was written, and delivered, twice.
func TestSpoolDrainFailingPartWayOnAFullDiskWritesNothingTwice(t *testing.T) {
	mnt := tmpfs(t, 1<<20)
	fill := func(name string, n int) string {
		p := filepath.Join(mnt, name)
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Room for most of a first segment (128 KiB for a 1 MiB spool), none
	// for the next.
	fill1 := fill("fill1", 100<<10)
	fill2 := fill("fill2", 800<<10)
	f := &fakeNet{dialErr: errors.New("down")}
	m := newFake(t, f, conn.WithBackoff(time.Millisecond, 5*time.Millisecond))
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(filepath.Join(mnt, "spool"), 1<<20), conn.WithDurableSpool(0),
		conn.WithBufferSize(1<<20), conn.WithCloseTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var lines []string
	for i := range 400 {
		l := fmt.Sprintf("%05d %s\n", i, strings.Repeat("p", 993))
		if _, err := w.Write([]byte(l)); err == nil {
			lines = append(lines, l)
		}
	}
	spoolErr := func(differentFrom string, within time.Duration) string {
		deadline := time.Now().Add(within)
		for {
			if err := w.Stats().Spool.Err; err != nil && err.Error() != differentFrom {
				return err.Error()
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new spool error within %v (the last: %q); want the disk full", within, differentFrom)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	first := spoolErr("", 5*time.Second)
	// Room for the rest of the first segment and part of the second: the
	// next attempt writes part of its buffer, then fails in a new segment.
	if err := os.Remove(fill1); err != nil {
		t.Fatal(err)
	}
	if second := spoolErr(first, 5*time.Second); !strings.Contains(second, "no space") {
		t.Fatalf("after making room, the spool error %q, want the disk full again", second)
	}
	if err := os.Remove(fill2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for w.Sync(ctx) != nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // the spool tries again every 250 ms
	}
	if ctx.Err() != nil {
		t.Fatalf("the spool did not sync within 5 s of having room: %v", w.Stats().Spool.Err)
	}
	f.set(func(f *fakeNet) { f.dialErr = nil })
	flushWithin(t, w, 10*time.Second)
	if got, want := received(f), strings.Join(lines, ""); got != want {
		st := w.Stats()
		t.Errorf("delivered %d lines, want the %d accepted, once each and in order; Written %d, Accepted %d, Queue.Messages %d",
			strings.Count(got, "\n"), len(lines), st.Written, st.Accepted, st.Queue.Messages)
	}
}
