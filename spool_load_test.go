package conn_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// spoolFileOverhead is what a message costs a spool beyond its bytes when
// it is alone in a segment: the segment's header (16 bytes) and its
// record's (20).
const spoolFileOverhead = 16 + 20

// Many writers while the connection comes and goes, through a spool that
// spills or a durable one: each writer's accepted messages arrive once
// and in order, and the counters add up at rest.
func TestSpoolManyWritersOnAFlappingConnectionKeepOrderAndLoseNothing(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable %v", durable), func(t *testing.T) {
			f := &fakeNet{}
			m := newFake(t, f, conn.WithBackoff(time.Millisecond, 3*time.Millisecond))
			opts := []conn.BatchOption{conn.WithSpool(t.TempDir(), 2<<20), conn.WithBufferSize(8 << 10)}
			if durable {
				opts = append(opts, conn.WithDurableSpool(5*time.Millisecond))
			}
			w, err := conn.OpenBatchWriter(m, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			const writers, each = 8, 2000
			stop, flapped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(flapped)
				for k := 0; ; k++ {
					select {
					case <-stop:
						f.set(func(f *fakeNet) { f.dialErr = nil })
						return
					case <-time.After(time.Duration(1+k%7) * time.Millisecond):
					}
					f.set(func(f *fakeNet) {
						if k%2 == 1 {
							f.dialErr = nil
							return
						}
						f.dialErr = errors.New("down")
						for _, c := range f.conns {
							c.fail(errBroken)
						}
					})
				}
			}()
			accepted := make([][]int, writers)
			var wg sync.WaitGroup
			for g := range writers {
				wg.Go(func() {
					for i := range each {
						if _, err := fmt.Fprintf(w, "g%d %d\n", g, i); err == nil {
							accepted[g] = append(accepted[g], i)
						}
						if i%20 == 0 {
							time.Sleep(100 * time.Microsecond) // let the connection change under the writes
						}
					}
				})
			}
			written := make(chan struct{})
			go func() { wg.Wait(); close(written) }()
			recv(t, written)
			close(stop)
			<-flapped
			flushWithin(t, w, 30*time.Second)
			st := w.Stats()
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			seen := make([][]int, writers)
			for _, l := range strings.Split(strings.TrimSuffix(received(f), "\n"), "\n") {
				var g, i int
				if _, err := fmt.Sscanf(l, "g%d %d", &g, &i); err != nil || g < 0 || g >= writers {
					t.Fatalf("received %q, not a line written", l)
				}
				seen[g] = append(seen[g], i)
			}
			total := 0
			for g := range writers {
				total += len(accepted[g])
				if !slices.Equal(seen[g], accepted[g]) {
					t.Errorf("writer %d: %d messages accepted, %d received; want the same, once each and in order", g, len(accepted[g]), len(seen[g]))
				}
			}
			if st.Accepted != uint64(total) || st.Written != uint64(total) || st.Queue.Messages != 0 {
				t.Errorf("after the flush, Accepted %d, Written %d, Queue.Messages %d; want %d, %d, 0", st.Accepted, st.Written, st.Queue.Messages, total, total)
			}
		})
	}
}

// A Flush that returns nil covers every Write that returned before it,
// while the writer starts and stops spilling to disk under it.
func TestSpoolFlushDuringSpillStartAndStopCoversEveryEarlierWrite(t *testing.T) {
	f := &fakeNet{}
	w, err := conn.OpenBatchWriter(newFake(t, f), conn.WithSpool(t.TempDir(), 0), conn.WithBufferSize(4<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 20000
	var returned atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := fmt.Fprintf(w, "m %d %s\n", i, strings.Repeat("z", i%97)); err != nil {
				done <- fmt.Errorf("Write %d: %w", i, err)
				return
			}
			returned.Add(1)
			if i%2000 == 0 {
				time.Sleep(5 * time.Millisecond) // the spool drains: spilling stops
			}
		}
		done <- nil
	}()
	deadline := time.Now().Add(30 * time.Second)
	for flushes := 0; ; flushes++ {
		if time.Now().After(deadline) {
			t.Fatalf("the %d Writes not done within 30 s; %d returned", n, returned.Load())
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			flushWithin(t, w, 10*time.Second)
			if st := w.Stats(); st.Written != n || st.Spool.Spooled == 0 {
				t.Errorf("after %d flushes: Written %d, Spooled %d; want %d written, some through the spool", flushes, st.Written, st.Spool.Spooled, n)
			}
			return
		default:
		}
		before := returned.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.Flush(ctx)
		cancel()
		if st := w.Stats(); err != nil || st.Written < uint64(before) {
			t.Fatalf("Flush: %v; Written %d; want nil and at least the %d Writes returned before it", err, st.Written, before)
		}
	}
}

// A spool smaller than a segment's minimum once never rotated, so its
// only segment was never removed: it stayed full after maxBytes of
// messages though all were delivered.
func TestSpoolSmallerThanASegmentStaysUsable(t *testing.T) {
	w, err := conn.OpenBatchWriter(newFake(t, &fakeNet{}), conn.WithSpool(t.TempDir(), 1000), conn.WithDurableSpool(0))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 100 { // 10 times what the spool holds
		if _, err := fmt.Fprintf(w, "msg %03d\n", i); err != nil {
			st := w.Stats()
			t.Fatalf("message %d: %v, want it accepted; Written %d, DiskBytes %d, Spool.Bytes %d", i, err, st.Written, st.Spool.DiskBytes, st.Spool.Bytes)
		}
		flushWithin(t, w, 5*time.Second)
		time.Sleep(time.Millisecond) // the syncer's turn
	}
}

// Delivered segments go only when the ledger is saved, and it was saved
// at most once per sync interval: with WithDurableSpool(time.Hour) and
// everything delivered, the spool was full after maxBytes. When space is
// short the position is saved at once.
func TestSpoolWithALongSyncIntervalDoesNotFillWhenSpaceIsShort(t *testing.T) {
	const maxBytes = 256 << 10
	w, err := conn.OpenBatchWriter(newFake(t, &fakeNet{}), conn.WithSpool(t.TempDir(), maxBytes), conn.WithDurableSpool(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	line := []byte(strings.Repeat("h", 999) + "\n")
	for i := range 4 * maxBytes / len(line) {
		if _, err := w.Write(line); err != nil {
			st := w.Stats()
			t.Fatalf("message %d: %v, want it accepted; Written %d, Queue.Messages %d, DiskBytes %d of %d", i, err, st.Written, st.Queue.Messages, st.Spool.DiskBytes, maxBytes)
		}
		if i%50 == 49 {
			flushWithin(t, w, 5*time.Second)
		}
	}
}

// Messages at the limits go through a durable spool: empty ones, ones
// exactly the memory buffer's size, and in a spool of maxBytes, one of
// exactly maxBytes-36, while one byte more is refused.
func TestSpoolMessagesAtTheLimits(t *testing.T) {
	t.Run("memory buffer", func(t *testing.T) {
		const size = 64 << 10
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithBackoff(time.Millisecond, 5*time.Millisecond))
		w, err := conn.OpenBatchWriter(m, conn.WithSpool(t.TempDir(), 0), conn.WithDurableSpool(0), conn.WithBufferSize(size))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		big := make([]byte, size-conn.MessageOverhead)
		for i := range big {
			big[i] = byte('a' + i%26)
		}
		var want strings.Builder
		const n = 12
		for i := range n {
			var p []byte // empty, the most the buffer holds, a short one
			switch i % 3 {
			case 1:
				p = big
			case 2:
				p = []byte(fmt.Sprint(i))
			}
			if _, err := w.Write(p); err != nil {
				t.Fatalf("Write %d (%d bytes): %v, want it accepted", i, len(p), err)
			}
			want.Write(p)
		}
		if _, err := w.Write(make([]byte, size-conn.MessageOverhead+1)); !errors.Is(err, conn.ErrTooLarge) {
			t.Errorf("a message one byte larger than the buffer holds: %v, want ErrTooLarge", err)
		}
		f.set(func(f *fakeNet) { f.dialErr = nil })
		flushWithin(t, w, 10*time.Second)
		if got := received(f); got != want.String() {
			t.Errorf("received %d bytes, want %d", len(got), want.Len())
		}
		if st := w.Stats(); st.Written != n || st.Queue.Messages != 0 {
			t.Errorf("Written %d, Queue.Messages %d; want %d, 0", st.Written, st.Queue.Messages, n)
		}
	})
	t.Run("spool", func(t *testing.T) {
		const maxBytes = 100
		f := &fakeNet{}
		w, err := conn.OpenBatchWriter(newFake(t, f), conn.WithSpool(t.TempDir(), maxBytes), conn.WithDurableSpool(0))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.Write(make([]byte, maxBytes-spoolFileOverhead)); err != nil {
			t.Errorf("a message of maxBytes-%d: %v, want it accepted", spoolFileOverhead, err)
		}
		if _, err := w.Write(make([]byte, maxBytes-spoolFileOverhead+1)); !errors.Is(err, conn.ErrTooLarge) {
			t.Errorf("a message of maxBytes-%d: %v, want ErrTooLarge", spoolFileOverhead-1, err)
		}
		flushWithin(t, w, 10*time.Second)
		if got := len(received(f)); got != maxBytes-spoolFileOverhead {
			t.Errorf("received %d bytes, want %d", got, maxBytes-spoolFileOverhead)
		}
	})
}
