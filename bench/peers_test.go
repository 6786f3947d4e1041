package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog/diode"
	"go.uber.org/zap/zapcore"

	"github.com/seed44b27a20/conn"
)

// The BatchWriter against what a Go user would pick instead to keep
// logging off the network's time, each over the same kind of connection to
// a loopback TCP sink that reads and discards:
//
//   - conn: a BatchWriter (default options; WithWaitWhenFull where the
//     benchmark counts delivered bytes, so that nothing is dropped) over a
//     Manager;
//   - zap: zapcore.BufferedWriteSyncer (256 KiB, its default) over a
//     Manager: the caller does the write when the buffer fills;
//   - diode: zerolog's diode writer (1,000 slots, the size of zerolog's
//     example; a waiter, not a poller) over a Manager: a lock-free ring
//     that drops the oldest when full, and one Write per message;
//   - bufio: a bufio.Writer (64 KiB) behind a sync.Mutex over a bare
//     net.Conn: the caller does the write when the buffer fills;
//   - conn-spool: conn with a disk-assisted spool (WithSpool): what the
//     spool costs while the connection keeps up;
//   - zap-raw and bufio-manager: zap over a bare net.Conn, bufio over a
//     Manager, so that each peer is measured on both (issue 26).

// asyncWriter is a writer under test: finish pushes out what it buffers
// (its bytes may still be on their way to the socket when it returns);
// dropped counts the messages it gave up so far.
type asyncWriter struct {
	io.Writer
	finish  func() error
	dropped func() int64
}

type peer struct {
	name string
	// open returns a writer to addr; outage says the sink is down, so a
	// writer must drop rather than wait.
	open func(tb testing.TB, addr string, outage bool) asyncWriter
}

var peers = []peer{
	{"conn", openConn},
	{"zap", openZap},
	{"diode", openDiode},
	{"bufio", openBufio},
	{"conn-spool", openConnSpool},
	{"zap-raw", openZapRaw},
	{"bufio-manager", openBufioManager},
}

func nothing() error { return nil }
func noDrops() int64 { return 0 }

// managerTo returns a Manager for addr, connected unless outage.
func managerTo(tb testing.TB, addr string, outage bool) *conn.Manager {
	m := conn.New("tcp", addr)
	tb.Cleanup(func() { m.Close() })
	if !outage && m.Take() == nil {
		tb.Fatalf("bench: no connection to %s", addr)
	}
	return m
}

func openConn(tb testing.TB, addr string, outage bool) asyncWriter {
	var opts []conn.BatchOption
	if !outage {
		opts = append(opts, conn.WithWaitWhenFull(time.Minute))
	}
	return batchWriterTo(tb, addr, outage, opts...)
}

func openConnSpool(tb testing.TB, addr string, outage bool) asyncWriter {
	return batchWriterTo(tb, addr, outage, conn.WithSpool(tb.TempDir(), 0))
}

// batchWriterTo returns a BatchWriter with opts over a Manager for addr.
func batchWriterTo(tb testing.TB, addr string, outage bool, opts ...conn.BatchOption) asyncWriter {
	m := managerTo(tb, addr, outage)
	w, err := conn.OpenBatchWriter(m, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	return asyncWriter{
		Writer: w,
		finish: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return w.Flush(ctx)
		},
		dropped: func() int64 { return int64(w.Stats().Dropped) },
	}
}

func openZap(tb testing.TB, addr string, outage bool) asyncWriter {
	return zapOver(tb, managerTo(tb, addr, outage))
}

func openZapRaw(tb testing.TB, addr string, _ bool) asyncWriter {
	return zapOver(tb, dialRaw(tb, addr))
}

// zapOver returns zap's BufferedWriteSyncer over w.
func zapOver(tb testing.TB, w io.Writer) asyncWriter {
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(w), Size: 256 << 10}
	tb.Cleanup(func() { ws.Stop() })
	return asyncWriter{Writer: ws, finish: ws.Sync, dropped: noDrops}
}

// dialRaw returns a bare net.Conn to addr.
func dialRaw(tb testing.TB, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func openDiode(tb testing.TB, addr string, outage bool) asyncWriter {
	m := managerTo(tb, addr, outage)
	var missed atomic.Int64
	log.SetOutput(io.Discard) // the diode logs every collision of writers on one slot
	d := diode.NewWriter(m, 1000, 0, func(n int) { missed.Add(int64(n)) })
	tb.Cleanup(func() { d.Close() })
	return asyncWriter{Writer: d, finish: nothing, dropped: missed.Load}
}

// lockedBufio is a bufio.Writer made safe for concurrent Writes.
type lockedBufio struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lockedBufio) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *lockedBufio) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

func openBufio(tb testing.TB, addr string, _ bool) asyncWriter {
	return bufioOver(dialRaw(tb, addr))
}

func openBufioManager(tb testing.TB, addr string, outage bool) asyncWriter {
	return bufioOver(managerTo(tb, addr, outage))
}

// bufioOver returns a 64 KiB bufio.Writer behind a mutex over w.
func bufioOver(w io.Writer) asyncWriter {
	l := &lockedBufio{w: bufio.NewWriterSize(w, 64<<10)}
	return asyncWriter{Writer: l, finish: l.flush, dropped: noDrops}
}

// BenchmarkSinkThroughput: b.N 51-byte messages from 1, 8 or 64 producing
// goroutines; the timer stops when the sink has read every byte of every
// message not dropped. ns/op is per message; dropped/op is the share
// dropped (only the diode drops).
func BenchmarkSinkThroughput(b *testing.B) {
	// The ceiling: one goroutine writing 64 KiB chunks on a bare net.Conn
	// (MB/s compares with the writers'; ns/op is per chunk).
	b.Run("raw64k", func(b *testing.B) {
		s := newServer(b, true, 1)
		n := writeChunks(b, s)
		for deadline := time.Now().Add(time.Minute); s.received.Load() < n; {
			if time.Now().After(deadline) {
				b.Fatalf("bench: the sink read %d bytes of %d", s.received.Load(), n)
			}
			time.Sleep(pollInterval)
		}
	})
	for _, producers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("p%d", producers), func(b *testing.B) {
			for _, p := range peers {
				b.Run(p.name, func(b *testing.B) {
					s := newServer(b, true, 1)
					w := p.open(b, s.addr, false)
					s.waitAccepted(b, 1, 5*time.Second)
					b.SetBytes(int64(len(line)))
					b.ReportAllocs()
					n := b.N
					var (
						wg     sync.WaitGroup
						failed atomic.Pointer[error]
					)
					b.ResetTimer()
					for i := range producers {
						k := n / producers
						if i < n%producers {
							k++
						}
						wg.Go(func() {
							for range k {
								if _, err := w.Write(line); err != nil {
									e := err // only e escapes: no allocation per Write
									failed.Store(&e)
									return
								}
							}
						})
					}
					wg.Wait()
					if err := failed.Load(); err != nil {
						b.Fatal(*err)
					}
					if err := w.finish(); err != nil {
						b.Fatal(err)
					}
					awaitDelivered(b, s, w, int64(n))
					b.StopTimer()
					b.ReportMetric(float64(w.dropped())/float64(n), "dropped/op")
				})
			}
		})
	}
}

// awaitDelivered waits until the sink has read every one of n messages
// that w did not drop.
func awaitDelivered(tb testing.TB, s *server, w asyncWriter, n int64) {
	tb.Helper()
	size := int64(len(line))
	for deadline := time.Now().Add(time.Minute); s.received.Load()+w.dropped()*size < n*size; {
		if time.Now().After(deadline) {
			tb.Fatalf("bench: the sink read %d bytes and %d messages were dropped; want %d messages",
				s.received.Load(), w.dropped(), n)
		}
		time.Sleep(pollInterval)
	}
}

// BenchmarkCallerLatency: how long one Write keeps its caller, at an offered
// load of ~200,000 51-byte messages a second (bursts of 200 Writes every
// millisecond), over 300,000 Writes per iteration; run it with
// -benchtime 1x. Each Write is timed with two monotonic clock reads; the
// floor, a Write that does nothing, shows what that timing costs. The
// metrics are percentiles of the per-Write latency, in ns.
func BenchmarkCallerLatency(b *testing.B) {
	const (
		writes = 300_000
		burst  = 200
		every  = time.Millisecond
	)
	floor := peer{"floor", func(testing.TB, string, bool) asyncWriter {
		return asyncWriter{Writer: io.Discard, finish: nothing, dropped: noDrops}
	}}
	for _, p := range append(slices.Clone(peers), floor) {
		b.Run(p.name, func(b *testing.B) {
			s := newServer(b, true, 1)
			w := p.open(b, s.addr, false)
			lat := make([]time.Duration, writes)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				for i := 0; i < writes; i += burst {
					if d := time.Until(start.Add(time.Duration(i/burst) * every)); d > 0 {
						time.Sleep(d)
					}
					for j := i; j < i+burst; j++ {
						t0 := time.Now()
						if _, err := w.Write(line); err != nil {
							b.Fatal(err)
						}
						lat[j] = time.Since(t0)
					}
				}
			}
			b.StopTimer()
			if err := w.finish(); err != nil {
				b.Fatal(err)
			}
			slices.Sort(lat)
			for _, q := range []struct {
				unit string
				at   float64
			}{{"p50-ns", 0.5}, {"p99-ns", 0.99}, {"p99.9-ns", 0.999}, {"p99.99-ns", 0.9999}, {"max-ns", 1}} {
				i := min(int(q.at*writes), writes-1)
				b.ReportMetric(float64(lat[i].Nanoseconds()), q.unit)
			}
		})
	}
}

// BenchmarkOutageHeap: the heap a writer takes while the sink is down
// (connections refused), for messages of 0, 1, 51 and 1,000 bytes: 4 times
// the BatchWriter's default 4 MiB buffer in bytes, at least a million and
// at most eight million messages. peak-heap-B is the peak of the heap's
// objects above what they were before the writer was made, sampled every
// millisecond; x-buffer is that over the BatchWriter's 4 MiB. bufio is
// left out: it has no connection to write on. Run it with -benchtime 1x.
func BenchmarkOutageHeap(b *testing.B) {
	const buffer = conn.DefaultBufferSize
	for _, size := range []int{0, 1, 51, 1000} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			for _, p := range peers[:3] {
				b.Run(p.name, func(b *testing.B) {
					addr := closedPort(b)
					msg := bytes.Repeat([]byte("x"), size)
					messages := min(max(4*buffer/max(size, 1), 1_000_000), 8_000_000)
					var peak int64
					for range b.N {
						runtime.GC()
						base := heapObjects()
						w := p.open(b, addr, true)
						h := startHeapPeak()
						for range messages {
							w.Write(msg) // errors (dropped, buffer full) are what an outage means
						}
						peak = max(peak, h.stop()-base)
					}
					b.ReportMetric(float64(peak), "peak-heap-B")
					b.ReportMetric(float64(peak)/buffer, "x-buffer")
				})
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// heapObjects returns the bytes of the heap's objects, live or not yet
// swept.
func heapObjects() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// heapPeak samples heapObjects every millisecond until stopped.
type heapPeak struct {
	done chan struct{}
	peak chan int64
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{done: make(chan struct{}), peak: make(chan int64, 1)}
	go func() {
		peak := heapObjects()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				peak = max(peak, heapObjects())
			case <-h.done:
				h.peak <- max(peak, heapObjects())
				return
			}
		}
	}()
	return h
}

// stop ends the sampling and returns the peak seen.
func (h *heapPeak) stop() int64 {
	close(h.done)
	return <-h.peak
}
