package conn_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

func TestFullSpoolFollowsTheFullPolicy(t *testing.T) {
	// A header and 100 records exactly: the second segment's header must
	// be counted.
	const maxBytes = 100*1020 + 16
	line := []byte(strings.Repeat("y", 999) + "\n") // 1,020 bytes on disk
	t.Run("drop", func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f)
		dir := t.TempDir()
		w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, maxBytes), conn.WithDurableSpool(0))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		accepted := 0
		for range 200 {
			if _, err := w.Write(line); err != nil {
				if !errors.Is(err, conn.ErrSpoolFull) || !errors.Is(err, conn.ErrBufferFull) {
					t.Fatalf("Write on a full spool: %v, want ErrSpoolFull matching ErrBufferFull", err)
				}
				continue
			}
			accepted++
		}
		// The files hold at most maxBytes: two segment headers of 16 bytes,
		// then records of 1,020 bytes.
		if want := (maxBytes - 2*16) / 1020; accepted < want-1 || accepted > want {
			t.Errorf("accepted %d messages of 1,020 bytes on disk in %d bytes, want %d", accepted, maxBytes, want)
		}
		st := w.Stats()
		if st.Rejected != uint64(200-accepted) || st.Accepted != uint64(accepted) || st.Spool.DiskBytes > maxBytes {
			t.Errorf("stats %+v", st)
		}
		if err := w.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		var files int64
		for _, r := range spoolRecords(t, dir) {
			files += r.end - r.start
		}
		segs, _ := filepath.Glob(filepath.Join(dir, "seg-*.spool"))
		if files += int64(len(segs)) * 16; files > maxBytes {
			t.Errorf("the spool's files hold %d bytes, more than maxBytes %d (a segment header uncounted)", files, maxBytes)
		}
		f.set(func(f *fakeNet) { f.dialErr = nil })
		flushWithin(t, w, 10*time.Second)
		if got := received(f); got != strings.Repeat(string(line), accepted) {
			t.Errorf("received %d bytes, want %d", len(got), accepted*len(line))
		}
	})
	t.Run("wait", func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithBackoff(time.Millisecond, 2*time.Millisecond))
		w, err := conn.OpenBatchWriter(m, conn.WithSpool(t.TempDir(), maxBytes), conn.WithDurableSpool(0),
			conn.WithWaitWhenFull(time.Minute), conn.WithBufferSize(8<<10))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		errc := make(chan error, 1)
		go func() {
			for range 300 { // three times what the spool holds
				if _, err := w.Write(line); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		// The writer waits on the full spool until the connection comes back
		// and the spool's segments are delivered and removed.
		deadline := time.Now().Add(10 * time.Second)
		for w.Stats().Spool.DiskBytes+2000 < maxBytes && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		select {
		case err := <-errc:
			t.Fatalf("the writer finished with the spool full and the connection down: %v", err)
		default:
		}
		f.set(func(f *fakeNet) { f.dialErr = nil })
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("a Write still waits 30 s after the connection came back: %+v", w.Stats())
		}
		flushWithin(t, w, 10*time.Second)
		if got := received(f); got != strings.Repeat(string(line), 300) {
			t.Errorf("received %d bytes, want %d", len(got), 300*len(line))
		}
	})
}

func TestSpoolRefusesWhatCouldNeverBeSent(t *testing.T) {
	m := newFake(t, &fakeNet{dialErr: errors.New("down")})
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(t.TempDir(), 64<<10), conn.WithDurableSpool(0), conn.WithBufferSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(make([]byte, 64<<10)); !errors.Is(err, conn.ErrTooLarge) {
		t.Errorf("a message larger than the spool: %v, want ErrTooLarge", err)
	}
	w2, err := conn.OpenBatchWriter(m, conn.WithSpool(t.TempDir(), 1<<20), conn.WithDurableSpool(0), conn.WithBufferSize(4<<10),
		conn.WithCloseTimeout(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if _, err := w2.Write(make([]byte, 8<<10)); !errors.Is(err, conn.ErrTooLarge) {
		t.Errorf("a message larger than the memory buffer: %v, want ErrTooLarge (it could never go back to memory)", err)
	}
	if _, err := w2.Write(nil); err != nil {
		t.Errorf("an empty message: %v", err)
	}
}

func TestSpoolDirectoryProblemsAreClearErrors(t *testing.T) {
	m := newFake(t, &fakeNet{})
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.OpenBatchWriter(m, conn.WithSpool(filepath.Join(file, "spool"), 0)); err == nil || !strings.Contains(err.Error(), "spool") {
		t.Errorf("a spool under a file: %v", err)
	}
	if _, err := conn.OpenBatchWriter(m, conn.WithDurableSpool(time.Second)); err == nil || !strings.Contains(err.Error(), "WithSpool") {
		t.Errorf("WithDurableSpool alone: %v", err)
	}
	if _, err := conn.OpenBatchWriter(m, conn.WithSpool("", 0)); err == nil {
		t.Error("an empty directory name opened")
	}
	deep := filepath.Join(base, "a", "b", "c")
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(deep, 0))
	if err != nil {
		t.Fatalf("a missing directory is made: %v", err)
	}
	w.Close()
	if fi, err := os.Stat(deep); err != nil || !fi.IsDir() {
		t.Errorf("spool directory: %v", err)
	}
	if err := conn.NewBatchWriter(m).Sync(context.Background()); !errors.Is(err, conn.ErrNotDurable) {
		t.Errorf("Sync without a spool: %v, want ErrNotDurable", err)
	}
}

func TestSpoolFilesRemovedOrTruncatedUnderneath(t *testing.T) {
	for _, how := range []string{"removed", "truncated"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			lines := spoolLines(0, 12000)
			spoolToDisk(t, dir, 1<<20, lines)
			recs := spoolRecords(t, dir)
			victim := recs[len(recs)/2].file
			var from, to int64 = 0, 1 << 62
			if how == "removed" {
				if err := os.Remove(victim); err != nil {
					t.Fatal(err)
				}
			} else {
				from = 1000
				if err := os.Truncate(victim, from); err != nil {
					t.Fatal(err)
				}
			}
			want := survivors(recs, victim, from, to)
			got, st, _, _ := deliverSpool(t, dir, 1<<20)
			if got != want {
				t.Fatalf("delivered %d bytes, want %d", len(got), len(want))
			}
			if how == "truncated" && st.Spool.Damaged != 1 {
				t.Errorf("Damaged %d, want the cut record counted", st.Spool.Damaged)
			}
		})
	}
}
