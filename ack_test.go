package conn_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// newAckWriter returns a Manager and an acknowledging BatchWriter to s,
// closed at the end of the test.
func newAckWriter(t *testing.T, s *ackServer, opts ...conn.BatchOption) (*conn.Manager, *conn.BatchWriter) {
	t.Helper()
	return newAckWriterWith(t, s, lineAcks{}, opts...)
}

func newAckWriterWith(t *testing.T, s *ackServer, p conn.AckProtocol, opts ...conn.BatchOption) (*conn.Manager, *conn.BatchWriter) {
	t.Helper()
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(p)}, opts...)...)
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	return m, w
}

func writeNumbered(t *testing.T, w *conn.BatchWriter, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := fmt.Fprintf(w, "m%06d", i); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
}

// checkAllOnce checks that the server took messages from..to, each at
// least once, in order of first arrival, and returns the duplicates.
func checkAllOnce(t *testing.T, got []string, n int) (dups int) {
	t.Helper()
	seen := make(map[string]int)
	next := 0
	for _, g := range got {
		seen[g]++
		if seen[g] > 1 {
			dups++
			continue
		}
		if want := fmt.Sprintf("m%06d", next); g != want {
			t.Fatalf("first arrivals out of order: got %q, want %q", g, want)
		}
		next++
	}
	if next != n {
		t.Fatalf("server took %d distinct messages, want %d", next, n)
	}
	return dups
}

func TestAcksEveryMessageAcknowledged(t *testing.T) {
	s := newAckServer(t)
	_, w := newAckWriter(t, s)
	const n = 5000
	writeNumbered(t, w, 0, n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st := w.Stats()
	if st.Acked != n || st.Written != n || st.Replayed != 0 || st.Refused != 0 || st.Queue.Messages != 0 || st.Queue.Unacked != 0 || st.Queue.Bytes != 0 {
		t.Fatalf("stats after Flush: %+v", st)
	}
	if st.AckedBytes != st.AcceptedBytes {
		t.Fatalf("AckedBytes %d, AcceptedBytes %d", st.AckedBytes, st.AcceptedBytes)
	}
	if dups := checkAllOnce(t, s.Got(), n); dups != 0 {
		t.Fatalf("%d duplicates without a lost connection", dups)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.set(func(s *ackServer) {
		if s.byes != 1 || s.opens != 1 {
			t.Errorf("opens %d, byes %d: want one session, closed gracefully", s.opens, s.byes)
		}
	})
}

// A connection reset with messages unacknowledged: they are replayed on
// the next connection, and the duplicates are no more than the replays and
// the window.
func TestAcksReplayAfterReset(t *testing.T) {
	s := newAckServer(t)
	const window = 16
	_, w := newAckWriter(t, s, conn.WithWindow(window, 0))
	const n = 3000
	for _, at := range []int{500, 1500, 2500} {
		s.set(func(s *ackServer) { s.dropAt = at })
		writeNumbered(t, w, at-500, at+500)
		s.awaitGot(at+1, 20*time.Second)
	}
	writeNumbered(t, w, 3500-500, n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st := w.Stats()
	dups := checkAllOnce(t, s.Got(), n)
	if st.Acked != n || st.Written != n {
		t.Fatalf("Acked %d, Written %d, want %d", st.Acked, st.Written, n)
	}
	if uint64(dups) > st.Replayed || dups > 3*window {
		t.Fatalf("%d duplicates, %d replayed, window %d, 3 resets", dups, st.Replayed, window)
	}
	t.Logf("3 resets: %d duplicates, %d replayed", dups, st.Replayed)
}

// Messages taken but not acknowledged when the connection is reset are
// sent again: exactly those are the duplicates.
func TestAcksDuplicatesAreTheUnacknowledged(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	const window = 32
	_, w := newAckWriter(t, s, conn.WithWindow(window, 0))
	writeNumbered(t, w, 0, 100)
	s.awaitGot(window, 10*time.Second)
	s.resetAll()
	s.release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st := w.Stats()
	dups := checkAllOnce(t, s.Got(), 100)
	if dups != window || st.Replayed != window || st.Acked != 100 || st.Written != 100 {
		t.Fatalf("%d duplicates, stats %+v: want the window (%d) replayed and duplicated once", dups, st, window)
	}
}

// A refused message is dropped, counted, reported to Flush and the drop
// hook, and not sent again; the others are acknowledged.
func TestAcksRefusedMessage(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.refuse = func(seq uint64, _ string) bool { return seq == 7 } })
	var mu sync.Mutex
	var reports []conn.DropReport
	_, w := newAckWriter(t, s, conn.WithDropHook(func(r conn.DropReport) {
		mu.Lock()
		reports = append(reports, r)
		mu.Unlock()
	}))
	writeNumbered(t, w, 0, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := w.Flush(ctx)
	if !errors.Is(err, conn.ErrUnflushed) {
		t.Fatalf("Flush: %v, want ErrUnflushed for the refused message", err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("second Flush: %v, want nil: the refusal was reported", err)
	}
	st := w.Stats()
	if st.Acked != 19 || st.Refused != 1 || st.Discarded != 1 || st.Dropped != 1 || st.Replayed != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) == 0 || reports[0].Discarded != 1 || !errors.Is(reports[0].Err, conn.ErrAckRefused) {
		t.Fatalf("drop reports %+v, want one discard with ErrAckRefused", reports)
	}
	if got := s.Got(); len(got) != 20 {
		t.Fatalf("server took %d messages, want 20 (the refused one once)", len(got))
	}
}

// With acknowledgements stalled, no more than the window is in flight, the
// buffer fills and drops; when they flow again everything accepted is
// acknowledged.
func TestAcksWindowBoundsWhatIsInFlight(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	const window = 8
	_, w := newAckWriter(t, s, conn.WithWindow(window, 0), conn.WithBufferSize(4096))
	accepted := 0
	for i := 0; i < 1000; i++ {
		if _, err := fmt.Fprintf(w, "m%06d", accepted); err == nil {
			accepted++
		} else if !errors.Is(err, conn.ErrBufferFull) {
			t.Fatalf("Write: %v", err)
		}
	}
	s.awaitGot(window, 10*time.Second)
	time.Sleep(50 * time.Millisecond) // time for a message beyond the window to arrive, if one were sent
	if got := len(s.Got()); got != window {
		t.Fatalf("the server took %d messages while acknowledgements were stalled, window %d", got, window)
	}
	if st := w.Stats(); st.Queue.Unacked != window || st.Written != window {
		t.Fatalf("stalled: Unacked %d, Written %d, want the window %d", st.Queue.Unacked, st.Written, window)
	}
	if accepted == 1000 {
		t.Fatal("a 4 KiB buffer took 1,000 messages while nothing was acknowledged")
	}
	s.release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if st := w.Stats(); st.Acked != uint64(accepted) {
		t.Fatalf("Acked %d, accepted %d", st.Acked, accepted)
	}
	checkAllOnce(t, s.Got(), accepted)
}

// Close with acknowledgements stalled returns within its timeout and says
// how many were not acknowledged.
func TestAcksCloseReportsUnacknowledged(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	_, w := newAckWriter(t, s, conn.WithCloseTimeout(200*time.Millisecond))
	writeNumbered(t, w, 0, 10)
	s.awaitGot(1, 10*time.Second)
	start := time.Now()
	err := w.Close()
	if !errors.Is(err, conn.ErrUnflushed) || err.Error() != "conn: messages left unwritten: 10 not acknowledged" {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a 200ms close timeout", d)
	}
	if st := w.Stats(); st.Discarded != 10 || st.Acked != 0 || st.Queue.Messages != 0 {
		t.Fatalf("stats after Close: %+v", st)
	}
}

// A peer that never answers the handshake is left after the ack timeout,
// and one that refuses it is retried with backoff; neither blocks Close.
func TestAcksHandshakeRefusedThenAccepted(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.greeting = "NO\n" })
	_, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 5)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var opens int
		s.set(func(s *ackServer) { opens = s.opens })
		if opens >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d opens within 10s: a refused handshake is not retried", opens)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.set(func(s *ackServer) { s.greeting = "OK\n" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkAllOnce(t, s.Got(), 5)
}

func TestAcksRefuseDatagramNetworks(t *testing.T) {
	m := conn.New("udp", "127.0.0.1:9")
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}))
	_, err := w.Write([]byte("x"))
	if err == nil || err.Error() != `conn: acknowledged delivery needs a stream network, not "udp"` {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := w.Stats(); st.Rejected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// awaitOpens waits until the server has seen n handshakes.
func (s *ackServer) awaitOpens(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var opens int
		s.set(func(s *ackServer) { opens = s.opens })
		if opens >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handshakes within %v, want %d", opens, within, n)
		}
		time.Sleep(2 * time.Millisecond) // polling a count the server keeps; bounded
	}
}

// A peer that stops acknowledging is left after the ack timeout; what it
// did not acknowledge goes on the next connection.
func TestAcksTimeoutLeavesTheConnection(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	_, w := newAckWriter(t, s, conn.WithAckTimeout(100*time.Millisecond))
	writeNumbered(t, w, 0, 10)
	s.awaitOpens(t, 2, 10*time.Second)
	s.release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if st := w.Stats(); st.Acked != 10 || st.Replayed < 10 {
		t.Fatalf("stats %+v: want 10 acknowledged after a replay of all 10", st)
	}
}

// A handshake that is never answered is abandoned after the ack timeout
// (a second one follows), and Close during one returns within the close
// timeout, also when the ack timeout is an hour: the handshake's read is
// cut short.
func TestAcksHandshakeNeverAnswered(t *testing.T) {
	for _, c := range []struct {
		name       string
		ackTimeout time.Duration
		opens      int
	}{
		{"abandoned after the ack timeout", 50 * time.Millisecond, 2},
		{"Close during a long one", time.Hour, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newAckServer(t)
			s.set(func(s *ackServer) { s.greeting = "" })
			_, w := newAckWriter(t, s, conn.WithAckTimeout(c.ackTimeout), conn.WithCloseTimeout(100*time.Millisecond))
			writeNumbered(t, w, 0, 3)
			s.awaitOpens(t, c.opens, 10*time.Second)
			start := time.Now()
			if err := w.Close(); !errors.Is(err, conn.ErrUnflushed) {
				t.Fatalf("Close: %v, want the 3 messages unacknowledged", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Close took %v", d)
			}
		})
	}
}

// Closing the Manager ends the writer: what was not acknowledged is
// reported by the BatchWriter's Close.
func TestAcksManagerClosed(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	m, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 5)
	s.awaitGot(5, 10*time.Second)
	m.Close()
	if err := w.Close(); !errors.Is(err, conn.ErrUnflushed) {
		t.Fatalf("Close: %v", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, conn.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

// A protocol whose code panics costs its connection, never the program;
// the messages wait, and Close reports them.
func TestAcksProtocolPanics(t *testing.T) {
	for _, where := range []string{"Open", "AppendBatch", "ReadAck"} {
		t.Run(where, func(t *testing.T) {
			s := newAckServer(t)
			_, w := newAckWriterWith(t, s, lineAcks{panicIn: where}, conn.WithCloseTimeout(100*time.Millisecond))
			writeNumbered(t, w, 0, 3)
			s.awaitOpens(t, 2, 10*time.Second)
			if err := w.Close(); !errors.Is(err, conn.ErrUnflushed) {
				t.Fatalf("Close: %v", err)
			}
		})
	}
	t.Run("AppendClose", func(t *testing.T) {
		s := newAckServer(t)
		_, w := newAckWriterWith(t, s, lineAcks{panicIn: "AppendClose"})
		writeNumbered(t, w, 0, 3)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v: everything was acknowledged", err)
		}
	})
}

// A peer that acknowledges what was never sent is a broken peer: the
// connection is left, and nothing is taken as acknowledged.
func TestAcksBeyondWhatWasSent(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.ackAhead = 1000 })
	_, w := newAckWriter(t, s, conn.WithCloseTimeout(300*time.Millisecond))
	writeNumbered(t, w, 0, 5)
	s.awaitOpens(t, 2, 10*time.Second)
	if st := w.Stats(); st.Acked != 0 {
		t.Fatalf("Acked %d: acknowledgements beyond what was sent were taken", st.Acked)
	}
	s.set(func(s *ackServer) { s.ackAhead = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if st := w.Stats(); st.Acked != 5 {
		t.Fatalf("Acked %d, want 5", st.Acked)
	}
}

// An idle acknowledging writer holds no session and waits for no
// connection: its Close returns at once even with the peer down.
func TestAcksIdleCloseWithThePeerDown(t *testing.T) {
	s := newAckServer(t)
	addr := s.Addr()
	s.Close()
	m := conn.New("tcp", addr, conn.WithLogger(log.NewNopLogger()))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithCloseTimeout(10*time.Second))
	time.Sleep(50 * time.Millisecond) // the writer settles into its wait: nothing observable says when
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close of an idle writer took %v", d)
	}
}

// An idle session whose peer closes it is not replaced until there is
// something to send; then the message goes on a new one.
func TestAcksIdleSessionLostThenWrite(t *testing.T) {
	s := newAckServer(t)
	_, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	s.resetAll()
	time.Sleep(50 * time.Millisecond) // let the reset arrive: what is tested is a Write after it
	writeNumbered(t, w, 1, 2)
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	checkAllOnce(t, s.Got(), 2)
	s.set(func(s *ackServer) {
		if s.opens != 2 {
			t.Errorf("%d sessions, want 2", s.opens)
		}
	})
}

// A refusal in the same burst as acknowledgements before it is a drop for
// the Flushes that waited for it only.
func TestAcksRefusalCountsInOrderForFlush(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.refuse = func(seq uint64, _ string) bool { return seq == 7 } })
	s.stall()
	_, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() { first <- w.Flush(ctx) }()
	awaitFlushes(t, w, 1) // its target is the first five
	s.awaitGot(5, 10*time.Second)
	writeNumbered(t, w, 5, 10)
	s.awaitGot(10, 10*time.Second)
	second := make(chan error, 1)
	go func() { second <- w.Flush(ctx) }()
	awaitFlushes(t, w, 2)
	s.release()
	if err := <-first; err != nil {
		t.Fatalf("Flush of messages 0-4: %v, want nil: the refused message 7 was not among them", err)
	}
	if err := <-second; !errors.Is(err, conn.ErrUnflushed) {
		t.Fatalf("Flush of messages 0-9: %v, want the refusal of 7", err)
	}
}

// awaitFlushes waits until n Flushes wait on w.
func awaitFlushes(t *testing.T, w *conn.BatchWriter, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); conn.FlushesWaiting(w) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d Flushes wait, want %d", conn.FlushesWaiting(w), n)
		}
	}
}

// A refusal of a message already acknowledged changes nothing, and a
// later refusal still counts.
func TestAcksLateRefusalOfAnAcknowledgedMessage(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) {
		s.refuse = func(seq uint64, _ string) bool { return seq == 7 }
		s.extra = func(seq uint64) string {
			if seq == 4 {
				return "R 4 too late\n"
			}
			return ""
		}
	})
	_, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); !errors.Is(err, conn.ErrUnflushed) {
		t.Fatalf("Flush: %v", err)
	}
	if st := w.Stats(); st.Refused != 1 || st.Acked != 9 {
		t.Fatalf("stats %+v: want message 7 refused, the other 9 acknowledged", st)
	}
}

// A batch that replays unacknowledged messages and carries new ones counts
// only the new ones as Written.
func TestAcksWrittenCountsFirstWritesOnly(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	_, w := newAckWriter(t, s, conn.WithWindow(32, 0), conn.WithAckTimeout(100*time.Millisecond))
	writeNumbered(t, w, 0, 20)
	s.awaitGot(20, 10*time.Second)
	// The next handshake hangs until the ack timeout, while 80 more
	// messages queue: the replay then shares its batch with new ones.
	s.set(func(s *ackServer) { s.greeting = "" })
	s.resetAll()
	s.awaitOpens(t, 2, 10*time.Second)
	writeNumbered(t, w, 20, 100)
	s.set(func(s *ackServer) { s.greeting = "OK\n" })
	s.release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st := w.Stats()
	if st.Written != 100 || st.Acked != 100 || st.Replayed != 20 {
		t.Fatalf("stats %+v: want 100 written once, 20 replayed", st)
	}
	checkAllOnce(t, s.Got(), 100)
}

// A session left idle longer than the ack timeout is kept: the timeout
// is for acknowledgements awaited, and the handshake's deadline is gone.
func TestAcksIdleSessionOutlivesTheAckTimeout(t *testing.T) {
	s := newAckServer(t)
	_, w := newAckWriter(t, s, conn.WithAckTimeout(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	writeNumbered(t, w, 0, 1)
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // idle for four ack timeouts
	writeNumbered(t, w, 1, 2)
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	s.set(func(s *ackServer) {
		if s.opens != 1 {
			t.Errorf("%d sessions, want 1: an idle session was left", s.opens)
		}
	})
}

// A peer that accepts the handshake and then drops every connection
// before acknowledging anything is redialed on the backoff schedule, not
// in a loop.
func TestAcksSessionsThatNeverAcknowledgeBackOff(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.resetAfterHello = 20 * time.Millisecond })
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(100*time.Millisecond, time.Second), conn.WithLogger(log.NewNopLogger()))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithCloseTimeout(100*time.Millisecond))
	defer w.Close()
	writeNumbered(t, w, 0, 1)
	time.Sleep(time.Second)
	var opens int
	s.set(func(s *ackServer) { opens = s.opens })
	if opens > 8 {
		t.Fatalf("%d sessions in 1s with a 100ms backoff: redialed without backoff", opens)
	}
}

// Close ends the session gracefully and dials nothing more; a new writer
// on the same Manager then gets a new connection at once (no backoff).
func TestAcksCloseDialsNothing(t *testing.T) {
	s := newAckServer(t)
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(5*time.Second, 10*time.Second), conn.WithLogger(log.NewNopLogger()))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}))
	writeNumbered(t, w, 0, 3)
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // a redial, if there were one, would come within this
	if st := m.Stats(); st.Dials != 1 {
		t.Fatalf("stats %+v: the Manager dialed again after the session's close", st)
	}
	start := time.Now()
	w2 := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}))
	defer w2.Close()
	writeNumbered(t, w2, 3, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w2.Flush(ctx); err != nil {
		t.Fatalf("second writer's Flush: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the second writer's messages took %v: the dead connection was redialed after a backoff", d)
	}
	checkAllOnce(t, s.Got(), 6)
}

// WithMaxMessage refuses a message longer than the collector takes whole,
// at Write, counted and reported, and takes one of exactly that length.
func TestAcksMaxMessage(t *testing.T) {
	s := newAckServer(t)
	var mu sync.Mutex
	var reports []conn.DropReport
	_, w := newAckWriter(t, s, conn.WithMaxMessage(7), conn.WithDropHook(func(r conn.DropReport) {
		mu.Lock()
		reports = append(reports, r)
		mu.Unlock()
	}))
	if n, err := w.Write([]byte("m000000")); err != nil || n != 7 {
		t.Fatalf("Write of 7 bytes: %d, %v", n, err)
	}
	if n, err := w.Write([]byte("m0000001")); !errors.Is(err, conn.ErrTooLong) || n != 0 {
		t.Fatalf("Write of 8 bytes: %d, %v; want ErrTooLong", n, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := w.Stats(); st.Rejected != 1 || st.Acked != 1 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) == 0 || !errors.Is(reports[len(reports)-1].Err, conn.ErrTooLong) {
		t.Fatalf("drop reports %+v, want ErrTooLong", reports)
	}
	checkAllOnce(t, s.Got(), 1)
}

// The Manager's Close ends an idle acknowledging writer: its Writes then
// fail at once rather than queue messages that nothing will send.
func TestAcksManagerClosedWhileIdle(t *testing.T) {
	s := newAckServer(t)
	m, w := newAckWriter(t, s)
	writeNumbered(t, w, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	m.Close()
	time.Sleep(50 * time.Millisecond) // the writer sees the Manager's Close: nothing observable says when
	if _, err := w.Write([]byte("late")); !errors.Is(err, conn.ErrClosed) {
		t.Fatalf("Write after the Manager's Close: %v, want ErrClosed", err)
	}
}

// An acknowledgement one beyond what was sent is a broken peer too.
func TestAcksOneBeyondWhatWasSent(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.ackAhead = 1 })
	_, w := newAckWriter(t, s, conn.WithCloseTimeout(100*time.Millisecond))
	writeNumbered(t, w, 0, 1)
	s.awaitOpens(t, 2, 10*time.Second)
}

// The ack timeout counts from the oldest unacknowledged message (or the
// last acknowledgement), not from the latest wake: Writes arriving all the
// time do not keep a silent peer's connection.
func TestAcksTimeoutWithWritesArriving(t *testing.T) {
	s := newAckServer(t)
	s.stall()
	_, w := newAckWriter(t, s, conn.WithAckTimeout(200*time.Millisecond), conn.WithWindow(4, 0), conn.WithCloseTimeout(100*time.Millisecond))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			fmt.Fprintf(w, "m%06d", i)
		}
	}()
	defer func() { close(stop); <-done }()
	s.awaitOpens(t, 2, 10*time.Second)
}
