package bench

import (
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

// BenchmarkRELP: 51-byte messages through a BatchWriter, sustained (it
// waits when its buffer is full), and the time includes the final Flush:
//
//   - plain: over TCP to a server that reads and discards, as
//     BatchTCP/serial/batch; Flush waits for the socket;
//   - relp: RELP with acknowledgements (window 128, librelp's) to a local
//     RELP server (relptest: it parses every frame and answers "200 OK");
//     Flush waits for the last acknowledgement;
//   - relp-window1024: the same with a window of 1,024 messages;
//   - stop-and-wait: RELP with a window of one message: each message waits
//     for its acknowledgement before the next is sent, as clients that ask
//     for an ack per message do (fluent-logger-golang's RequestAck).
//
// msgs/s is the figure to compare: the targets are relp ≥ 50% of plain and
// ≥ 20× stop-and-wait.
func BenchmarkRELP(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		benchMessages(b, tcpBatch(b))
	})
	b.Run("relp", func(b *testing.B) {
		benchMessages(b, relpBatch(b))
	})
	b.Run("relp-window1024", func(b *testing.B) {
		benchMessages(b, relpBatch(b, conn.WithWindow(1024, 0)))
	})
	b.Run("stop-and-wait", func(b *testing.B) {
		// A small buffer, so that the loop waits for room early and b.Loop
		// scales to the real rate (the window, not the buffer, sets it):
		// with 4 MiB it ran a million messages, 30 s.
		benchMessages(b, relpBatch(b, conn.WithWindow(1, 0), conn.WithBufferSize(64<<10)))
	})
}

// benchMessages writes b.N messages through w, flushes, and reports the
// rate.
func benchMessages(b *testing.B, w *conn.BatchWriter) {
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	flush(b, w)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// relpBatch returns a BatchWriter speaking RELP to a local server, its
// session open.
func relpBatch(b *testing.B, opts ...conn.BatchOption) *conn.BatchWriter {
	s := relptest.NewServer(b, relptest.WithoutRecording())
	m := conn.New("tcp", s.Addr())
	b.Cleanup(func() { m.Close() })
	w := conn.NewBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(relp.New()), conn.WithWaitWhenFull(time.Minute)}, opts...)...)
	b.Cleanup(func() { w.Close() })
	if _, err := w.Write(line); err != nil { // the session opens outside the timed loop
		b.Fatal(err)
	}
	flush(b, w)
	return w
}
