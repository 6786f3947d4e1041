package conn_test

// Closing under acknowledged delivery: the BatchWriter's Close returns within
// its timeout and reports what was not acknowledged; the Manager's Close ends it.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

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

// A protocol with no close (AppendClose appends nothing) has nothing to
// wait for: once everything is acknowledged, Close returns at once with
// nil, not at the end of its timeout, and leaves the connection open.
func TestAcksCloseWithoutACloseFrameDoesNotWait(t *testing.T) {
	s := newAckServer(t)
	_, w := newAckWriterWith(t, s, lineAcks{noBye: true}, conn.WithCloseTimeout(20*time.Second))
	writeNumbered(t, w, 0, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with nothing to wait for (its timeout is 20s)", d)
	}
	if st := w.Stats(); st.Acked != 10 || st.Discarded != 0 {
		t.Fatalf("stats after Close: %+v", st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byes != 0 {
		t.Fatalf("the server saw %d BYE from a protocol without one", s.byes)
	}
}

// The same state: Close must return within its timeout.
func TestAcksCloseWithMessageLargerThanWindowLeft(t *testing.T) {
	_, m, w := stalledWithRemainder(t, conn.WithCloseTimeout(200*time.Millisecond))
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, conn.ErrUnflushed) {
			t.Fatalf("Close: %v, want 2 not acknowledged", err)
		}
	case <-time.After(3 * time.Second):
		m.Close() // let the writer out, so that the test ends
		<-closed
		t.Fatal("Close with a 200ms close timeout did not return within 3s: the writer spins waiting for room in the window")
	}
}

// Close's time runs out while the peer keeps acknowledging (a backlog
// longer than the close timeout, small batches): Close must return within
// its timeout, not wait for the backlog, nor forever. The writer is caught
// outside its wait only some of the time: ten tries.
func TestAcksCloseTimeoutWhileAcksFlow(t *testing.T) {
	for try := range 10 {
		s := newAckServer(t)
		m, w := newAckWriter(t, s, conn.WithWindow(128, 0), conn.WithMaxBatch(64), conn.WithBufferSize(8<<20), conn.WithCloseTimeout(20*time.Millisecond))
		writeNumbered(t, w, 0, 20000)
		s.awaitGot(10, 10*time.Second)
		closed := make(chan error, 1)
		go func() { closed <- w.Close() }()
		select {
		case err := <-closed:
			if !errors.Is(err, conn.ErrUnflushed) {
				t.Fatalf("Close: %v, want some not acknowledged", err)
			}
			checkInvariants(t, w.Stats(), 128)
		case <-time.After(3 * time.Second):
			st := w.Stats()
			m.Close() // let the writer out, so that the test ends
			<-closed
			t.Fatalf("try %d: Close with a 20ms close timeout did not return within 3s (stats then %+v)", try, st)
		}
		m.Close()
		s.Close()
	}
}

var notAckedRE = regexp.MustCompile(`(\d+) not acknowledged`)

// closeAccounts checks what Close returned against the Stats once closed:
// every accepted message acknowledged, refused, or dropped by Close and
// counted in its error; nothing left in the queue.
func closeAccounts(t *testing.T, w *conn.BatchWriter, err error) conn.BatchStats {
	t.Helper()
	st := w.Stats()
	left := uint64(0)
	if err != nil {
		m := notAckedRE.FindStringSubmatch(err.Error())
		if m == nil || !errors.Is(err, conn.ErrUnflushed) {
			t.Errorf("Close: %v, want nil or ErrUnflushed with \"N not acknowledged\"", err)
		} else {
			left, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	if st.Queue.Messages != 0 || st.Queue.Unacked != 0 || st.Queue.Bytes != 0 {
		t.Errorf("closed writer still holds messages: %+v", st.Queue)
	}
	if st.Accepted != st.Acked+st.Discarded {
		t.Errorf("accepted %d != acked %d + discarded %d", st.Accepted, st.Acked, st.Discarded)
	}
	if st.Discarded != st.Refused+left {
		t.Errorf("discarded %d != refused %d + %d reported by Close (%v)", st.Discarded, st.Refused, left, err)
	}
	return st
}

// Close in each state a relptest server can be put in returns within its
// timeout, and what it reports adds up with the Stats.
func TestAcksCloseInEveryServerState(t *testing.T) {
	const closeTimeout = 300 * time.Millisecond
	for _, c := range []struct {
		name string
		act  func(s *relptest.Server)
	}{
		{"stall", func(s *relptest.Server) { s.Stall() }},
		{"stall then release", func(s *relptest.Server) {
			s.Stall()
			go func() { time.Sleep(100 * time.Millisecond); s.Release() }()
		}},
		{"reset", func(s *relptest.Server) { s.Reset() }},
		{"serverclose", func(s *relptest.Server) { s.ServerClose() }},
		{"closeafter", func(s *relptest.Server) { s.CloseAfter(3) }},
		{"stall and reset", func(s *relptest.Server) { s.Stall(); s.Reset() }},
		{"server gone", func(s *relptest.Server) { s.Close() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := relptest.NewServer(t)
			m := conn.New("tcp", s.Addr(), conn.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
			defer m.Close()
			w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()), conn.WithCloseTimeout(closeTimeout))
			for i := range 20 {
				fmt.Fprintf(w, "a %d\n", i)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := w.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			c.act(s)
			for i := range 20 {
				fmt.Fprintf(w, "b %d\n", i)
			}
			start := time.Now()
			err := w.Close()
			if d := time.Since(start); d > closeTimeout+time.Second {
				t.Errorf("Close took %v with a %v close timeout", d, closeTimeout)
			}
			st := closeAccounts(t, w, err)
			t.Logf("Close: %v; stats %+v", err, st)
		})
	}
}

// Close while the Manager redials a server that is gone: within the close
// timeout, every message reported.
func TestAcksCloseWhileRedialing(t *testing.T) {
	s := relptest.NewServer(t)
	addr := s.Addr()
	m := conn.New("tcp", addr, conn.WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()), conn.WithCloseTimeout(200*time.Millisecond))
	fmt.Fprintf(w, "first\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for i := range 10 {
		fmt.Fprintf(w, "m %d\n", i)
	}
	time.Sleep(120 * time.Millisecond) // mid-backoff
	start := time.Now()
	err := w.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	st := closeAccounts(t, w, err)
	if st.Acked != 1 || !strings.Contains(fmt.Sprint(err), "10 not acknowledged") {
		t.Errorf("Close: %v; stats %+v", err, st)
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

// Close ends the session with the protocol's close and waits for the
// peer's confirmation: when it returns, the peer has read the close.
func TestAcksCloseWaitsForTheCloseConfirmation(t *testing.T) {
	for range 5 {
		s := newAckServer(t)
		_, w := newAckWriter(t, s)
		writeNumbered(t, w, 0, 3)
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		var byes int
		s.set(func(s *ackServer) { byes = s.byes })
		if byes != 1 {
			t.Fatalf("Close returned before the peer read the close (%d BYE read)", byes)
		}
	}
}
