package conn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// The Manager's Close makes the syncer write what the spool holds one last
// time. A Write racing it must be refused, or kept with the rest: Writes
// that came in after the last drain returned nil and were never written.
func TestSpoolWritesRacingTheManagersCloseAreKeptOrRefused(t *testing.T) {
	for i := range 20 { // the race showed within a few rounds
		dir := t.TempDir()
		m := newFake(t, &fakeNet{dialErr: errors.New("down")})
		w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0), conn.WithDurableSpool(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var accepted []string
		first := make(chan struct{})
		refused := make(chan error, 1)
		go func() {
			for k := 0; ; k++ {
				l := spoolLines(k, 1)[0]
				if _, err := w.Write([]byte(l)); err != nil {
					refused <- err
					return
				}
				accepted = append(accepted, l)
				if k == 0 {
					close(first)
				}
			}
		}()
		var werr error
		select {
		case <-first:
		case werr = <-refused:
		case <-time.After(5 * time.Second):
		}
		m.Close()
		if werr == nil {
			select {
			case werr = <-refused:
			case <-time.After(5 * time.Second):
				w.Close()
				t.Fatal("Writes still accepted 5 s after the Manager's Close")
			}
		}
		if !errors.Is(werr, conn.ErrClosed) {
			t.Errorf("iteration %d: Write after the Manager's Close: %v, want ErrClosed", i, werr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		serr := w.Sync(ctx)
		cancel()
		cerr := w.Close()
		want := strings.Join(accepted, "")
		if got, _, _, _ := deliverSpool(t, dir, 0); got != want || serr != nil || cerr != nil {
			t.Fatalf("iteration %d: %d Writes returned nil; the spool held %d bytes of their %d; Sync: %v; Close: %v; want them all on disk and nil errors",
				i, len(accepted), len(got), len(want), serr, cerr)
		}
	}
}

// Close giving up while the feeder moves a record to memory must count it
// once, as Left: it stays on disk for the next writer. It was counted as
// dropped (Discarded, ErrUnflushed) and delivered by the next writer too.
func TestSpoolCloseRacingTheFeederCountsLeftAndDiscardedExactly(t *testing.T) {
	lines := spoolLines(0, 2000)
	const rounds = 30 // the race showed within a few rounds
	for i := range rounds {
		dir := t.TempDir()
		m := newFake(t, &fakeNet{dialErr: errors.New("down")})
		// Close's time runs out while the feeder still fills memory.
		w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 0), conn.WithDurableSpool(conn.DefaultSpoolSync), conn.WithCloseTimeout(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, lines)
		cerr := w.Close()
		m.Close()
		st := w.Stats()
		if cerr != nil || st.Discarded != 0 || st.Left != uint64(len(lines)) || st.Queue.Messages != 0 {
			got, _, _, _ := deliverSpool(t, dir, 0)
			t.Fatalf("iteration %d: Close: %v; Discarded %d, Left %d, Queue.Messages %d; want nil, 0, %d, 0 (all on disk, none dropped); the next writer delivered %d of %d bytes",
				i, cerr, st.Discarded, st.Left, st.Queue.Messages, len(lines), len(got), len(strings.Join(lines, "")))
		}
		if i == rounds-1 {
			got, _, _, _ := deliverSpool(t, dir, 0)
			if want := strings.Join(lines, ""); got != want {
				t.Errorf("the next writer delivered %d bytes, want the %d left", len(got), len(want))
			}
		}
	}
}

// What Close leaves on disk without feeding it to memory is counted in
// Left, not in Queue.Messages: after Close nothing is queued.
func TestSpoolCloseCountsWhatStaysOnDiskInLeft(t *testing.T) {
	m := newFake(t, &fakeNet{dialErr: errors.New("down")})
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(t.TempDir(), 0), conn.WithDurableSpool(0), conn.WithBufferSize(4<<10),
		conn.WithCloseTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000 // far more than memory holds
	writeAll(t, w, spoolLines(0, n))
	cerr := w.Close()
	if st := w.Stats(); cerr != nil || st.Left != n || st.Queue.Messages != 0 || st.Discarded != 0 {
		t.Errorf("after Close (%v) with %d messages on disk: Left %d, Queue.Messages %d, Discarded %d; want nil, %d, 0, 0",
			cerr, n, st.Left, st.Queue.Messages, st.Discarded, n)
	}
}

// Close, Sync and Flush racing Writes, with the connection up or down, the
// spool durable or not, full Writes waiting or not: Close ends in time,
// the Writes return, and the counters add up with nothing queued.
func TestSpoolCloseSyncAndFlushRacingWritesEndAndAddUp(t *testing.T) {
	for _, durable := range []bool{false, true} {
		for _, up := range []bool{false, true} {
			for _, wait := range []time.Duration{0, time.Minute} {
				name := fmt.Sprintf("durable %v, up %v, wait %v", durable, up, wait)
				f := &fakeNet{}
				if !up {
					f.dialErr = errors.New("down")
				}
				m := newFake(t, f, conn.WithBackoff(time.Millisecond, 3*time.Millisecond))
				opts := []conn.BatchOption{conn.WithSpool(t.TempDir(), 64<<10), conn.WithBufferSize(4 << 10), conn.WithCloseTimeout(100 * time.Millisecond), conn.WithWaitWhenFull(wait)}
				if durable {
					opts = append(opts, conn.WithDurableSpool(time.Millisecond))
				}
				w, err := conn.OpenBatchWriter(m, opts...)
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				for g := range 4 {
					wg.Go(func() {
						for i := 0; ; i++ {
							_, err := fmt.Fprintf(w, "g%d %d %s\n", g, i, strings.Repeat("q", 200))
							if errors.Is(err, conn.ErrClosed) {
								return
							}
							if g == 0 && i%50 == 0 {
								ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
								w.Sync(ctx)
								w.Flush(ctx)
								cancel()
							}
						}
					})
				}
				time.Sleep(30 * time.Millisecond)
				closed := make(chan error, 1)
				go func() { closed <- w.Close() }()
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
					defer cancel()
					w.Sync(ctx)
				})
				ended := make(chan struct{})
				go func() {
					<-closed
					wg.Wait()
					close(ended)
				}()
				select {
				case <-ended:
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: Close or the Writes still running after 10 s", name)
				}
				if st := w.Stats(); st.Queue.Messages != 0 {
					t.Errorf("%s: after Close, Queue.Messages %d (Accepted %d, Written %d, Discarded %d, Left %d); want 0: each accepted message written, discarded or left",
						name, st.Queue.Messages, st.Accepted, st.Written, st.Discarded, st.Left)
				}
			}
		}
	}
}

// With acknowledgements, a Close while the peer answers nothing leaves
// what it did not acknowledge on disk, counted in Left and nowhere else;
// the next writer delivers it.
func TestSpoolWithAcksClosedWhileStalledLeavesTheUnacknowledgedInLeft(t *testing.T) {
	dir := t.TempDir()
	s := newAckServer(t)
	m, w := ackedSpool(t, s, dir, conn.WithDurableSpool(time.Millisecond), conn.WithBufferSize(16<<10), conn.WithCloseTimeout(100*time.Millisecond))
	const n = 6000
	for i := 0; i < n; i += 1000 {
		writeNumbered(t, w, i, i+1000)
		s.resetAll()
	}
	s.stall()
	cerr := w.Close()
	st := w.Stats()
	if st.Queue.Messages != 0 || st.Discarded != 0 || st.Acked+st.Left != n {
		t.Errorf("after Close (%v): Acked %d, Left %d, Discarded %d, Queue.Messages %d; want Acked+Left = %d, nothing discarded or queued",
			cerr, st.Acked, st.Left, st.Discarded, st.Queue.Messages, n)
	}
	s.release()
	m.Close()

	_, w2 := ackedSpool(t, s, dir, conn.WithDurableSpool(0))
	flushWithin(t, w2, 20*time.Second)
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	checkAllOnce(t, s.Got(), n)
	if got := w2.Stats().Spool.Recovered; got < st.Left {
		t.Errorf("the next writer recovered %d messages, want at least the %d Left", got, st.Left)
	}
}
