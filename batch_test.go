package conn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/seed44b27a20/conn"
)

func TestBatchWriterCoalescesWhileDisconnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tick := make(chan time.Time)
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
		w := conn.NewBatchWriter(m)
		const n = 1000
		line := []byte("0123456789012345678901234567890123456789012345678\n") // 51 bytes
		for range n {
			if _, err := w.Write(line); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if q := w.Stats().Queue; q.Messages != n || q.Bytes != n*len(line) {
			t.Errorf("Stats().Queue = %+v, want %d messages, %d bytes", q, n, n*len(line))
		}
		time.Sleep(time.Second)
		if age := w.Stats().Queue.OldestAge; age != time.Second {
			t.Errorf("oldest age %v, want 1s", age)
		}

		f.set(func(f *fakeNet) { f.dialErr = nil })
		tick <- time.Now()
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := f.Conn(0)
		if want, have := int64(n*len(line)), c.written.Load(); want != have {
			t.Errorf("bytes written %d, want %d", have, want)
		}
		// 51,000 bytes fit in one write of at most 64 KiB.
		if have := c.writes.Load(); have != 1 {
			t.Errorf("%d writes on the connection, want 1", have)
		}
		bs := w.Stats()
		if bs.Accepted != n || bs.Written != n || bs.Writes != 1 || bs.Dropped != 0 || bs.Queue.Messages != 0 ||
			bs.WrittenBytes != n*uint64(len(line)) || bs.AcceptedBytes != n*uint64(len(line)) {
			t.Errorf("stats %+v", bs)
		}
		time.Sleep(time.Second)
		if age := w.Stats().Queue.OldestAge; age != 0 {
			t.Errorf("oldest age %v with nothing queued, want 0", age)
		}
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := w.Write(line); !errors.Is(err, conn.ErrClosed) {
			t.Errorf("Write after Close: %v, want ErrClosed", err)
		}
		m.Close()
	})
}

func TestBatchWriterDropsExactlyWhatDoesNotFit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f)
		w := conn.NewBatchWriter(m, conn.WithBufferSize(100*(100+conn.MessageOverhead)), conn.WithCloseTimeout(time.Second))
		var accepted, full int
		for i := range 300 {
			_, err := fmt.Fprintf(w, "%099d\n", i) // 100 bytes
			switch {
			case err == nil:
				accepted++
			case errors.Is(err, conn.ErrBufferFull):
				full++
			default:
				t.Fatal(err)
			}
		}
		if _, err := w.Write(make([]byte, 100*100+99*conn.MessageOverhead+1)); !errors.Is(err, conn.ErrTooLarge) {
			t.Errorf("a message larger than the buffer: %v, want ErrTooLarge", err)
		}
		if accepted != 100 || full != 200 {
			t.Errorf("accepted %d, full %d; want 100 and 200", accepted, full)
		}
		st := w.Stats()
		if st.Accepted != 100 || st.Dropped != 201 || st.Rejected != 201 || st.Discarded != 0 || st.DroppedBytes != 200*100+100*100+99*conn.MessageOverhead+1 {
			t.Errorf("stats %+v", st)
		}
		start := time.Now()
		err := w.Close()
		if !errors.Is(err, conn.ErrUnflushed) || time.Since(start) != time.Second {
			t.Errorf("Close against a dead peer: %v after %v, want ErrUnflushed after 1s", err, time.Since(start))
		}
		if st := w.Stats(); st.Dropped != 301 || st.Written != 0 || st.Queue.Messages != 0 {
			t.Errorf("after Close: %+v", st)
		}
		m.Close()
	})
}

func TestBatchWriterWaitWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tick := make(chan time.Time)
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
		w := conn.NewBatchWriter(m, conn.WithBufferSize(100+conn.MessageOverhead), conn.WithWaitWhenFull(2*time.Second))
		if _, err := w.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := w.Write(make([]byte, 1)); !errors.Is(err, conn.ErrBufferFull) || time.Since(start) != 2*time.Second {
			t.Errorf("Write into a full buffer: %v after %v, want ErrBufferFull after 2s", err, time.Since(start))
		}
		done := make(chan error)
		go func() { _, err := w.Write(make([]byte, 50)); done <- err }()
		time.Sleep(time.Second)
		f.set(func(f *fakeNet) { f.dialErr = nil })
		tick <- time.Now()
		if err := <-done; err != nil {
			t.Errorf("a waiting Write when room was made: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
		if st := w.Stats(); st.Written != 2 || st.Dropped != 1 {
			t.Errorf("stats %+v, want 2 written, 1 dropped", st)
		}
		m.Close()
	})
}

func TestBatchWriterRewritesAPartlyWrittenMessageWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := newFake(t, f, conn.WithBackoff(time.Second, time.Minute))
		w := conn.NewBatchWriter(m, conn.WithMaxBatch(25))
		if m.Take() == nil {
			t.Fatal("no connection")
		}
		first := f.Conn(0)
		first.failAfter(15, errBroken) // accepts 15 bytes, then fails
		for _, msg := range []string{"aaaaaaaaa\n", "bbbbbbbbb\n", "ccccccccc\n"} {
			w.Write([]byte(msg))
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if want, have := "aaaaaaaaa\nbbbbb", first.data(); want != have {
			t.Errorf("first connection got %q, want %q", have, want)
		}
		if want, have := "bbbbbbbbb\nccccccccc\n", f.Conn(1).data(); want != have {
			t.Errorf("second connection got %q, want %q", have, want)
		}
		if st := w.Stats(); st.Written != 3 || st.Retried != 1 || st.WrittenBytes != 30 {
			t.Errorf("stats %+v, want 3 written (30 bytes), 1 retried", st)
		}
		w.Close()
		m.Close()
	})
}

func TestBatchWriterEndsWithItsManager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f)
		w := conn.NewBatchWriter(m)
		w.Write([]byte("x"))
		m.Close()
		synctest.Wait() // the background writer has ended: synctest would report it otherwise
		if err := w.Close(); !errors.Is(err, conn.ErrUnflushed) {
			t.Errorf("Close after the Manager's: %v, want ErrUnflushed", err)
		}
	})
}

// The options: what each sets, and the values below 1 that keep the
// defaults.
func TestBatchWriterOptions(t *testing.T) {
	msg := []byte("0123456789") // 10 bytes
	t.Run("max batch", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			tick := make(chan time.Time)
			f := &fakeNet{dialErr: errors.New("down")}
			m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
			w := conn.NewBatchWriter(m, conn.WithMaxBatch(20), conn.WithMaxBatch(0), conn.WithMaxBatch(-1))
			for range 10 {
				w.Write(msg)
			}
			synctest.Wait() // the first dial has failed
			f.set(func(f *fakeNet) { f.dialErr = nil })
			tick <- time.Now()
			if err := w.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if want, have := int64(5), f.Conn(0).writes.Load(); want != have {
				t.Errorf("%d writes of 100 bytes with batches of at most 20, want %d", have, want)
			}
			w.Close()
			m.Close()
		})
	})
	t.Run("buffer size", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeNet{dialErr: errors.New("down")}
			m := newFake(t, f)
			w := conn.NewBatchWriter(m, conn.WithBufferSize(3*(10+conn.MessageOverhead)), conn.WithBufferSize(0), conn.WithBufferSize(-5))
			var accepted int
			for range 5 {
				if _, err := w.Write(msg); err == nil {
					accepted++
				}
			}
			if accepted != 3 {
				t.Errorf("%d of 5 messages of 10 bytes accepted by a buffer for 3, want 3", accepted)
			}
			big := conn.NewBatchWriter(m, conn.WithBufferSize(0))
			if _, err := big.Write(make([]byte, conn.DefaultBufferSize-conn.MessageOverhead)); err != nil {
				t.Errorf("a buffer of size 0 does not keep the default: %v", err)
			}
			big.Close()
			w.Close()
			m.Close()
		})
	})
	t.Run("close timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeNet{dialErr: errors.New("down")}
			m := newFake(t, f)
			for _, tc := range []struct {
				opts []conn.BatchOption
				want time.Duration
			}{
				{[]conn.BatchOption{conn.WithCloseTimeout(time.Second)}, time.Second},
				{[]conn.BatchOption{conn.WithCloseTimeout(time.Second), conn.WithCloseTimeout(0)}, time.Second},
				{[]conn.BatchOption{conn.WithCloseTimeout(-time.Second)}, conn.DefaultCloseTimeout},
			} {
				w := conn.NewBatchWriter(m, tc.opts...)
				w.Write(msg)
				start := time.Now()
				w.Close()
				if have := time.Since(start); have != tc.want {
					t.Errorf("Close took %v, want %v", have, tc.want)
				}
			}
			m.Close()
		})
	})
	t.Run("wait when full", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeNet{dialErr: errors.New("down")}
			m := newFake(t, f)
			for _, d := range []time.Duration{0, -time.Second} {
				w := conn.NewBatchWriter(m, conn.WithBufferSize(10+conn.MessageOverhead), conn.WithWaitWhenFull(d))
				w.Write(msg)
				start := time.Now()
				if _, err := w.Write(msg); !errors.Is(err, conn.ErrBufferFull) || time.Since(start) != 0 {
					t.Errorf("WithWaitWhenFull(%v): %v after %v, want ErrBufferFull at once", d, err, time.Since(start))
				}
				w.Close()
			}
			m.Close()
		})
	})
}

// A single message is written without waiting for a second one, and its
// age is reported while it waits.
func TestBatchWriterWritesALoneMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := newFake(t, f)
		w := conn.NewBatchWriter(m)
		if _, err := w.Write([]byte("alone\n")); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if want, have := "alone\n", f.Conn(0).data(); want != have {
			t.Errorf("the connection got %q, want %q", have, want)
		}
		w.Close()
		m.Close()
	})
}

// A write that fails exactly at a message boundary leaves no message partly
// written: nothing is counted as retried. One that fails inside a message
// of a later batch is.
func TestBatchWriterCountsRetriedMessagesExactly(t *testing.T) {
	for _, tc := range []struct {
		failAfter int
		retried   uint64
	}{
		{20, 0}, // after two whole messages: the second write fails at its start
		{30, 0}, // inside the second write, at a message boundary
		{25, 1}, // inside the third message, in the second write
	} {
		synctest.Test(t, func(t *testing.T) {
			tick := make(chan time.Time)
			first := true
			f := &fakeNet{dialErr: errors.New("down"), prepare: func(c *fakeConn) {
				if first {
					c.limit, c.failLimit, first = tc.failAfter, errBroken, false
				}
			}}
			m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
			w := conn.NewBatchWriter(m, conn.WithMaxBatch(20))
			for i := range 5 {
				fmt.Fprintf(w, "%09d\n", i) // 10 bytes; all queued, then written 20 at a time
			}
			synctest.Wait()
			f.set(func(f *fakeNet) { f.dialErr = nil })
			tick <- time.Now()
			synctest.Wait()
			tick <- time.Now() // the backoff after the first connection failed
			if err := w.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := w.Stats()
			if st.Retried != tc.retried || st.Written != 5 || st.WrittenBytes != 50 {
				t.Errorf("failing after %d bytes: stats %+v, want 5 written, %d retried", tc.failAfter, st, tc.retried)
			}
			if want, have := 50-tc.failAfter/10*10, len(f.Conn(1).data()); want != have {
				t.Errorf("the second connection got %d bytes, want %d", have, want)
			}
			w.Close()
			m.Close()
		})
	}
}

// A datagram too large to send is dropped alone, counted as discarded, and
// reported by the Flush that waited for it; the messages before it go out.
func TestBatchWriterDropsAnUnsendableDatagramAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tick := make(chan time.Time)
		f := &fakeNet{dialErr: errors.New("down"), prepare: func(c *fakeConn) { c.maxWrite = 100 }}
		m := conn.New("udp", "x:1", conn.WithDialer(f.Dial), conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
		defer m.Close()
		w := conn.NewBatchWriter(m, conn.WithMaxBatch(1000))
		w.Write(make([]byte, 10))
		w.Write(make([]byte, 20))
		w.Write(make([]byte, 600)) // the last of its batch
		synctest.Wait()
		f.set(func(f *fakeNet) { f.dialErr = nil })
		tick <- time.Now()
		err := w.Flush(context.Background())
		if !errors.Is(err, conn.ErrUnflushed) {
			t.Errorf("Flush: %v, want ErrUnflushed", err)
		}
		st := w.Stats()
		if st.Discarded != 1 || st.Dropped != 1 || st.DroppedBytes != 600 || st.Written != 2 || st.WrittenBytes != 30 ||
			st.Queue.Messages != 0 || st.Queue.Bytes != 0 {
			t.Errorf("stats %+v, want the message of 600 bytes discarded and the two others written", st)
		}
		time.Sleep(time.Second)
		if age := w.Stats().Queue.OldestAge; age != 0 {
			t.Errorf("oldest age %v with nothing queued, want 0", age)
		}
		if m.Stats().Lost != 0 {
			t.Error("the connection was lost for a message too large")
		}
		w.Close()
	})
}

// A Flush reports a message dropped before it was called, once.
func TestFlushReportsAnEarlierDropOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{}
		m := conn.New("udp", "x:1", conn.WithDialer(f.Dial))
		defer m.Close()
		w := conn.NewBatchWriter(m)
		if m.Take() == nil {
			t.Fatal("no connection")
		}
		f.Conn(0).failAfter(0, &net.OpError{Op: "write", Err: conn.ErrMsgSize})
		w.Write(make([]byte, 600))
		synctest.Wait() // dropped before Flush is called
		if err := w.Flush(context.Background()); !errors.Is(err, conn.ErrUnflushed) {
			t.Errorf("Flush after the drop: %v, want ErrUnflushed", err)
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Errorf("a second Flush: %v, want nil: the drop was reported", err)
		}
		w.Close()
	})
}

// Concurrent Flushes each report the drops among the messages accepted
// before them, and no drop is reported twice.
func TestConcurrentFlushesReportTheirOwnDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{}) // each write on the connection takes one token
		f := &fakeNet{prepare: func(c *fakeConn) { c.maxWrite, c.gate = 100, gate }}
		m := conn.New("udp", "x:1", conn.WithDialer(f.Dial))
		defer m.Close()
		w := conn.NewBatchWriter(m)
		if m.Take() == nil {
			t.Fatal("no connection")
		}
		flush := func() chan error {
			done := make(chan error, 1)
			go func() { done <- w.Flush(context.Background()) }()
			return done
		}
		w.Write(make([]byte, 10)) // the writer takes it and waits at the gate
		a := flush()              // waits for it only
		synctest.Wait()
		w.Write(make([]byte, 600)) // too large: it will be dropped
		w.Write(make([]byte, 700)) // too
		b := flush()               // waits for all three
		synctest.Wait()
		gate <- struct{}{} // the first message is written
		if err := <-a; err != nil {
			t.Errorf("the first Flush: %v, want nil: its message was written", err)
		}
		synctest.Wait() // the first Flush is gone when the others are dropped
		close(gate)
		if err := <-b; !errors.Is(err, conn.ErrUnflushed) || !strings.Contains(err.Error(), ": 2 dropped") {
			t.Errorf("the second Flush: %v, want ErrUnflushed for 2 messages", err)
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Errorf("a third Flush: %v, want nil: the drops were reported", err)
		}
		w.Close()
	})
}

// Messages dropped when the Manager closes are reported by a waiting Flush
// only if it waited for them; the rest by the next Flush. A drop that came
// before the Flush was called counts for it too.
func TestFlushReportsOnlyTheDropsItWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{prepare: func(c *fakeConn) { c.maxWrite = 100 }}
		m := conn.New("udp", "x:1", conn.WithDialer(f.Dial), conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return nil }))
		w := conn.NewBatchWriter(m)
		w.Write([]byte("zero"))
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.Write(make([]byte, 600)) // dropped as too large
		synctest.Wait()
		f.Conn(0).fail(errBroken) // the connection dies, and no other comes
		w.Write([]byte("two"))
		done := make(chan error, 1)
		go func() { done <- w.Flush(context.Background()) }() // waits for "two"
		synctest.Wait()
		w.Write([]byte("three"))
		m.Close() // "two" and "three" are discarded
		err := <-done
		if !errors.Is(err, conn.ErrUnflushed) || !strings.Contains(err.Error(), ": 2 dropped") {
			t.Errorf("the Flush: %v, want ErrUnflushed for 2 messages: the one too large and \"two\"", err)
		}
		err = w.Flush(context.Background())
		if !errors.Is(err, conn.ErrUnflushed) || !strings.Contains(err.Error(), ": 1 dropped") {
			t.Errorf("the next Flush: %v, want ErrUnflushed for \"three\"", err)
		}
		w.Close()
	})
}

// A Write waiting for room is accepted once the message fits exactly.
func TestBatchWriterWaitsUntilTheMessageFitsExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tick := make(chan time.Time)
		f := &fakeNet{dialErr: errors.New("down")}
		m := newFake(t, f, conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
		w := conn.NewBatchWriter(m, conn.WithBufferSize(100+conn.MessageOverhead), conn.WithWaitWhenFull(time.Minute))
		w.Write(make([]byte, 100))
		synctest.Wait()
		done := make(chan error)
		go func() { _, err := w.Write(make([]byte, 100)); done <- err }()
		synctest.Wait()
		f.set(func(f *fakeNet) { f.dialErr = nil })
		tick <- time.Now()
		if err := <-done; err != nil {
			t.Errorf("a 100-byte Write waiting on an emptied 100-byte buffer: %v", err)
		}
		w.Close()
		m.Close()
	})
}

// gatedConn completes its first Write only when the test opens the gate,
// whatever the deadline says: a Write that finishes just as the
// BatchWriter's Close expires the deadline to interrupt it. Later Writes
// are a stallConn's: they fail once the deadline has passed.
type gatedConn struct {
	*stallConn
	gate  chan struct{}
	first sync.Once
}

func (c *gatedConn) Write(b []byte) (n int, err error) {
	gated := false
	c.first.Do(func() { gated = true })
	if gated {
		<-c.gate
		return len(b), nil
	}
	return c.stallConn.Write(b)
}

// Close interrupts a Write that holds it up by expiring the write deadline;
// without a write timeout it must clear that deadline again, or every
// later Write on the connection fails as timed out.
func TestBatchWriterCloseLeavesNoExpiredDeadlineWithoutAWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &gatedConn{stallConn: newStallConn(), gate: make(chan struct{})}
		c.flow(true)
		var dials atomic.Int32
		m := conn.New("gated", "", conn.WithWriteTimeout(0), conn.WithDialer(
			func(context.Context, string, string) (net.Conn, error) {
				if dials.Add(1) > 1 {
					return newStallConn(), nil
				}
				return c, nil
			}))
		defer m.Close()
		w := conn.NewBatchWriter(m, conn.WithCloseTimeout(100*time.Millisecond))
		if _, err := w.Write([]byte("held up\n")); err != nil {
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		go func() { closed <- w.Close() }()
		time.Sleep(200 * time.Millisecond) // past the close timeout: the deadline is expired
		synctest.Wait()
		close(c.gate) // the held-up Write completes after all
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := m.Write([]byte("later\n")); err != nil {
			t.Fatalf("Write after the BatchWriter's Close: %v", err)
		}
		if n := dials.Load(); n != 1 {
			t.Errorf("%d dials, want 1: the connection was fine", n)
		}
	})
}

// A Write refused because the BatchWriter or its Manager was closed is
// counted in Rejected and Dropped like any refused message, and its error
// says which of the two was closed.
func TestBatchWriterCountsWritesRefusedAfterClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*conn.BatchWriter, *conn.Manager)
		want string
	}{
		{"BatchWriter closed", func(w *conn.BatchWriter, _ *conn.Manager) { w.Close() }, "conn: batch writer closed"},
		{"Manager closed", func(_ *conn.BatchWriter, m *conn.Manager) { m.Close() }, "conn: manager closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := newFake(t, &fakeNet{})
				w := conn.NewBatchWriter(m)
				if _, err := w.Write([]byte("written\n")); err != nil {
					t.Fatal(err)
				}
				if err := w.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				tc.stop(w, m)
				synctest.Wait()
				for range 10 {
					n, err := w.Write([]byte("late\n"))
					if n != 0 || !errors.Is(err, conn.ErrClosed) || err.Error() != tc.want {
						t.Fatalf("Write: %d, %v; want 0 and %q matching ErrClosed", n, err, tc.want)
					}
				}
				st := w.Stats()
				if st.Accepted != 1 || st.Written != 1 || st.Rejected != 10 || st.Discarded != 0 ||
					st.Dropped != 10 || st.DroppedBytes != 50 {
					t.Errorf("stats %+v, want 1 accepted and written, 10 rejected (50 bytes)", st)
				}
				w.Close()
				m.Close()
			})
		})
	}
}

// A Write waiting for room (WithWaitWhenFull) when Close is called gives
// up with the BatchWriter's closed error, counted as rejected.
func TestBatchWriterWriteWaitingForRoomEndsWithClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newFake(t, &fakeNet{dialErr: errors.New("down")})
		w := conn.NewBatchWriter(m, conn.WithBufferSize(10+conn.MessageOverhead), conn.WithWaitWhenFull(time.Hour),
			conn.WithCloseTimeout(time.Second))
		if _, err := w.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		refused := make(chan error, 1)
		go func() {
			_, err := w.Write([]byte("x"))
			refused <- err
		}()
		synctest.Wait()
		w.Close()
		err := <-refused
		if !errors.Is(err, conn.ErrClosed) || err.Error() != "conn: batch writer closed" {
			t.Errorf("the waiting Write returned %v, want the batch writer's closed error", err)
		}
		if st := w.Stats(); st.Rejected != 1 || st.Discarded != 1 || st.Dropped != 2 || st.DroppedBytes != 11 {
			t.Errorf("stats %+v, want 1 rejected, 1 discarded, 2 dropped (11 bytes)", st)
		}
		m.Close()
	})
}

// Once the datagram too large is found and dropped, writes carry several
// messages again: only the messages of the batch that failed go one by one.
func TestBatchWriterBatchesAgainAfterAnUnsendableDatagram(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tick := make(chan time.Time)
		gate := make(chan struct{}) // each write on the connection takes one token
		f := &fakeNet{dialErr: errors.New("down"), prepare: func(c *fakeConn) { c.maxWrite, c.gate = 100, gate }}
		m := conn.New("udp", "x:1", conn.WithDialer(f.Dial), conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return tick }))
		defer m.Close()
		w := conn.NewBatchWriter(m, conn.WithMaxBatch(1000))
		w.Write(make([]byte, 10))
		w.Write(make([]byte, 20))
		w.Write(make([]byte, 600))
		synctest.Wait()
		f.set(func(f *fakeNet) { f.dialErr = nil })
		tick <- time.Now()
		for range 4 { // the batch of three fails; then each alone, the last dropped
			gate <- struct{}{}
		}
		if err := w.Flush(context.Background()); !errors.Is(err, conn.ErrUnflushed) {
			t.Fatalf("Flush: %v, want ErrUnflushed", err)
		}
		before := w.Stats()
		if before.Written != 2 || before.Discarded != 1 || before.Writes != 2 {
			t.Fatalf("stats %+v, want two written alone and the large one discarded", before)
		}
		w.Write([]byte("a")) // the writer takes it, perhaps alone, and waits at the gate
		w.Write([]byte("b"))
		w.Write([]byte("c"))
		gate <- struct{}{}
		close(gate)
		if err := w.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if st := w.Stats(); st.Written != 5 || st.Writes-before.Writes > 2 {
			t.Fatalf("stats %+v: the three messages after the drop took %d writes, want at most 2", st, st.Writes-before.Writes)
		}
		w.Close()
	})
}

// A write that fails having written nothing leaves the oldest message's
// age running: Queue.OldestAge counts from when the message was first
// taken, not from the failure.
func TestOldestAgeRunsOnAcrossAFailedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		f := &fakeNet{prepare: func(c *fakeConn) { c.gate = gate }}
		m := conn.New("tcp", "x:1", conn.WithDialer(f.Dial), conn.WithAfterFunc(func(time.Duration) <-chan time.Time { return nil }))
		defer m.Close()
		w := conn.NewBatchWriter(m)
		if m.Take() == nil {
			t.Fatal("no connection")
		}
		w.Write([]byte("x"))
		synctest.Wait() // the writer took it and waits at the gate
		time.Sleep(time.Second)
		f.set(func(f *fakeNet) { f.dialErr = errors.New("down") })
		f.Conn(0).failAfter(0, errBroken)
		close(gate)
		synctest.Wait() // the write failed with nothing written; no connection comes
		st := w.Stats()
		if st.Written != 0 || st.Queue.Messages != 1 || st.Queue.OldestAge != time.Second {
			t.Fatalf("stats %+v: want the message waiting, 1s old", st)
		}
		w.Close()
	})
}
