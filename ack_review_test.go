package conn_test

// Adversarial review of acknowledged delivery (issue 14).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
)

// stalledWithRemainder sets up a writer whose window in bytes has room
// left, but less than the next message: 1 byte in flight, unacknowledged
// (the server stalls), and a 1000-byte message next, with a 1000-byte
// window.
func stalledWithRemainder(t *testing.T, opts ...conn.BatchOption) (*ackServer, *conn.Manager, *conn.BatchWriter) {
	t.Helper()
	s := newAckServer(t)
	s.stall()
	m, w := newAckWriter(t, s, append([]conn.BatchOption{conn.WithWindow(128, 1000)}, opts...)...)
	if _, err := w.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	s.awaitGot(1, 10*time.Second)
	if _, err := w.Write(bytes.Repeat([]byte("b"), 1000)); err != nil {
		t.Fatal(err)
	}
	return s, m, w
}

// The next message does not fit in what is left of the window in bytes:
// the writer must wait for acknowledgements, and the ack timeout must
// still leave a peer that stopped acknowledging.
func TestReviewAckTimeoutWithMessageLargerThanWindowLeft(t *testing.T) {
	s, _, _ := stalledWithRemainder(t, conn.WithAckTimeout(100*time.Millisecond))
	deadline := time.Now().Add(3 * time.Second)
	for {
		var opens int
		s.set(func(s *ackServer) { opens = s.opens })
		if opens >= 2 {
			return
		}
		if time.Now().After(deadline) {
			s.release()
			t.Fatalf("the peer acknowledged nothing for 3s with a 100ms ack timeout and the connection was not left (%d sessions)", opens)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The same state: Close must return within its timeout.
func TestReviewAckCloseWithMessageLargerThanWindowLeft(t *testing.T) {
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

// faultDialer wraps each connection; once armed, the next Write carrying
// messages writes only its first line, waits until the reply to it has been
// read by the session's reader, and fails: a write that failed after the
// peer took part of it (a reset mid-write, a write timeout).
type faultDialer struct {
	armed atomic.Bool
	read  chan struct{} // closed when a reply is read after the fault
	once  sync.Once
}

var errInjected = errors.New("injected write failure")

func (d *faultDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, d: d}, nil
}

type faultConn struct {
	net.Conn
	d       *faultDialer
	faulted atomic.Bool
}

func (c *faultConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.faulted.Load() {
		c.d.once.Do(func() { close(c.d.read) })
	}
	return n, err
}

func (c *faultConn) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte("HELLO")) || !c.d.armed.CompareAndSwap(true, false) {
		return c.Conn.Write(b)
	}
	line := b[:bytes.IndexByte(b, '\n')+1]
	c.faulted.Store(true)
	n, err := c.Conn.Write(line)
	if err != nil {
		return n, err
	}
	select {
	case <-c.d.read:
		time.Sleep(50 * time.Millisecond) // the reader posts what it read
	case <-time.After(5 * time.Second):
	}
	return n, errInjected
}

func newFaultWriter(t *testing.T, s *ackServer, opts ...conn.BatchOption) (*faultDialer, *conn.BatchWriter) {
	t.Helper()
	d := &faultDialer{read: make(chan struct{})}
	d.armed.Store(true)
	m := conn.New("tcp", s.Addr(), conn.WithDialer(d.dial), conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, append([]conn.BatchOption{conn.WithAcks(lineAcks{})}, opts...)...)
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	return d, w
}

// The peer refuses message 0 on a connection whose write then failed: the
// refusal must not be lost. (The replay is refused again, but a refusal
// whose Through is not above the first is ignored, so message 0 ends up
// counted as acknowledged and Flush returns nil.)
func TestReviewAckRefusalAfterAFailedWriteIsNotLost(t *testing.T) {
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

// A message the peer took from a write that then failed is sent again on
// the next connection: a duplicate, which Replayed must count ("replays are
// the only duplicates, counted in Replayed").
func TestReviewAckDuplicatesFromAFailedWriteCountAsReplayed(t *testing.T) {
	s := newAckServer(t)
	_, w := newFaultWriter(t, s)
	writeNumbered(t, w, 0, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st := w.Stats()
	dups := checkAllOnce(t, s.Got(), 2)
	if uint64(dups) > st.Replayed {
		t.Fatalf("%d duplicates at the server, Replayed %d (stats %+v, server took %q)", dups, st.Replayed, st, s.Got())
	}
}

// checkInvariants checks what Stats must satisfy at all times.
func checkInvariants(t *testing.T, st conn.BatchStats, window int) {
	t.Helper()
	if st.Accepted != st.Acked+st.Discarded+uint64(st.Queue.Messages) || st.Queue.Messages < 0 || st.Queue.Bytes < 0 ||
		st.Queue.Unacked > window || st.Queue.Unacked < 0 || st.Written > st.Accepted || st.Acked > st.Written ||
		st.Acked+st.Refused > st.Written || st.AckedBytes > st.WrittenBytes {
		t.Errorf("stats do not add up: %+v", st)
	}
}

// sample checks the invariants of w's Stats until stop is closed.
func sample(t *testing.T, w *conn.BatchWriter, window int, stop chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			checkInvariants(t, w.Stats(), window)
			time.Sleep(100 * time.Microsecond)
		}
	}()
}

// checkSeqs checks what the servers took against want (the text of each
// sequence number): every message at least once with its own text, first
// arrivals in order within each server, and returns the duplicates.
func checkSeqs(t *testing.T, want []string, servers ...*ackServer) (dups int) {
	t.Helper()
	seen := make([]int, len(want))
	for _, s := range servers {
		s.mu.Lock()
		high := -1
		for i, seq := range s.seqs {
			if seq >= uint64(len(want)) {
				t.Fatalf("server took sequence number %d, only %d accepted", seq, len(want))
			}
			if got := s.got[i]; got != want[seq] {
				t.Fatalf("message %d: took %d bytes %.20q, want %d bytes %.20q", seq, len(got), got, len(want[seq]), want[seq])
			}
			seen[seq]++
			if seen[seq] > 1 {
				dups++
			} else if len(servers) == 1 && int(seq) < high {
				t.Errorf("message %d first arrived after %d", seq, high)
			}
			high = max(high, int(seq))
		}
		s.mu.Unlock()
	}
	for seq, n := range seen {
		if n == 0 {
			t.Fatalf("message %d never arrived", seq)
		}
	}
	return dups
}

// Messages of every size, empty ones and ones nearly the whole buffer
// included, in a 4 KiB buffer (4 KiB segments), while the server resets
// every connection every few milliseconds.
func TestReviewAckSmallSegmentsVariedSizesWithResets(t *testing.T) {
	s := newAckServer(t)
	const window = 8
	_, w := newAckWriter(t, s, conn.WithBufferSize(4096), conn.WithWindow(window, 2000), conn.WithWaitWhenFull(20*time.Second),
		conn.WithAckTimeout(time.Second))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sample(t, w, window, stop, &wg)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
				s.resetAll()
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	var want []string
	for i := 0; i < 1500; i++ {
		var text string
		switch r := rng.IntN(10); {
		case r < 2:
			text = ""
		case r < 3:
			text = fmt.Sprintf("%d:", i) + strings.Repeat("x", 3000+rng.IntN(1080))
		default:
			text = fmt.Sprintf("%d:", i) + strings.Repeat("y", rng.IntN(300))
		}
		if _, err := w.Write([]byte(text)); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("Write %d (%d bytes): %v", i, len(text), err)
		}
		want = append(want, text)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v; stats %+v", err, w.Stats())
	}
	st := w.Stats()
	checkInvariants(t, st, window)
	if st.Acked != uint64(len(want)) || st.Written != uint64(len(want)) || st.Queue.Messages != 0 || st.Queue.Bytes != 0 {
		t.Fatalf("stats %+v, want %d acknowledged and written", st, len(want))
	}
	dups := checkSeqs(t, want, s)
	if uint64(dups) > st.Replayed {
		t.Fatalf("%d duplicates, %d replayed", dups, st.Replayed)
	}
	t.Logf("%d duplicates, %d replayed, %d writes", dups, st.Replayed, st.Writes)
}

// Messages larger than a segment (64 KiB segments, messages up to 200 KiB)
// among small ones, with a window in bytes smaller than the large ones, and
// resets.
func TestReviewAckMessagesLargerThanSegmentAndWindow(t *testing.T) {
	s := newAckServer(t)
	const window = 16
	_, w := newAckWriter(t, s, conn.WithBufferSize(1<<20), conn.WithMaxBatch(1024), conn.WithWindow(window, 50_000),
		conn.WithWaitWhenFull(20*time.Second), conn.WithAckTimeout(time.Second))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sample(t, w, window, stop, &wg)
	rng := rand.New(rand.NewPCG(3, 4))
	var want []string
	for i := 0; i < 400; i++ {
		text := fmt.Sprintf("%d:", i) + strings.Repeat("z", rng.IntN(100))
		if rng.IntN(8) == 0 {
			text += strings.Repeat("Z", 60_000+rng.IntN(140_000))
		}
		if i%50 == 25 {
			s.resetAll()
		}
		if _, err := w.Write([]byte(text)); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("Write %d: %v", i, err)
		}
		want = append(want, text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := w.Flush(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Flush: %v; stats %+v", err, w.Stats())
	}
	st := w.Stats()
	checkInvariants(t, st, window)
	if st.Acked != uint64(len(want)) || st.Written != uint64(len(want)) {
		t.Fatalf("stats %+v", st)
	}
	dups := checkSeqs(t, want, s)
	if uint64(dups) > st.Replayed {
		t.Fatalf("%d duplicates, %d replayed", dups, st.Replayed)
	}
}

// Eight writers, two endpoints, a connection age of a few milliseconds
// (rotation switches the connection under the writer) and resets: nothing
// lost, nothing counted twice.
func TestReviewAckRotationUnderLoad(t *testing.T) {
	s1, s2 := newAckServer(t), newAckServer(t)
	m := conn.New("tcp", s1.Addr(), conn.WithEndpoints(s2.Addr()), conn.WithMaxConnectionAge(5*time.Millisecond),
		conn.WithBackoff(time.Millisecond, 20*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	const window = 32
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithWindow(window, 0), conn.WithBufferSize(64<<10),
		conn.WithWaitWhenFull(20*time.Second), conn.WithAckTimeout(2*time.Second))
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sample(t, w, window, stop, &wg)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(7 * time.Millisecond):
				if i%2 == 0 {
					s1.resetAll()
				} else {
					s2.resetAll()
				}
			}
		}
	}()
	const writers, each = 8, 1000
	var wgw sync.WaitGroup
	var failed atomic.Int64
	for g := range writers {
		wgw.Add(1)
		go func() {
			defer wgw.Done()
			for i := range each {
				if _, err := fmt.Fprintf(w, "g%d-%05d", g, i); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wgw.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := w.Flush(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Flush: %v; stats %+v", err, w.Stats())
	}
	if failed.Load() != 0 {
		t.Fatalf("%d Writes failed", failed.Load())
	}
	st := w.Stats()
	checkInvariants(t, st, window)
	if st.Acked != writers*each || st.Written != writers*each || st.Discarded != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Each goroutine's messages in order of first arrival, across both
	// servers merged by sequence number.
	texts := make(map[uint64]string)
	count := make(map[uint64]int)
	for _, s := range []*ackServer{s1, s2} {
		s.mu.Lock()
		for i, seq := range s.seqs {
			if prev, ok := texts[seq]; ok && prev != s.got[i] {
				t.Errorf("sequence number %d carried %q and %q", seq, prev, s.got[i])
			}
			texts[seq] = s.got[i]
			count[seq]++
		}
		s.mu.Unlock()
	}
	if len(texts) != writers*each {
		t.Fatalf("%d distinct sequence numbers arrived, want %d", len(texts), writers*each)
	}
	next := make([]int, writers)
	dups := 0
	for seq := uint64(0); seq < writers*each; seq++ {
		var g, i int
		if _, err := fmt.Sscanf(texts[seq], "g%d-%05d", &g, &i); err != nil {
			t.Fatalf("message %d: %q", seq, texts[seq])
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: message %d at sequence number %d, want %d", g, i, seq, next[g])
		}
		next[g]++
		dups += count[seq] - 1
	}
	if uint64(dups) > st.Replayed {
		t.Fatalf("%d duplicates, %d replayed", dups, st.Replayed)
	}
	t.Logf("%d duplicates, %d replayed; manager %+v", dups, st.Replayed, m.Stats())
}

// Close's time runs out while the peer keeps acknowledging (a backlog
// longer than the close timeout, small batches): Close must return within
// its timeout, not wait for the backlog, nor forever. The writer is caught
// outside its wait only some of the time: ten tries.
func TestReviewAckCloseTimeoutWhileAcksFlow(t *testing.T) {
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
