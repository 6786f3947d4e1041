package conn_test

// Acknowledged delivery (WithAcks): every message acknowledged, no more than
// the window in flight, and what a lost connection left unacknowledged
// replayed on the next one, the replays being the only duplicates.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

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

// A message the peer took from a write that then failed is sent again on
// the next connection: a duplicate, which Replayed must count ("replays are
// the only duplicates, counted in Replayed").
func TestAcksDuplicatesFromAFailedWriteCountAsReplayed(t *testing.T) {
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
func TestAcksSmallSegmentsVariedSizesWithResets(t *testing.T) {
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
func TestAcksMessagesLargerThanSegmentAndWindow(t *testing.T) {
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

// Eight writers, a serverclose every few milliseconds: nothing lost,
// nothing counted twice, replays within a window per connection, every
// writer's messages in order on each connection.
func TestAcksConcurrentWritersServerCloseStorm(t *testing.T) {
	const writers, each, window = 8, 1500, 64
	s := relptest.NewServer(t)
	m := conn.New("tcp", s.Addr(), conn.WithBackoff(time.Millisecond, 10*time.Millisecond))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()), conn.WithWindow(window, 0),
		conn.WithWaitWhenFull(30*time.Second), conn.WithBufferSize(64<<10))
	stop := make(chan struct{})
	var wg, storm sync.WaitGroup
	sample(t, w, window, stop, &wg)
	storm.Add(1)
	go func() {
		defer storm.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
				s.ServerClose()
			}
		}
	}()
	var writing sync.WaitGroup
	for k := range writers {
		writing.Add(1)
		go func() {
			defer writing.Done()
			for i := range each {
				if _, err := fmt.Fprintf(w, "w%d %d\n", k, i); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		}()
	}
	writing.Wait()
	close(stop)
	storm.Wait()
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v; stats %+v", err, w.Stats())
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	st := w.Stats()
	const total = writers * each
	if st.Accepted != total || st.Acked != total || st.Written != total || st.Discarded != 0 || st.Refused != 0 {
		t.Errorf("stats %+v, want %d accepted, written and acked", st, total)
	}
	seen := map[string]int{}
	all := 0
	for c := 0; ; c++ {
		msgs := s.ConnMessages(c)
		if msgs == nil && c >= s.Stats().Conns {
			break
		}
		last := map[string]int{}
		for _, msg := range msgs {
			all++
			seen[msg]++
			var k string
			var i int
			if _, err := fmt.Sscanf(msg, "%s %d", &k, &i); err != nil {
				t.Fatalf("message %q", msg)
			}
			if p, ok := last[k]; ok && i != p+1 {
				t.Errorf("connection %d: %s %d after %s %d", c, k, i, k, p)
			}
			last[k] = i
		}
	}
	for k := range writers {
		for i := range each {
			if seen[fmt.Sprintf("w%d %d", k, i)] == 0 {
				t.Fatalf("w%d %d never arrived", k, i)
			}
		}
	}
	dups := all - total
	conns := s.Stats().Conns
	t.Logf("%d connections, %d duplicates at the server, stats %+v", conns, dups, st)
	if uint64(dups) > st.Replayed {
		t.Errorf("%d duplicates at the server, %d counted as replayed", dups, st.Replayed)
	}
	if st.Replayed > uint64(window*conns) {
		t.Errorf("%d replayed over %d connections with a window of %d", st.Replayed, conns, window)
	}
}

// A write that fails having written nothing wrote no message: the messages
// go on the next connection as first writes, Written once, none Replayed.
func TestAcksWriteFailedWithNothingWrittenIsNoReplay(t *testing.T) {
	s := newAckServer(t)
	r, w := newRecordedAckWriter(t, s)
	r.mu.Lock()
	r.fail = true
	r.mu.Unlock()
	writeNumbered(t, w, 0, 3)
	flushWithin(t, w, 20*time.Second)
	if st := w.Stats(); st.Written != 3 || st.Replayed != 0 || st.Acked != 3 || st.WrittenBytes != 3*7 {
		t.Fatalf("stats %+v: want 3 written (21 bytes), none replayed", st)
	}
	if dups := checkAllOnce(t, s.Got(), 3); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}
