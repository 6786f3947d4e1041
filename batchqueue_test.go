package conn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/internal/testnet"
)

// padding is the length of message seq of a producer in
// TestBatchWriterManyProducersMessagesOfEverySize: mostly small, some empty,
// some larger than a write, a few larger than a segment.
func padding(seq int) int {
	switch {
	case seq%7 == 3:
		return -1 // an empty message
	case seq%499 == 17:
		return 150<<10 + seq // alone in a segment of its own
	case seq%97 == 5:
		return 70<<10 + seq // larger than a write
	}
	return seq * 31 % 900
}

// Producers writing at once messages of every size, 0 and larger than a
// segment included, through a buffer that keeps filling: every message
// arrives whole, each producer's in order, and the counters add up.
func TestBatchWriterManyProducersMessagesOfEverySize(t *testing.T) {
	const (
		producers = 8
		perWriter = 1500
	)
	sink := testnet.NewSink(t, "tcp")
	m := conn.New("tcp", sink.Addr())
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithBufferSize(1<<20), conn.WithWaitWhenFull(time.Minute))
	var (
		wg          sync.WaitGroup
		lines       atomic.Int64
		bytesQueued atomic.Int64
	)
	for p := range producers {
		wg.Go(func() {
			var b []byte
			for seq := range perWriter {
				b = b[:0]
				if n := padding(seq); n >= 0 {
					b = fmt.Appendf(b, "p%d %d ", p, seq)
					b = append(b, bytes.Repeat([]byte{'x'}, n)...)
					b = append(b, '\n')
					lines.Add(1)
				}
				if _, err := w.Write(b); err != nil {
					t.Errorf("producer %d, message %d: %v", p, seq, err)
					return
				}
				bytesQueued.Add(int64(len(b)))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := w.Stats()
	const total = producers * perWriter
	if st.Accepted != total || st.Written != total || st.Dropped != 0 || st.Queue.Messages != 0 ||
		st.AcceptedBytes != uint64(bytesQueued.Load()) || st.WrittenBytes != st.AcceptedBytes {
		t.Errorf("stats %+v, want %d accepted and written, %d bytes", st, total, bytesQueued.Load())
	}
	if !sink.WaitLines(int(lines.Load()), 20*time.Second) {
		t.Fatalf("sink received %d lines of %d", sink.LineCount(), lines.Load())
	}
	next := make([]int, producers)
	for _, line := range sink.Lines() {
		var p, seq int
		if _, err := fmt.Sscanf(line, "p%d %d ", &p, &seq); err != nil || p < 0 || p >= producers {
			t.Fatalf("torn line %.40q", line)
		}
		for padding(next[p]) < 0 {
			next[p]++
		}
		pad := len(line) - len(fmt.Sprintf("p%d %d ", p, seq))
		if seq != next[p] || pad != padding(seq) || strings.Count(line, "x") != pad {
			t.Fatalf("producer %d: got message %d with %d bytes of padding, want %d with %d", p, seq, pad, next[p], padding(next[p]))
		}
		next[p]++
	}
	if len(sink.Fragments()) != 0 {
		t.Errorf("%d fragments", len(sink.Fragments()))
	}
}

// Writes racing Close: each is accepted and written, or refused with the
// writer's closed error and counted as rejected; nothing else.
func TestBatchWriterCloseRacingWritesCountsExactly(t *testing.T) {
	const producers = 8
	sink := testnet.NewSink(t, "tcp")
	m := conn.New("tcp", sink.Addr())
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithBufferSize(256<<10), conn.WithWaitWhenFull(time.Minute),
		conn.WithCloseTimeout(time.Minute))
	var (
		wg       sync.WaitGroup
		accepted [producers]int
		refused  [producers]int
		started  sync.WaitGroup
	)
	started.Add(producers)
	for p := range producers {
		wg.Go(func() {
			started.Done()
			for seq := 0; refused[p] < 1000; seq++ {
				_, err := fmt.Fprintf(w, "p%d %d\n", p, seq)
				switch {
				case err == nil && refused[p] == 0:
					accepted[p]++
				case err == nil:
					t.Errorf("producer %d: message %d accepted after one was refused", p, seq)
					return
				case err.Error() != "conn: batch writer closed" || !errors.Is(err, conn.ErrClosed):
					t.Errorf("producer %d: %v", p, err)
					return
				default:
					refused[p]++
				}
			}
		})
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	var sumAccepted, sumRefused int
	for p := range producers {
		sumAccepted += accepted[p]
		sumRefused += refused[p]
	}
	st := w.Stats()
	if st.Accepted != uint64(sumAccepted) || st.Written != st.Accepted || st.Rejected != uint64(sumRefused) ||
		st.Dropped != st.Rejected || st.Discarded != 0 {
		t.Errorf("stats %+v; producers saw %d accepted, %d refused", st, sumAccepted, sumRefused)
	}
	if !sink.WaitLines(sumAccepted, 20*time.Second) {
		t.Fatalf("sink received %d lines of %d", sink.LineCount(), sumAccepted)
	}
	next := make([]int, producers)
	for _, line := range sink.Lines() {
		var p, seq int
		if _, err := fmt.Sscanf(line, "p%d %d", &p, &seq); err != nil || p < 0 || p >= producers || seq != next[p] {
			t.Fatalf("line %q: want producer's message %d", line, next[min(max(p, 0), producers-1)])
		}
		next[p]++
	}
	for p := range producers {
		if next[p] != accepted[p] {
			t.Errorf("producer %d: %d lines received, %d accepted", p, next[p], accepted[p])
		}
	}
}

// Empty messages take room too: the buffer holds a bounded number of them.
func TestBatchWriterBoundsEmptyMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newFake(t, &fakeNet{dialErr: errors.New("down")})
		const size = 64 << 10
		w := conn.NewBatchWriter(m, conn.WithBufferSize(size), conn.WithCloseTimeout(time.Second))
		accepted := 0
		for range 2 * size {
			if _, err := w.Write(nil); err == nil {
				accepted++
			} else if !errors.Is(err, conn.ErrBufferFull) {
				t.Fatal(err)
			}
		}
		if want := size / conn.MessageOverhead; accepted != want {
			t.Errorf("%d empty messages accepted by a %d-byte buffer, want %d", accepted, size, want)
		}
		if st := w.Stats(); st.Queue.Messages != accepted || st.Queue.Bytes != 0 || st.Rejected != uint64(2*size-accepted) {
			t.Errorf("stats %+v", st)
		}
		w.Close()
		m.Close()
	})
}

// countingConn is a connection that counts what is written and keeps
// nothing.
type countingConn struct {
	net.Conn // nil: only what a Manager calls is implemented
	written  atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) { c.written.Add(int64(len(b))); return len(b), nil }
func (c *countingConn) Close() error                { return nil }
func (c *countingConn) SetWriteDeadline(time.Time) error {
	return nil
}
func (c *countingConn) LocalAddr() net.Addr  { return fakeRemote }
func (c *countingConn) RemoteAddr() net.Addr { return fakeRemote }

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapSince is what the live heap grew by since base; 0 if it shrank (an
// earlier test's garbage, collected since base was taken).
func heapSince(base uint64) uint64 {
	if now := liveHeap(); now > base {
		return now - base
	}
	return 0
}

// The memory a BatchWriter holds stays within twice its buffer for every
// message size, and goes back once the queue drains and the writer is
// idle.
func TestBatchWriterMemoryIsBoundedAndGivenBack(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 16 MiB buffers")
	}
	const size = 16 << 20
	for _, msgSize := range []int{0, 1, 51, 1000, 40 << 10, 64<<10 + 1, 100 << 10} {
		t.Run(fmt.Sprint(msgSize), func(t *testing.T) {
			var up atomic.Bool
			c := &countingConn{}
			m := conn.NewManager(func(string, string) (net.Conn, error) {
				if !up.Load() {
					return nil, errors.New("down")
				}
				return c, nil
			}, "tcp", "sink", func(time.Duration) <-chan time.Time { return time.After(time.Millisecond) }, log.NewNopLogger())
			defer m.Close()
			base := liveHeap()
			w := conn.NewBatchWriter(m, conn.WithBufferSize(size))
			msg := make([]byte, msgSize)
			accepted := 0
			for {
				if _, err := w.Write(msg); err != nil {
					break
				}
				accepted++
			}
			full := heapSince(base)
			up.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			// Once idle (10 ms), the writer keeps one spare page of the
			// many it keeps under load: the memory goes back.
			drained := heapSince(base)
			for deadline := time.Now().Add(10 * time.Second); drained > 1<<20 && time.Now().Before(deadline); drained = heapSince(base) {
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("%d messages of %d bytes: %.1f MiB held while full (%.2f× the buffer), %.2f MiB once drained",
				accepted, msgSize, float64(full)/(1<<20), float64(full)/size, float64(drained)/(1<<20))
			if full > 2*size+1<<20 {
				t.Errorf("%d bytes held with a %d-byte buffer: more than twice", full, size)
			}
			if drained > 1<<20 {
				t.Errorf("%d bytes still held once drained", drained)
			}
			if want := int64(accepted) * int64(msgSize); c.written.Load() != want {
				t.Errorf("%d bytes written, want %d", c.written.Load(), want)
			}
			w.Close()
		})
	}
}

// Stats and Flush return while producers seal segment after segment (4 KiB
// segments), and the writer keeps writing.
func TestBatchWriterStatsAndFlushWhileSegmentsTurnOver(t *testing.T) {
	sink := testnet.NewSink(t, "tcp")
	m := conn.New("tcp", sink.Addr())
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithBufferSize(4096), conn.WithWaitWhenFull(time.Minute))
	var (
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		calls atomic.Int64
	)
	for p := range 8 {
		wg.Go(func() {
			b := fmt.Appendf(nil, "p%d\n", p)
			for {
				select {
				case <-stop:
					return
				default:
				}
				w.Write(b)
			}
		})
	}
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if i%2 == 0 {
					w.Stats()
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					w.Flush(ctx)
					cancel()
				}
				calls.Add(1)
				runtime.Gosched()
			}
		})
	}
	for range 2 {
		before := calls.Load()
		time.Sleep(time.Second)
		if calls.Load() == before {
			close(stop)
			t.Fatalf("no Stats or Flush returned for a second")
		}
	}
	close(stop)
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Error(err)
	}
	if st := w.Stats(); st.Accepted != st.Written || st.Queue.Messages != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Writes flat out with 4 KiB segments, then Close: every Write returns.
func TestBatchWriterWritesReturnAfterClose(t *testing.T) {
	sink := testnet.NewSink(t, "tcp")
	m := conn.New("tcp", sink.Addr())
	defer m.Close()
	for round := range 10 {
		w := conn.NewBatchWriter(m, conn.WithBufferSize(4096))
		var wg sync.WaitGroup
		for p := range 6 {
			wg.Go(func() {
				b := append(fmt.Appendf(nil, "p%d ", p), bytes.Repeat([]byte{'x'}, 10+p*37)...)
				b = append(b, '\n')
				for {
					if _, err := w.Write(b); errors.Is(err, conn.ErrClosed) {
						return
					}
				}
			})
		}
		time.Sleep(100 * time.Millisecond)
		w.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a Write has not returned 10 s after Close", round)
		}
	}
}
