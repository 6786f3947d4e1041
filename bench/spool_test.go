package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// The spool's benchmarks (WithSpool). Disk figures hold for the disk they
// ran on: compare each with "disk", measured in the same run.

// BenchmarkSpoolDurable: the rate at which a durable spool takes messages
// (WithDurableSpool), the time including the last Sync, so that the
// figure is what reached stable storage:
//
//   - disk: 1 MiB writes to one file and an fdatasync at the end, what
//     `dd bs=1M conv=fdatasync` does: the disk's own sequential rate;
//   - down/*: the collector is down (everything stays on disk);
//   - up/*: a loopback sink reads and discards (the spool's feeder and the
//     connection's writer share the CPUs with the writer);
//   - 250ms syncs at most every 250 ms (DefaultSpoolSync), batch after
//     every write to the file.
//
// Messages are 1 KiB, but 51 bytes (the bench's log line) in down-51B.
func BenchmarkSpoolDurable(b *testing.B) {
	b.Run("disk", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "dd"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		block := bytes.Repeat([]byte("d"), 1<<20)
		b.SetBytes(int64(len(block)))
		for b.Loop() {
			if _, err := f.Write(block); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
	})
	kilo := bytes.Repeat([]byte("k"), 1023)
	kilo = append(kilo, '\n')
	for _, c := range []struct {
		name  string
		up    bool
		every time.Duration
		msg   []byte
	}{
		{"down/250ms", false, conn.DefaultSpoolSync, kilo},
		{"down/batch", false, 0, kilo},
		{"down-51B/250ms", false, conn.DefaultSpoolSync, line},
		{"up/250ms", true, conn.DefaultSpoolSync, kilo},
	} {
		b.Run(c.name, func(b *testing.B) {
			addr := closedPort(b)
			if c.up {
				addr = newServer(b, true, 1).addr
			}
			m := managerTo(b, addr, !c.up)
			w, err := conn.OpenBatchWriter(m, conn.WithSpool(b.TempDir(), 1<<40), conn.WithDurableSpool(c.every),
				conn.WithWaitWhenFull(time.Minute), conn.WithCloseTimeout(time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { w.Close() })
			b.SetBytes(int64(len(c.msg)))
			for b.Loop() {
				if _, err := w.Write(c.msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			if err := w.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// spoolOf builds, untimed, a spool in dir holding n bytes of msg, left
// by a durable writer whose collector was down, and returns how many
// messages that is.
func spoolOf(b *testing.B, dir string, n int64, msg []byte) int64 {
	b.StopTimer()
	defer b.StartTimer()
	m := managerTo(b, closedPort(b), true)
	w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 1<<40), conn.WithDurableSpool(conn.DefaultSpoolSync),
		conn.WithWaitWhenFull(time.Minute), conn.WithCloseTimeout(time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	k := n / int64(len(msg))
	for range k {
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	m.Close()
	return k
}

// BenchmarkSpoolOpen: opening a spool that holds 1 GiB of log lines
// (OpenBatchWriter), what a program pays at start after a long outage.
func BenchmarkSpoolOpen(b *testing.B) {
	dir := b.TempDir()
	spoolOf(b, dir, 1<<30, line)
	m := managerTo(b, closedPort(b), true)
	b.ResetTimer()
	for range b.N {
		w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 1<<40), conn.WithCloseTimeout(time.Millisecond))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if st := w.Stats(); st.Spool.Bytes < 1<<30 {
			b.Fatalf("the spool holds %d bytes", st.Spool.Bytes)
		}
		w.Close()
		b.StartTimer()
	}
}

// BenchmarkSpoolDrain: the rate at which a spool holding 256 MiB of log
// lines (51B) or of 1 KiB messages is delivered to a loopback sink that reads and discards, against
// the connection's own rate (memory: the same lines written into a
// BatchWriter without a spool, then flushed). warm reads the spool from
// the page cache; cold drops the page cache first (Linux, as root;
// skipped elsewhere). peak-heap-B is the heap's peak above where it began;
// x-buffer that over the 4 MiB memory buffer.
func BenchmarkSpoolDrain(b *testing.B) {
	const size = 256 << 20
	kilo := append(bytes.Repeat([]byte("k"), 1023), '\n')
	for _, msg := range []struct {
		name string
		p    []byte
	}{{"51B", line}, {"1KiB", kilo}} {
		b.Run(msg.name, func(b *testing.B) {
			b.Run("memory", func(b *testing.B) {
				k := int64(size / len(msg.p))
				b.SetBytes(k * int64(len(msg.p)))
				for range b.N {
					s := newServer(b, true, 1)
					m := managerTo(b, s.addr, false)
					w := conn.NewBatchWriter(m, conn.WithWaitWhenFull(time.Minute))
					for range k {
						w.Write(msg.p)
					}
					flushDrop(b, w)
					w.Close()
				}
			})
			for _, cold := range []bool{false, true} {
				name := "warm"
				if cold {
					name = "cold"
				}
				b.Run(name, func(b *testing.B) {
					var peak int64
					for range b.N {
						dir := b.TempDir()
						k := spoolOf(b, dir, size, msg.p)
						b.SetBytes(k * int64(len(msg.p)))
						if cold && !dropCaches(b) {
							b.Skip("cannot drop the page cache here")
						}
						s := newServer(b, true, 1)
						m := managerTo(b, s.addr, false)
						runtime.GC()
						base := heapObjects()
						h := startHeapPeak()
						b.StartTimer()
						w, err := conn.OpenBatchWriter(m, conn.WithSpool(dir, 1<<40))
						if err != nil {
							b.Fatal(err)
						}
						flushDrop(b, w)
						b.StopTimer()
						peak = max(peak, h.stop()-base)
						if st := w.Stats(); st.Written != uint64(k) || st.Spool.Recovered != uint64(k) {
							b.Fatalf("delivered %d of %d (%+v)", st.Written, k, st)
						}
						w.Close()
					}
					b.ReportMetric(float64(peak), "peak-heap-B")
					b.ReportMetric(float64(peak)/conn.DefaultBufferSize, "x-buffer")
				})
			}
		})
	}
}

func flushDrop(b *testing.B, w *conn.BatchWriter) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// dropCaches writes back and drops the page cache, if it may.
func dropCaches(b *testing.B) bool {
	if runtime.GOOS != "linux" {
		return false
	}
	f, err := os.OpenFile("/proc/sys/vm/drop_caches", os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.WriteString("3\n")
	return err == nil
}
