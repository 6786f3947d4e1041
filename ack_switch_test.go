package conn_test

// Acknowledged delivery across a switch of connection (rotation, fail-back):
// nothing lost or counted twice, and no answer lost to the linger or mixed by it.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

// Eight writers, two endpoints, a connection age of a few milliseconds
// (rotation switches the connection under the writer) and resets: nothing
// lost, nothing counted twice.
func TestAcksRotationUnderLoad(t *testing.T) {
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

// Two endpoints: the first accepts TCP but refuses RELP's open, the
// second speaks RELP. Everything goes to the second, promptly, and the
// fail-backs to the refusing primary back off.
func TestAcksEndpointRefusingTheOpen(t *testing.T) {
	bad := relptest.NewServer(t, relptest.WithOpenAnswer("500 not here"))
	good := relptest.NewServer(t)
	m := conn.New("tcp", bad.Addr(), conn.WithEndpoints(good.Addr()), conn.WithProbeInterval(50*time.Millisecond),
		conn.WithBackoff(5*time.Millisecond, 50*time.Millisecond))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()), conn.WithWindow(16, 0), conn.WithWaitWhenFull(10*time.Second))
	const n = 400
	start := time.Now()
	for i := range n {
		fmt.Fprintf(w, "m %d\n", i)
		time.Sleep(2 * time.Millisecond) // about a second of writes: some 20 probe intervals
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v; stats %+v", err, w.Stats())
	}
	took := time.Since(start)
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	st := w.Stats()
	bs, gs := bad.Stats(), good.Stats()
	t.Logf("took %v; bad: %+v; good: %+v; writer %+v; manager %+v", took, bs, gs, st, m.Stats())
	if st.Acked != n {
		t.Errorf("acked %d, want %d", st.Acked, n)
	}
	// Each fail-back to the refusing primary is lost unproven, and the
	// Manager doubles the probe interval after each (issue 13's probe
	// backoff): about a second of 50 ms probes then costs at most 5 or 6
	// fail-backs, not 20. That it happens at all is a known limit: a probe
	// proves TCP, not the protocol (RELIABILITY.md).
	if gs.Conns > 7 || st.Replayed > 16*6 {
		t.Errorf("the refusing primary made the writer leave the working standby %d times (%d replayed, %d opens refused by the primary): fail-back probes do not back off",
			gs.Conns-1, st.Replayed, bs.Opens)
	}
}

// readFrameRaw reads one RELP frame from br: txnr, command, data.
func readFrameRaw(br *bufio.Reader) (int, string, string, error) {
	var txnr, n int
	var cmd string
	if _, err := fmt.Fscanf(br, "%d %s %d", &txnr, &cmd, &n); err != nil {
		return 0, "", "", err
	}
	c, err := br.ReadByte()
	if err != nil {
		return 0, "", "", err
	}
	data := make([]byte, n)
	if n > 0 {
		if _, err := io.ReadFull(br, data); err != nil {
			return 0, "", "", err
		}
		c, err = br.ReadByte()
	}
	if err != nil || c != '\n' {
		return 0, "", "", fmt.Errorf("bad trailer %q %v", c, err)
	}
	return txnr, cmd, string(data), nil
}

// When the Manager switches connections (here a rotation,
// WithMaxConnectionAge), it lingers on the old one: it half-closes it and
// reads and discards what the peer sends until the peer closes. With acks
// the session's reader still reads that same connection: the two readers
// split the server's answers between them. Here the first server refuses
// the message ("2 rsp 6 500 no") and takes nothing; the second never
// answers. The session's reader must never make an acknowledgement out of
// pieces of two answers.
func lingerServer(t *testing.T, n int, answer func(c net.Conn)) conn.BatchStats {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	quit := make(chan struct{})
	defer close(quit)
	var mu sync.Mutex
	var conns []net.Conn
	var log []string
	logf := func(format string, a ...any) {
		mu.Lock()
		log = append(log, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				if _, cmd, _, err := readFrameRaw(br); err != nil || cmd != "open" {
					return
				}
				fmt.Fprintf(c, "1 rsp %d %s\n", len(relptest.DefaultOpenAnswer), relptest.DefaultOpenAnswer)
				for range n {
					txnr, cmd, data, err := readFrameRaw(br)
					logf("conn %d: %d %s %q %v", i, txnr, cmd, data, err)
				}
				if i > 0 {
					<-quit // the second connection never answers
					return
				}
				// The first waits for the client's half-close (the linger),
				// then refuses the message, in three pieces.
				_, err = br.ReadByte()
				logf("conn 0: read after the message: %v", err)
				answer(c)
			}()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	m := conn.New("tcp", ln.Addr().String(), conn.WithMaxConnectionAge(300*time.Millisecond))
	defer m.Close()
	w := conn.NewBatchWriter(m, conn.WithAcks(relp.New()), conn.WithCloseTimeout(100*time.Millisecond))
	for i := range n {
		fmt.Fprintf(w, "x%d", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ferr := w.Flush(ctx)
	st := w.Stats()
	cerr := w.Close()
	mu.Lock()
	t.Logf("server: %q", log)
	mu.Unlock()
	t.Logf("Flush: %v; Close: %v; stats %+v", ferr, cerr, st)
	return st
}

// Here the first server refuses the message ("2 rsp 6 500 no") and takes
// nothing; the second never answers. The session's reader must never make
// an acknowledgement out of pieces of two answers.
func TestAcksLingerSplicesAnswers(t *testing.T) {
	st := lingerServer(t, 1, func(c net.Conn) {
		for _, piece := range []string{"2 rsp 6 ", "500 no\n3 rsp 6 ", "200 OK\n"} {
			c.Write([]byte(piece))
			time.Sleep(100 * time.Millisecond)
		}
		// "3 rsp 6 200 OK" answers nothing the client sent: had the
		// client read it all, it would end the session.
		time.Sleep(300 * time.Millisecond)
	})
	if st.Acked != 0 {
		t.Errorf("the message counted acknowledged: the first server refused it and the second never answered")
	}
}

// Here the first server answers all 50 messages, one at a time, after the
// switch; the second never answers. Every answer must reach the session's
// reader: none may be discarded by the linger.
func TestAcksLingerDiscardsAnswers(t *testing.T) {
	const n = 50
	st := lingerServer(t, n, func(c net.Conn) {
		for i := range n {
			fmt.Fprintf(c, "%d rsp 6 200 OK\n", i+2)
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	})
	if st.Acked != n {
		t.Errorf("%d of the %d messages the first server acknowledged counted acknowledged", st.Acked, n)
	}
}

// rotateUnderAcks writes numbered messages through a BatchWriter with
// acks to s, with a connection age of maxAge, until the Manager has
// switched connections rotations times; then it flushes and returns how
// many messages it wrote.
func rotateUnderAcks(t *testing.T, s *ackServer, maxAge time.Duration, rotations uint64) (m *conn.Manager, w *conn.BatchWriter, n int) {
	t.Helper()
	m = conn.New("tcp", s.Addr(), conn.WithMaxConnectionAge(maxAge), conn.WithBackoff(time.Millisecond, 20*time.Millisecond),
		conn.WithLogger(log.NewNopLogger()))
	w = conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithAckTimeout(5*time.Second), conn.WithWaitWhenFull(10*time.Second))
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	deadline := time.Now().Add(time.Minute)
	for m.Stats().Switches < rotations {
		if time.Now().After(deadline) {
			t.Fatalf("%d rotations in a minute", m.Stats().Switches)
		}
		writeNumbered(t, w, n, n+20)
		n += 20
		time.Sleep(time.Millisecond) // a steady stream, not a flood
	}
	flushWithin(t, w, 30*time.Second)
	return m, w, n
}

// A rotation under acknowledged delivery, with a peer that answers every
// message (2 ms after reading it) and everything it read before it closes:
// the old connection's messages are acknowledged on it, so a switch sends
// nothing twice.
func TestAcksRotationDuplicatesNothing(t *testing.T) {
	scenario(t)
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.answerDelay = 2 * time.Millisecond })
	m, w, n := rotateUnderAcks(t, s, 40*time.Millisecond, 25)
	dups := checkAllOnce(t, s.Got(), n)
	st := w.Stats()
	if dups != 0 || st.Replayed != 0 || st.Acked != uint64(n) {
		t.Fatalf("%d duplicates through %d rotations; stats %+v", dups, m.Stats().Switches, st)
	}
	if ms := m.Stats(); ms.Lost != 0 {
		t.Fatalf("manager %+v: a rotation is no lost connection", ms)
	}
	t.Logf("%d messages through %d rotations: 0 duplicates, 0 connections lost", n, m.Stats().Switches)
}

// A rotation whose old connection closes before answering everything it
// took (half the answers due when the input ends): only the unanswered
// ones are sent again.
func TestAcksRotationReplaysOnlyTheUnanswered(t *testing.T) {
	scenario(t)
	s := newAckServer(t)
	s.set(func(s *ackServer) {
		s.answerDelay = 20 * time.Millisecond
		s.dieMidAnswer = true
	})
	m, w, n := rotateUnderAcks(t, s, 50*time.Millisecond, 10)
	dups := checkAllOnce(t, s.Got(), n)
	st := w.Stats()
	var unanswered int
	s.set(func(s *ackServer) { unanswered = s.unanswered })
	if unanswered == 0 {
		t.Fatalf("the server left nothing unanswered through %d rotations: the test tests nothing", m.Stats().Switches)
	}
	if st.Replayed != uint64(unanswered) || dups != unanswered || st.Acked != uint64(n) {
		t.Fatalf("%d unanswered, %d duplicates, stats %+v: want every unanswered message replayed once, and nothing else",
			unanswered, dups, st)
	}
	t.Logf("%d messages through %d rotations: %d unanswered, all replayed, nothing else", n, m.Stats().Switches, unanswered)
}

// A switch with nothing in flight waits for nothing: the next message goes
// on the new connection at once, even if the old one's peer never closes
// it (here: it keeps it open after the end of its input).
func TestAcksSwitchWithNothingInFlightWaitsForNothing(t *testing.T) {
	scenario(t)
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.holdAfterEOF = true })
	m := conn.New("tcp", s.Addr(), conn.WithMaxConnectionAge(50*time.Millisecond), conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithAckTimeout(20*time.Second))
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	for i := range 5 {
		writeNumbered(t, w, i, i+1)
		flushWithin(t, w, 10*time.Second)
		before := m.Stats().Switches
		for deadline := time.Now().Add(10 * time.Second); m.Stats().Switches == before; time.Sleep(time.Millisecond) { // a switch has no signal of its own
			if time.Now().After(deadline) {
				t.Fatal("no rotation within 10s")
			}
		}
	}
	start := time.Now()
	writeNumbered(t, w, 5, 6)
	flushWithin(t, w, 10*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a message after a switch with nothing in flight took %v (ack timeout 20s)", d)
	}
	if st := w.Stats(); st.Acked != 6 || st.Replayed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A switched-out connection whose peer neither answers nor closes is left
// at the ack timeout, counted from the oldest message waiting (not from
// the switch, nor from the wake-up that found it): what it carried then
// goes on the new connection. The log says how many it left unanswered.
func TestAcksSwitchedOutPeerThatNeverAnswersIsLeftAtTheAckTimeout(t *testing.T) {
	scenarioAlone(t) // timing is the subject
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.holdAfterEOF = true })
	const ackTimeout = time.Second
	notes := newNoteValues("no acknowledgement; leaving the connection", "unacked")
	m := conn.New("tcp", s.Addr(), conn.WithMaxConnectionAge(300*time.Millisecond), conn.WithLogger(notes))
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithAckTimeout(ackTimeout), conn.WithCloseTimeout(100*time.Millisecond))
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	writeNumbered(t, w, 0, 3) // acknowledged: the count left unanswered starts above them
	flushWithin(t, w, 10*time.Second)
	s.stall()
	before := m.Stats().Switches
	start := time.Now()
	writeNumbered(t, w, 3, 8)
	s.awaitGot(8, 5*time.Second)
	for deadline := time.Now().Add(5 * time.Second); m.Stats().Switches == before; time.Sleep(time.Millisecond) { // no signal for a switch
		if time.Now().After(deadline) {
			t.Fatal("no rotation within 5s")
		}
	}
	// A Write wakes the writer after the switch, late: it finds the old
	// session waiting for answers. A timer counted from this wake-up
	// would fire at 1.8 s.
	time.Sleep(time.Until(start.Add(ackTimeout * 4 / 5)))
	writeNumbered(t, w, 8, 9)
	s.awaitGot(14, 10*time.Second) // 3 and 5, then those 6 on the next connection
	took := time.Since(start)
	t.Logf("replayed on the next connection after %v (ack timeout %v)", took.Round(time.Millisecond), ackTimeout)
	if took < ackTimeout*9/10 || took > ackTimeout*7/5 {
		t.Fatalf("the switched-out connection was left after %v: want the ack timeout, %v, counted from the first message", took, ackTimeout)
	}
	if got := notes.await(t, 1); got[0] != "5" {
		t.Fatalf("ack timeout logged unacked=%s, want 5 (3 acknowledged before, 5 sent since)", got[0])
	}
}

// A switched-out connection read by an acknowledged session lingers as
// long as the ack timeout, not only the switch's linger (10 s; 500 ms
// here): a peer that answers after 1 s, with a 3 s ack timeout, gets
// nothing sent twice.
func TestAcksSwitchedOutPeerSlowerThanTheLingerStillAnswers(t *testing.T) {
	scenario(t)
	s := newAckServer(t)
	s.set(func(s *ackServer) { s.answerDelay = time.Second })
	m := conn.New("tcp", s.Addr(), conn.WithMaxConnectionAge(300*time.Millisecond), conn.WithMaxLinger(500*time.Millisecond),
		conn.WithLogger(log.NewNopLogger()))
	w := conn.NewBatchWriter(m, conn.WithAcks(lineAcks{}), conn.WithAckTimeout(3*time.Second))
	t.Cleanup(func() {
		w.Close()
		m.Close()
	})
	writeNumbered(t, w, 0, 5)
	s.awaitGot(5, 5*time.Second)
	s.set(func(s *ackServer) { s.answerDelay = 0 }) // the next connections answer at once
	start := time.Now()
	flushWithin(t, w, 20*time.Second)
	st := w.Stats()
	dups := checkAllOnce(t, s.Got(), 5)
	t.Logf("flushed after %v; %d duplicates; stats %+v", time.Since(start).Round(time.Millisecond), dups, st)
	if st.Replayed != 0 || dups != 0 {
		t.Errorf("the switched-out peer answered within the ack timeout (1 s < 3 s; the linger is 500 ms), yet %d were replayed", st.Replayed)
	}
}
