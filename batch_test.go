package conn_test

import (
	"context"
	"errors"
	"fmt"
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
		st := m.Stats()
		if q := st.Queue; q.Messages != n || q.Bytes != n*len(line) {
			t.Errorf("Manager.Stats().Queue = %+v, want %d messages, %d bytes", q, n, n*len(line))
		}
		time.Sleep(time.Second)
		if age := m.Stats().Queue.OldestAge; age != time.Second {
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
		if bs.Accepted != n || bs.Written != n || bs.Writes != 1 || bs.Dropped != 0 || bs.Queue.Messages != 0 {
			t.Errorf("stats %+v", bs)
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
		w := conn.NewBatchWriter(m, conn.WithBufferSize(10_000), conn.WithCloseTimeout(time.Second))
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
		if _, err := w.Write(make([]byte, 10_001)); !errors.Is(err, conn.ErrTooLarge) {
			t.Errorf("a message larger than the buffer: %v, want ErrTooLarge", err)
		}
		if accepted != 100 || full != 200 {
			t.Errorf("accepted %d, full %d; want 100 and 200", accepted, full)
		}
		st := w.Stats()
		if st.Accepted != 100 || st.Dropped != 201 || st.DroppedBytes != 200*100+10_001 {
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
		w := conn.NewBatchWriter(m, conn.WithBufferSize(100), conn.WithWaitWhenFull(2*time.Second))
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
		if st := w.Stats(); st.Written != 3 || st.Retried != 1 {
			t.Errorf("stats %+v, want 3 written, 1 retried", st)
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
