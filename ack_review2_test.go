package conn_test

// A second adversarial review of acknowledged delivery (issue 14): the
// real RELP client against relptest's server.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed44b27a20/conn"
	"github.com/seed44b27a20/conn/relp"
	"github.com/seed44b27a20/conn/relp/relptest"
)

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
func TestReview2CloseInEveryServerState(t *testing.T) {
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

// Eight writers, a serverclose every few milliseconds: nothing lost,
// nothing counted twice, replays within a window per connection, every
// writer's messages in order on each connection.
func TestReview2ConcurrentWritersServerCloseStorm(t *testing.T) {
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

// Two endpoints: the first accepts TCP but refuses RELP's open, the
// second speaks RELP. Everything goes to the second, promptly, and the
// fail-backs to the refusing primary back off.
func TestReview2EndpointRefusingTheOpen(t *testing.T) {
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

// Close while the Manager redials a server that is gone: within the close
// timeout, every message reported.
func TestReview2CloseWhileRedialing(t *testing.T) {
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

// Several writers refused by the server, WithMaxMessage refusals, and
// acknowledgements: Flush reports exactly the drops, Stats add up.
func TestReview2RefusalsAndMaxMessage(t *testing.T) {
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
func TestReview2LingerSplicesAnswers(t *testing.T) {
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
func TestReview2LingerDiscardsAnswers(t *testing.T) {
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
