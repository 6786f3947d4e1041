package conn_test

// Refusals under acknowledged delivery: a message the peer refuses, or
// WithMaxMessage refuses at Write, is dropped, counted, reported to the
// Flushes that waited for it, and not sent again.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

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

// The peer refuses message 0 on a connection whose write then failed: the
// refusal must not be lost. (The replay is refused again, but a refusal
// whose Through is not above the first is ignored, so message 0 ends up
// counted as acknowledged and Flush returns nil.)
func TestAcksRefusalAfterAFailedWriteIsNotLost(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.refuse = func(seq uint64, _ string) bool { return seq == 0 } })
	_, w := newFaultWriter(t, s)
	writeNumbered(t, w, 0, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := w.Flush(ctx)
	st := w.Stats()
	if !errors.Is(err, conn.ErrUnflushed) || st.Refused != 1 || st.Acked != 1 {
		t.Fatalf("Flush: %v; stats %+v; server took %q: want message 0 refused (ErrUnflushed, Refused 1, Acked 1)", err, st, s.Got())
	}
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

// Several writers refused by the server, WithMaxMessage refusals, and
// acknowledgements: Flush reports exactly the drops, Stats add up.
func TestAcksRefusalsAndMaxMessage(t *testing.T) {
	s := relptest.NewServer(t, relptest.WithAnswer(func(m []byte) (int, string) {
		if strings.HasSuffix(string(m), "7") {
			return 500, "no sevens"
		}
		return 200, "OK"
	}))
	m := conn.New("tcp", s.Addr())
	defer m.Close()
	var mu sync.Mutex
	hooked := 0
	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()), conn.WithMaxMessage(20), conn.WithWaitWhenFull(10*time.Second),
		conn.WithDropHook(func(r conn.DropReport) { mu.Lock(); hooked += int(r.Rejected + r.Discarded); mu.Unlock() }),
		conn.WithDropReportInterval(time.Millisecond))
	var wg sync.WaitGroup
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				msg := fmt.Sprintf("w%d %d", k, i)
				if i%100 == 50 {
					msg += strings.Repeat("x", 30)
				}
				w.Write([]byte(msg))
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := w.Flush(ctx)
	st := w.Stats()
	wantRefused := uint64(8 * 50)
	if st.Refused != wantRefused || st.Rejected != 8*5 || st.Acked != st.Accepted-wantRefused {
		t.Errorf("stats %+v; want %d refused, %d rejected", st, wantRefused, 8*5)
	}
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d dropped", wantRefused)) {
		t.Errorf("Flush: %v, want %d dropped", err, wantRefused)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hooked != int(wantRefused)+8*5 {
		t.Errorf("drop hook told of %d, want %d", hooked, int(wantRefused)+8*5)
	}
}

// A refused message gives its room in the buffer back, as an acknowledged
// one does: refusing message after message, far more than the buffer's
// size in all, never fills it.
func TestAcksRefusedMessagesGiveTheirRoomBack(t *testing.T) {
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.refuse = func(uint64, string) bool { return true } })
	_, w := newAckWriter(t, s, conn.WithBufferSize(4096))
	text := strings.Repeat("r", 100)
	for i := range 400 { // 400 * (100 + MessageOverhead) bytes: over 10 buffers
		if _, err := w.Write([]byte(text)); err != nil {
			t.Fatalf("Write %d: %v; stats %+v", i, err, w.Stats())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.Flush(ctx)
		cancel()
		if !errors.Is(err, conn.ErrUnflushed) {
			t.Fatalf("Flush %d: %v, want ErrUnflushed for the refused message", i, err)
		}
	}
	if st := w.Stats(); st.Refused != 400 || st.Discarded != 400 || st.Queue.Messages != 0 || st.Queue.Bytes != 0 {
		t.Fatalf("stats %+v: want 400 refused", st)
	}
}
