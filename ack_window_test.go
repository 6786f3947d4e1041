package conn_test

// The acknowledgement window at its boundaries: how many messages and bytes
// one batch takes, and how many go out unacknowledged, when the window in
// bytes is exactly filled, one byte short, or smaller than a message. The
// window counts message bytes (no MessageOverhead, no framing).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// batchRecorder wraps each connection and records every write carrying
// messages (the handshake and the close frame aside): one batch, as the
// texts of its lines without their sequence numbers. A held write waits,
// before writing, until the test lets it go, so that messages queue
// meanwhile and the writer sees them all at its next look; a failed one
// writes nothing and fails.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]string
	changed chan struct{} // closed and replaced at each batch recorded
	held    *heldBatch    // the next batch waits for its release
	fail    bool          // the next batch writes nothing and fails
}

type heldBatch struct {
	entered chan struct{} // closed when the held write has begun
	letGo   chan struct{} // closed by the test: the held write goes on
}

var errWriteFailed = errors.New("injected write failure, nothing written")

func newBatchRecorder() *batchRecorder {
	return &batchRecorder{changed: make(chan struct{})}
}

func (r *batchRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recordedConn{Conn: c, r: r}, nil
}

// holdNext makes the next batch wait for its release.
func (r *batchRecorder) holdNext() *heldBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = &heldBatch{entered: make(chan struct{}), letGo: make(chan struct{})}
	return r.held
}

// await waits until the held batch has begun.
func (h *heldBatch) await(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer wrote no batch within 10s")
	}
}

func (h *heldBatch) release() { close(h.letGo) }

// awaitBatches waits until n batches were recorded and returns them.
func (r *batchRecorder) awaitBatches(t *testing.T, n int) [][]string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		got, changed := r.batches, r.changed
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d batches written within 10s, want %d: %s", len(got), n, showBatches(got))
		}
	}
}

func (r *batchRecorder) Batches() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.batches...)
}

type recordedConn struct {
	net.Conn
	r *batchRecorder
}

func (c *recordedConn) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte("HELLO\n")) || bytes.HasPrefix(b, []byte("BYE\n")) {
		return c.Conn.Write(b)
	}
	var texts []string
	for line := range strings.Lines(string(b)) {
		_, text, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		texts = append(texts, text)
	}
	r := c.r
	r.mu.Lock()
	held, fail := r.held, r.fail
	r.held, r.fail = nil, false
	if !fail {
		r.batches = append(r.batches, texts)
		close(r.changed)
		r.changed = make(chan struct{})
	}
	r.mu.Unlock()
	if fail {
		return 0, errWriteFailed
	}
	if held != nil {
		close(held.entered)
		select {
		case <-held.letGo:
		case <-time.After(10 * time.Second):
		}
	}
	return c.Conn.Write(b)
}

// showBatches shows batches briefly: each message as its first letter and
// length.
func showBatches(batches [][]string) string {
	var b strings.Builder
	for _, batch := range batches {
		b.WriteString("[")
		for i, text := range batch {
			if i > 0 {
				b.WriteString(" ")
			}
			if text == "" {
				b.WriteString("\"\"")
				continue
			}
			fmt.Fprintf(&b, "%c%d", text[0], len(text))
		}
		b.WriteString("]")
	}
	return b.String()
}

func newRecordedAckWriter(t *testing.T, s *ackServer, opts ...conn.BatchOption) (*batchRecorder, *conn.BatchWriter) {
	t.Helper()
	r := newBatchRecorder()
	m := conn.New("tcp", s.Addr(), conn.WithDialer(r.dial), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(lineAcks{})}, opts...)...)
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	return r, w
}

func writeTexts(t *testing.T, w *conn.BatchWriter, texts ...string) {
	t.Helper()
	for _, text := range texts {
		if _, err := w.Write([]byte(text)); err != nil {
			t.Fatalf("Write %.20q: %v", text, err)
		}
	}
}

func flushWithin(t *testing.T, w *conn.BatchWriter, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v; stats %+v", err, w.Stats())
	}
}

// closeStalled closes w while its acknowledgements are stalled: Close's
// timeout is the time the writer has to send what it should not.
func closeStalled(t *testing.T, w *conn.BatchWriter) {
	t.Helper()
	if err := w.Close(); !errors.Is(err, conn.ErrUnflushed) {
		t.Fatalf("Close with acknowledgements stalled: %v, want ErrUnflushed", err)
	}
}

func checkBatches(t *testing.T, got [][]string, want ...[]string) {
	t.Helper()
	if showBatches(got) != showBatches(want) {
		t.Fatalf("batches %s, want %s", showBatches(got), showBatches(want))
	}
}

func repeat(c string, n int) string { return strings.Repeat(c, n) }

// A window of 20 bytes with 10 in flight: the next batch takes the 10 bytes
// left, exactly (two 5-byte messages), the rest waits for an
// acknowledgement. The same with the cursors in a later segment, past
// acknowledged messages (each larger than the window, so each alone).
func TestAcksWindowBytesNextBatchTakesTheRoomLeft(t *testing.T) {
	for _, later := range []bool{false, true} {
		s := newAckServer(t)
		r, w := newRecordedAckWriter(t, s, conn.WithBufferSize(4096), conn.WithWindow(100, 20), conn.WithCloseTimeout(time.Second))
		var want [][]string
		if later {
			// Three 1500-byte messages: the third opens the second 4 KiB
			// segment. All acknowledged: both cursors there, past it.
			big := []string{repeat("x", 1500), repeat("y", 1500), repeat("z", 1500)}
			for _, text := range big {
				writeTexts(t, w, text)
				flushWithin(t, w, 10*time.Second)
			}
			want = [][]string{{big[0]}, {big[1]}, {big[2]}}
			checkBatches(t, r.Batches(), want...)
		}
		s.stall()
		h := r.holdNext()
		writeTexts(t, w, repeat("a", 10))
		h.await(t)
		if st := w.Stats(); st.Queue.OldestAge <= 0 {
			t.Fatalf("while the first message is being written, Queue.OldestAge is %v", st.Queue.OldestAge)
		}
		writeTexts(t, w, "bbbbb", "ccccc", "ddddd", "eeeee")
		h.release()
		want = append(want, []string{repeat("a", 10)}, []string{"bbbbb", "ccccc"})
		checkBatches(t, r.awaitBatches(t, len(want)), want...)
		closeStalled(t, w)
		checkBatches(t, r.Batches(), want...)
	}
}

// A window of 20 bytes with 10 in flight: a 10-byte message, exactly the
// room left, goes; then, the window full to the byte, nothing more goes
// unacknowledged, not even an empty message.
func TestAcksWindowBytesExactlyFullHoldsEvenAnEmptyMessage(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	r, w := newRecordedAckWriter(t, s, conn.WithWindow(100, 20), conn.WithCloseTimeout(time.Second))
	h1 := r.holdNext()
	writeTexts(t, w, repeat("a", 10))
	h1.await(t)
	writeTexts(t, w, repeat("b", 10))
	h2 := r.holdNext()
	h1.release()
	h2.await(t)
	writeTexts(t, w, "", "c")
	h2.release()
	want := [][]string{{repeat("a", 10)}, {repeat("b", 10)}}
	checkBatches(t, r.awaitBatches(t, 2), want...)
	closeStalled(t, w)
	checkBatches(t, r.Batches(), want...)
	if st := w.Stats(); st.Written != 2 || st.WrittenBytes != 20 || st.Writes != 2 {
		t.Fatalf("stats %+v: want the two 10-byte messages written, in two writes", st)
	}
}

// A window of 20 bytes with 10 in flight: an 11-byte message, one byte more
// than the room left, waits for an acknowledgement.
func TestAcksWindowBytesOneByteTooManyWaits(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	r, w := newRecordedAckWriter(t, s, conn.WithWindow(100, 20), conn.WithCloseTimeout(time.Second))
	h := r.holdNext()
	writeTexts(t, w, repeat("a", 10))
	h.await(t)
	writeTexts(t, w, repeat("b", 11))
	h.release()
	want := []string{repeat("a", 10)}
	checkBatches(t, r.awaitBatches(t, 1), want)
	closeStalled(t, w)
	checkBatches(t, r.Batches(), want)
}

// With acknowledgements flowing, each batch takes what the window has room
// for: a message larger than the whole window goes alone, when nothing
// else is in flight, and nothing goes with it or after it until it is
// acknowledged.
func TestAcksWindowBytesLargerMessageGoesAlone(t *testing.T) {
	s := newAckServer(t)
	r, w := newRecordedAckWriter(t, s, conn.WithWindow(100, 20))
	h := r.holdNext()
	writeTexts(t, w, "x")
	h.await(t)
	writeTexts(t, w, repeat("b", 11), repeat("c", 25), "d")
	h.release()
	flushWithin(t, w, 10*time.Second)
	checkBatches(t, r.Batches(), []string{"x"}, []string{repeat("b", 11)}, []string{repeat("c", 25)}, []string{"d"})
}

// Values below 1 keep the defaults: WithWindow(0, 0), WithAckTimeout(0) and
// WithMaxMessage(0) neither stop delivery nor refuse a message.
func TestAcksZeroOptionsKeepTheDefaults(t *testing.T) {
	s := newAckServer(t)
	_, w := newAckWriter(t, s, conn.WithWindow(0, 0), conn.WithAckTimeout(0), conn.WithMaxMessage(0))
	writeNumbered(t, w, 0, 2)
	writeTexts(t, w, repeat("m", 1000))
	flushWithin(t, w, 10*time.Second)
	if got := s.Got(); len(got) != 3 || got[2] != repeat("m", 1000) {
		t.Fatalf("server took %d messages, want 3", len(got))
	}
	if st := w.Stats(); st.Acked != 3 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// gatedAcks hands each acknowledgement to the writer only when the test
// lets it through, one gate per ReadAck.
type gatedAcks struct {
	lineAcks
	gates []chan struct{}
}

func (p gatedAcks) Open(rw io.ReadWriter) (conn.AckSession, error) {
	s, err := p.lineAcks.Open(rw)
	if err != nil {
		return nil, err
	}
	return &gatedSession{AckSession: s, gates: p.gates}, nil
}

type gatedSession struct {
	conn.AckSession
	gates []chan struct{}
	n     int
}

func (s *gatedSession) ReadAck() (conn.Ack, error) {
	if s.n < len(s.gates) {
		select {
		case <-s.gates[s.n]:
		case <-time.After(10 * time.Second):
		}
		s.n++
	}
	return s.AckSession.ReadAck()
}

// After an acknowledgement of part of what is in flight, Queue.OldestAge
// counts for the messages still waiting for theirs.
func TestAcksOldestAgeAfterAPartialAcknowledgement(t *testing.T) {
	s := newAckServer(t)
	gates := []chan struct{}{make(chan struct{}), make(chan struct{})}
	r := newBatchRecorder()
	m := conn.New("tcp", s.Addr(), conn.WithDialer(r.dial), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, conn.WithAcks(gatedAcks{gates: gates}), conn.WithCloseTimeout(time.Second))
	t.Cleanup(func() {
		for _, g := range gates {
			select {
			case <-g:
			default:
				close(g)
			}
		}
		w.Close()
		m.Close()
	})
	h := r.holdNext()
	writeTexts(t, w, "m1")
	h.await(t)
	writeTexts(t, w, "m2")
	h.release()
	checkBatches(t, r.awaitBatches(t, 2), []string{"m1"}, []string{"m2"})
	close(gates[0]) // the acknowledgement of m1 only
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Acked < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("m1 not acknowledged within 10s: %+v", w.Stats())
		}
		time.Sleep(time.Millisecond) // polling a count; bounded
	}
	if st := w.Stats(); st.Queue.Messages != 1 || st.Queue.Unacked != 1 || st.Queue.OldestAge <= 0 {
		t.Fatalf("stats %+v: want m2 waiting for its acknowledgement, with an age", st)
	}
}

// A message larger than a batch (WithMaxBatch) but within the window is
// pipelined like the rest: several are in flight at once, each in a batch
// of its own, rather than one round trip each.
func TestAcksMessagesLargerThanABatchArePipelined(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	r, w := newRecordedAckWriter(t, s, conn.WithWindow(100, 1<<20), conn.WithMaxBatch(64<<10), conn.WithBufferSize(8<<20))
	big := repeat("L", 70<<10)
	writeTexts(t, w, big, big, big, big)
	// Nothing is acknowledged until release: all four must be out.
	s.awaitGot(4, 10*time.Second)
	if n := len(r.Batches()); n != 4 {
		t.Fatalf("%d batches, want one per message", n)
	}
	s.release()
	flushWithin(t, w, 10*time.Second)
	if st := w.Stats(); st.Acked != 4 || st.Replayed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// How long 200 messages of 60 KiB (within a batch) and of 70 KiB (larger
// than a batch) take against a peer that answers each 5 ms after reading
// it: with large messages pipelined, about the same.
func BenchmarkAcksLargeMessages(b *testing.B) {
	for _, size := range []int{60 << 10, 70 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := newAckServer(b)
			s.set(func(s *ackServer) { s.answerDelay = 5 * time.Millisecond })
			m := conn.New("tcp", s.Addr(), conn.WithLogger(log.NewNopLogger()))
			defer m.Close()
			w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithWindow(128, 64<<20), conn.WithBufferSize(64<<20))
			defer w.Close()
			msg := bytes.Repeat([]byte("x"), size)
			b.SetBytes(int64(200 * size))
			for b.Loop() {
				for range 200 {
					if _, err := w.Write(msg); err != nil {
						b.Fatal(err)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := w.Flush(ctx)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
