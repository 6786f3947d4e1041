package bench

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
)

// BenchmarkBatchTCP: 51-byte messages to a loopback TCP server that reads
// and discards, sustained: the BatchWriter waits when its buffer is full
// (WithWaitWhenFull), and the time includes the final Flush, so the figure
// is what reached the socket, not what was queued or dropped.
//
//   - manager: Manager.Write per message (one system call each);
//   - batch: BatchWriter.Write per message;
//   - raw64k: a bare net.Conn writing 64 KiB chunks, the bandwidth
//     ceiling (its ns/op is per 64 KiB chunk; compare MB/s).
//
// p8 runs the message writers from 8·GOMAXPROCS goroutines.
func BenchmarkBatchTCP(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		b.Run("manager", func(b *testing.B) {
			m := tcpManager(b)
			b.SetBytes(int64(len(line)))
			benchWrite(b, m)
		})
		b.Run("batch", func(b *testing.B) {
			w := tcpBatch(b)
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Write(line); err != nil {
					b.Fatal(err)
				}
			}
			flush(b, w)
		})
		b.Run("raw64k", func(b *testing.B) {
			writeChunks(b, newServer(b, true, 1))
		})
	})
	b.Run("p8", func(b *testing.B) {
		b.Run("manager", func(b *testing.B) {
			m := tcpManager(b)
			b.SetBytes(int64(len(line)))
			benchWriteParallel(b, 8, m)
		})
		b.Run("batch", func(b *testing.B) {
			w := tcpBatch(b)
			b.SetBytes(int64(len(line)))
			benchWriteParallel(b, 8, w)
			flush(b, w)
		})
	})
}

// writeChunks writes 64 KiB chunks to s on a bare net.Conn, b.N of them,
// and returns the bytes written.
func writeChunks(b *testing.B, s *server) int64 {
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	var n int64
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
		n += int64(len(chunk))
	}
	return n
}

func tcpManager(b *testing.B) *conn.Manager {
	s := newServer(b, true, 1)
	m := conn.New("tcp", s.addr)
	b.Cleanup(func() { m.Close() })
	writeUntil(b, m, 5*time.Second)
	s.waitAccepted(b, 1, 5*time.Second)
	return m
}

func tcpBatch(b *testing.B) *conn.BatchWriter {
	m := tcpManager(b)
	w := conn.NewBatchWriter(m, conn.WithWaitWhenFull(time.Minute))
	b.Cleanup(func() { w.Close() })
	return w
}

// flush waits, inside the timed region, for everything written to reach
// the socket (with acks: to be acknowledged). b.Loop stops the timer when
// it returns false, so flush starts it again: without that the last
// buffer's worth of messages went uncounted.
func flush(b *testing.B, w *conn.BatchWriter) {
	b.StartTimer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if st := w.Stats(); st.Dropped != 0 {
		b.Fatalf("%d messages dropped", st.Dropped)
	}
}

var _ io.Writer = (*conn.BatchWriter)(nil)
